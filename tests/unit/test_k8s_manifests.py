"""`dockyard k8s manifests`: golden files, strict Kubernetes schema validation, and the
config.yml inside agreeing with what the pod mounts and what Dockyard reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from packaging.version import Version

from dockyard import __version__
from dockyard.cli.main import cli
from dockyard.config import IGNORED_SECTIONS, load_config
from dockyard.k8s.manifests import (
    DEFAULT_UPSTREAMS,
    RUN_AS,
    SECRETS_DIR,
    ManifestOptions,
    Upstream,
    default_image,
    dockyard_config,
    image_version,
    render_files,
    render_objects,
    render_yaml,
)
from dockyard.proxy.upstream import upstreams_from_config

GOLDEN = Path(__file__).parent / "golden" / "k8s"
IMAGE = "ghcr.io/dockyard/dockyard:0.1.0"

FULL = ManifestOptions(
    namespace="mirror",
    image="registry.internal:5000/tools/dockyard:1.2.3",
    size="200Gi",
    storage_class="local-path",
    node_port=31000,
    upstreams=(
        Upstream("docker.io", "https://registry-1.docker.io", secret="dockerhub-creds"),
        Upstream("ghcr.io", "https://ghcr.io", secret="ghcr-creds"),
        Upstream("harbor.example.com", "https://harbor.example.com"),
    ),
    tls_secret="dockyard-tls",
    htpasswd_secret="dockyard-users",
    htpasswd_realm="Edge registry",
    workers=2,
)
FULL_ARGS = [
    "--namespace=mirror",
    "--image=registry.internal:5000/tools/dockyard:1.2.3",
    "--size=200Gi",
    "--storage-class=local-path",
    "--node-port=31000",
    "--upstream=docker.io=https://registry-1.docker.io",
    "--upstream=ghcr.io=https://ghcr.io",
    "--upstream=harbor.example.com=https://harbor.example.com",
    "--upstream-secret=docker.io=dockerhub-creds",
    "--upstream-secret=ghcr.io=ghcr-creds",
    "--tls-secret=dockyard-tls",
    "--htpasswd-secret=dockyard-users",
    "--htpasswd-realm=Edge registry",
    "--workers=2",
]
VARIANTS = {"default": ManifestOptions(image=IMAGE), "full": FULL}


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; DOCKYARD_UPDATE_GOLDEN=1 writes it"
    assert text == path.read_text(encoding="utf-8")


def by_kind(options: ManifestOptions) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_objects(options)}


def container(options: ManifestOptions) -> dict[str, Any]:
    pod = by_kind(options)["Deployment"]["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


# -- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_yaml_matches_golden(variant: str) -> None:
    assert_golden(f"{variant}.yaml", render_yaml(VARIANTS[variant]))


def test_cli_stdout_is_the_golden_stream() -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", f"--image={IMAGE}"])
    assert result.exit_code == 0, result.output
    assert_golden("default.yaml", result.stdout)


def test_cli_options_reach_the_renderer() -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", *FULL_ARGS])
    assert result.exit_code == 0, result.output
    assert_golden("full.yaml", result.stdout)


def test_output_dir_has_one_file_per_object(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", *FULL_ARGS, "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "01-namespace-mirror.yaml",
        "02-persistentvolumeclaim-registry-data.yaml",
        "03-configmap-registry-config.yaml",
        "04-deployment-dockyard.yaml",
        "05-service-dockyard.yaml",
    ]
    files = render_files(FULL)
    assert {name: (tmp_path / name).read_text() for name in names} == files
    # The files, concatenated in name order (as `kubectl apply -f DIR` reads them), are the
    # same objects as the stream.
    docs = [yaml.safe_load(files[name]) for name in names]
    assert docs == list(yaml.safe_load_all(render_yaml(FULL)))


# -- the Kubernetes schemas --------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_strictly(variant: str) -> None:
    version = kubernetes_validate.latest_version()
    assert Version(version) >= Version("1.33"), "kubernetes-validate's schemas are too old"
    docs = list(yaml.safe_load_all(render_yaml(VARIANTS[variant])))
    assert [d["kind"] for d in docs] == [
        "Namespace",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    # The check above is only worth something if strict mode rejects unknown fields.
    deployment = by_kind(FULL)["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


# -- what the objects say ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_carries_the_app_labels(variant: str) -> None:
    options = VARIANTS[variant]
    for obj in render_objects(options):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "dockyard"
        assert labels["app.kubernetes.io/instance"] == "dockyard"
        assert labels["app.kubernetes.io/managed-by"] == "dockyard"
        assert labels["app.kubernetes.io/version"] == image_version(options.image)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == options.namespace
    objects = by_kind(options)
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"] == selector
    assert "app.kubernetes.io/version" not in selector  # selectors are immutable


def test_defaults() -> None:
    objects = by_kind(ManifestOptions())
    assert objects["Namespace"]["metadata"]["name"] == "registry"
    pvc = objects["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "registry-data"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "storageClassName" not in pvc["spec"]
    assert objects["ConfigMap"]["metadata"]["name"] == "registry-config"
    port = objects["Service"]["spec"]["ports"][0]
    assert objects["Service"]["spec"]["type"] == "NodePort"
    assert (port["nodePort"], port["port"]) == (30500, 5000)
    assert container(ManifestOptions())["image"] == default_image()
    assert default_image() == f"ghcr.io/dockyard/dockyard:{__version__}"


def test_pod_runs_as_non_root_with_a_read_only_root() -> None:
    deployment = by_kind(FULL)["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == RUN_AS == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(FULL)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container(FULL)["resources"]
    assert set(resources) == {"requests", "limits"}


@pytest.mark.parametrize(("variant", "scheme"), [("default", "HTTP"), ("full", "HTTPS")])
def test_probes_use_healthz_and_readyz(variant: str, scheme: str) -> None:
    c = container(VARIANTS[variant])
    assert c["ports"] == [{"name": "registry", "containerPort": 5000, "protocol": "TCP"}]
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert (live["path"], live["port"], live["scheme"]) == ("/healthz", "registry", scheme)
    assert (ready["path"], ready["port"], ready["scheme"]) == ("/readyz", "registry", scheme)


def _mount_for(path: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    found = [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
    assert found, f"{path} is on no volume"
    return max(found, key=lambda m: len(m["mountPath"]))


def test_every_path_in_the_config_is_mounted() -> None:
    c = container(FULL)
    pod = by_kind(FULL)["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = dockyard_config(FULL)
    assert c["args"][:2] == ["--config", "/etc/dockyard/config.yml"]
    expected: dict[str, dict[str, Any]] = {
        "/etc/dockyard/config.yml": {"configMap": {"name": "registry-config"}},
        config["storage"]["filesystem"]["rootdirectory"]: {
            "persistentVolumeClaim": {"claimName": "registry-data"}
        },
        config["http"]["tls"]["certificate"]: {"secretName": "dockyard-tls"},
        config["http"]["tls"]["key"]: {"secretName": "dockyard-tls"},
        config["auth"]["htpasswd"]["path"]: {"secretName": "dockyard-users"},
    }
    for upstream in config["proxy"]["upstreams"]:
        secret = {"docker.io": "dockerhub-creds", "ghcr.io": "ghcr-creds"}.get(upstream["name"])
        assert ("passwordfile" in upstream) == (secret is not None)
        if secret is not None:
            expected[upstream["usernamefile"]] = {"secretName": secret}
            expected[upstream["passwordfile"]] = {"secretName": secret}
    for path, source in expected.items():
        volume = volumes[_mount_for(path, c["volumeMounts"])["name"]]
        if "secretName" in source:
            assert volume["secret"]["secretName"] == source["secretName"], path
        else:
            assert source.items() <= volume.items(), path
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert [m["name"] for m in c["volumeMounts"]] == [v["name"] for v in pod["volumes"]]
    for mount in c["volumeMounts"]:
        assert mount.get("readOnly", False) == (mount["name"] not in ("data", "tmp"))


def test_changing_the_config_restarts_the_pod() -> None:
    def checksum(options: ManifestOptions) -> str:
        template = by_kind(options)["Deployment"]["spec"]["template"]
        value: str = template["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum(ManifestOptions(image=IMAGE)) == checksum(ManifestOptions(image=IMAGE))
    assert checksum(ManifestOptions()) != checksum(ManifestOptions(tls_secret="tls"))


# -- the config.yml in the ConfigMap -------------------------------------------------------------


def _config_file(options: ManifestOptions, tmp_path: Path) -> Path:
    text = by_kind(options)["ConfigMap"]["data"]["config.yml"]
    # Point the mounted-secret paths at a scratch directory so Dockyard can read them here.
    path = tmp_path / "config.yml"
    path.write_text(text.replace(SECRETS_DIR, str(tmp_path / "secrets")), encoding="utf-8")
    return path


def test_default_config_is_what_dockyard_reads(tmp_path: Path) -> None:
    loaded = load_config(_config_file(ManifestOptions(), tmp_path), environ={})
    assert loaded.warnings == ()
    config = loaded.config
    assert config.http.addr == ":5000"
    assert config.storage.filesystem.rootdirectory == "/var/lib/registry"
    assert config.storage.delete.enabled is True
    assert config.http.tls.certificate is None
    assert [(u.name, u.url) for u in config.proxy.upstreams] == list(DEFAULT_UPSTREAMS)


def test_secret_files_are_read_by_dockyard(tmp_path: Path) -> None:
    loaded = load_config(_config_file(FULL, tmp_path), environ={})
    expected_warnings = (f"auth: {IGNORED_SECTIONS['auth']}",) if "auth" in IGNORED_SECTIONS else ()
    assert loaded.warnings == expected_warnings
    config = loaded.config
    assert config.http.tls.certificate == str(tmp_path / "secrets/tls/tls.crt")
    assert config.http.tls.key == str(tmp_path / "secrets/tls/tls.key")
    assert config.auth.htpasswd is not None
    assert config.auth.htpasswd.model_dump() == {
        "realm": "Edge registry",
        "path": str(tmp_path / "secrets/auth/htpasswd"),
    }
    # A kubernetes.io/basic-auth Secret mounted as files: username and password.
    creds = tmp_path / "secrets/upstreams/docker.io"
    creds.mkdir(parents=True)
    (creds / "username").write_text("mirror-bot\n")
    (creds / "password").write_text("s3cret\n")
    creds = tmp_path / "secrets/upstreams/ghcr.io"
    creds.mkdir(parents=True)
    (creds / "username").write_text("octocat")
    (creds / "password").write_text("ghp_token")
    upstreams, _default = upstreams_from_config(config.proxy)
    credentials = {u.name: (u.username, u.password) for u in upstreams}
    assert credentials == {
        "docker.io": ("mirror-bot", "s3cret"),
        "ghcr.io": ("octocat", "ghp_token"),
        "harbor.example.com": (None, None),
    }


# -- mistakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": "50GB"}, "invalid size"),
        ({"node_port": 5000}, "NodePort range"),
        ({"namespace": "Registry"}, "invalid namespace"),
        ({"namespace": "r" * 64}, "invalid namespace"),
        ({"storage_class": "local path"}, "invalid storage class"),
        ({"tls_secret": "TLS!"}, "invalid TLS secret"),
        ({"image": ""}, "invalid image"),
        ({"upstreams": (Upstream("docker.io", "registry-1.docker.io"),)}, "http:// or https://"),
        ({"upstreams": (Upstream("Docker Hub", "https://x"),)}, "invalid upstream name"),
        (
            {"upstreams": (Upstream("quay.io", "https://a"), Upstream("quay.io", "https://b"))},
            "given twice",
        ),
    ],
)
def test_invalid_options_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ManifestOptions(**changes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-secret=quay.io=creds", "--upstream=docker.io=https://x"], "no upstream"),
        (["--upstream=docker.io"], "expected NAME=VALUE"),
        (["--size=lots"], "invalid size"),
        (["--node-port=80"], "30000<=x<=32767"),
    ],
)
def test_cli_reports_mistakes(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_upstreams_replace_the_defaults() -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", "--upstream=quay.io=https://quay.io"])
    assert result.exit_code == 0, result.output
    config_map = list(yaml.safe_load_all(result.stdout))[2]
    config = yaml.safe_load(config_map["data"]["config.yml"])
    assert config["proxy"]["upstreams"] == [{"name": "quay.io", "url": "https://quay.io"}]


def test_cli_warns_while_dockyard_does_not_enforce_htpasswd() -> None:
    result = CliRunner().invoke(cli, ["k8s", "manifests", "--htpasswd-secret=users"])
    assert result.exit_code == 0, result.output
    assert ("warning: auth:" in result.stderr) == ("auth" in IGNORED_SECTIONS)


def test_image_version_label() -> None:
    assert image_version("ghcr.io/dockyard/dockyard:0.1.0") == "0.1.0"
    assert image_version("localhost:5000/dockyard") is None
    assert image_version("localhost:5000/dockyard:v2@sha256:" + "a" * 64) == "v2"
    assert image_version("dockyard") is None


def test_long_upstream_names_still_make_valid_volume_names() -> None:
    host = "mirror." + "x" * 60 + ".example.com"
    options = ManifestOptions(upstreams=(Upstream(host, f"https://{host}", secret="creds"),))
    for obj in render_objects(options):
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    volumes = by_kind(options)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert all(len(v["name"]) <= 63 for v in volumes)


def test_workers_reach_the_container_and_its_resources() -> None:
    one = container(ManifestOptions(image=IMAGE))
    assert "--workers" not in one["args"]
    assert one["resources"]["requests"]["memory"] == "128Mi"
    four = container(ManifestOptions(image=IMAGE, workers=4))
    assert four["args"][-2:] == ["--workers", "4"]
    assert four["resources"] == {
        "requests": {"cpu": "400m", "memory": "416Mi"},
        "limits": {"cpu": "4", "memory": "4Gi"},
    }
    with pytest.raises(ValueError, match="workers"):
        ManifestOptions(workers=0)
    result = CliRunner().invoke(cli, ["k8s", "manifests", "--workers=0"])
    assert result.exit_code == 2 and "--workers" in result.output
