"""hosts.toml and the config.toml registry part, as K3s writes them: golden files.

Every golden file here was also produced by K3s's own Go code (`getHostConfigs` and
`HostsTomlTemplate` run by Go's text/template) and compared byte for byte when this module
was written. `DOCKYARD_UPDATE_GOLDEN=1` rewrites them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from dockyard.k3s.hosts import hosts_files, plan_hosts, render_registry_config
from dockyard.k3s.model import parse_registries

GOLDEN = Path(__file__).parent / "golden" / "k3s_hosts"

CASES = {
    # The file the users start from.
    "nodeport": """
mirrors:
  "docker.io":
    endpoint:
      - "http://127.0.0.1:30500"
  "gcr.io":
    endpoint:
      - "http://127.0.0.1:30500"
  "ghcr.io":
    endpoint:
      - "http://127.0.0.1:30500"
  "quay.io":
    endpoint:
      - "http://127.0.0.1:30500"
configs:
  "127.0.0.1:30500":
    tls:
      insecure_skip_verify: true
""",
    # What `dockyard k3s registries` writes for a TLS endpoint with credentials.
    "tls-and-auth": """
mirrors:
  "docker.io":
    endpoint:
      - "https://dockyard.example.com:5000"
      - "http://127.0.0.1:30500"
  "registry.k8s.io":
    endpoint:
      - "https://dockyard.example.com:5000"
configs:
  "dockyard.example.com:5000":
    auth:
      username: "mirror"
      password: "p\\"a ss"
    tls:
      ca_file: "/etc/dockyard/ca.crt"
      cert_file: "/etc/dockyard/client.crt"
      key_file: "/etc/dockyard/client.key"
""",
    # "*" is _default with an empty server; a "*" config applies to the default endpoint.
    "wildcard": """
mirrors:
  "*":
    endpoint: ["http://127.0.0.1:30500"]
configs:
  "*":
    auth: {username: u, password: p}
    tls: {insecure_skip_verify: true}
  registry.example.com:
    auth: {auth: "dXNlcjpwYXNz"}
""",
    # No scheme, paths, duplicates, the upstream listed last, rewrites.
    "normalization": """
mirrors:
  docker.io:
    endpoint:
      - registry.example.com
      - "127.0.0.1:5000"
      - https://registry.example.com/v2
      - https://mirror.example.com/prefix/v2
      - docker.io
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
      "^library/(.*)": "lib/$1"
  quay.io:
  registry-1.docker.io:
    endpoint: [registry-1.docker.io]
configs:
  registry-1.docker.io:
    tls: {ca_file: /etc/ssl/hub.pem}
""",
    # Mistakes K3s still turns into files: a scheme in the key, a config for a host no one
    # mirrors, an endpoint it cannot parse.
    "mistakes": """
mirrors:
  "https://docker.io":
    endpoint: ["http://127.0.0.1:30500"]
  ghcr.io:
    endpoint: ["http://bad host", "http://127.0.0.1:30500"]
configs:
  "localhost:5000":
    tls: {insecure_skip_verify: true}
""",
}


def render_case(text: str, no_default_endpoint: bool = False) -> str:
    registries = parse_registries(text)
    plan = plan_hosts(registries, no_default_endpoint=no_default_endpoint)
    files = {**hosts_files(plan), "config-registry.toml": render_registry_config(registries)}
    return "".join(f"==> {path} <==\n{content}" for path, content in sorted(files.items()))


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing {path}; DOCKYARD_UPDATE_GOLDEN=1 writes it"
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hosts_toml_matches_golden(case: str) -> None:
    assert_golden(f"{case}.txt", render_case(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_disable_default_endpoint_matches_golden(case: str) -> None:
    assert_golden(f"{case}-no-default.txt", render_case(CASES[case], no_default_endpoint=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_file_is_valid_toml(case: str) -> None:
    registries = parse_registries(CASES[case])
    for content in hosts_files(plan_hosts(registries)).values():
        tomllib.loads(content)
    tomllib.loads(render_registry_config(registries))


def test_docker_io_mirror_file_shape() -> None:
    files = hosts_files(plan_hosts(parse_registries(CASES["nodeport"])))
    assert sorted(files) == [
        "certs.d/127.0.0.1:30500/hosts.toml",
        "certs.d/docker.io/hosts.toml",
        "certs.d/gcr.io/hosts.toml",
        "certs.d/ghcr.io/hosts.toml",
        "certs.d/quay.io/hosts.toml",
    ]
    parsed = tomllib.loads(files["certs.d/docker.io/hosts.toml"])
    assert parsed == {
        "server": "https://registry-1.docker.io/v2",
        "capabilities": ["pull", "resolve", "push"],
        "host": {
            "http://127.0.0.1:30500/v2": {
                "capabilities": ["pull", "resolve"],
                "skip_verify": True,
            }
        },
    }


def test_mirror_without_endpoints_writes_nothing() -> None:
    plan = plan_hosts(parse_registries("mirrors:\n  docker.io:\n  '*':\n"))
    assert plan.hosts == {}


def test_k3s_warnings_for_skipped_endpoints() -> None:
    plan = plan_hosts(parse_registries(CASES["normalization"]))
    assert plan.warnings == (
        "Skipping duplicate endpoint URL 2=https://registry.example.com/v2 for docker.io",
    )
    plan = plan_hosts(parse_registries(CASES["mistakes"]))
    assert plan.warnings == (
        "Ignoring invalid endpoint URL 0=http://bad host for ghcr.io: "
        "invalid character ' ' in host name",
    )


def test_registry_name_that_escapes_certs_d_is_refused() -> None:
    plan = plan_hosts(parse_registries("mirrors:\n  '../etc':\n    endpoint: [http://x:1]\n"))
    with pytest.raises(ValueError, match="directory"):
        hosts_files(plan)


def test_auth_stanzas_are_k3s_config_toml() -> None:
    text = render_registry_config(parse_registries(CASES["tls-and-auth"]), "/certs.d")
    assert text.splitlines()[1:] == [
        '[plugins."io.containerd.grpc.v1.cri".registry]',
        '  config_path = "/certs.d"',
        "",
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."dockyard.example.com:5000".auth]',
        '  username = "mirror"',
        '  password = "p\\"a ss"',
    ]
