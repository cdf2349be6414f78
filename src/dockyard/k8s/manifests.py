"""The in-cluster deployment of Dockyard, rendered as Kubernetes objects.

Pure functions from `ManifestOptions` to plain dicts (and YAML text): a Namespace, a
PersistentVolumeClaim for the data, a ConfigMap holding Dockyard's `config.yml`, a
Deployment and a NodePort Service. Nothing here talks to a cluster.

Inside the pod:

    /etc/dockyard/config.yml                      ConfigMap registry-config
    /var/lib/registry                             PVC registry-data (blobs, uploads, metadata.db)
    /run/secrets/dockyard/tls/tls.{crt,key}       --tls-secret (kubernetes.io/tls)
    /run/secrets/dockyard/auth/htpasswd           --htpasswd-secret
    /run/secrets/dockyard/upstreams/<name>/{username,password}   --upstream-secret
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dockyard import __version__
from dockyard.config import UpstreamConfig
from dockyard.k8s.yamltext import dump_yaml, dump_yaml_all

PORT = 5000
RUN_AS = 10001
DATA_DIR = "/var/lib/registry"
CONFIG_DIR = "/etc/dockyard"
CONFIG_FILE = "config.yml"
SECRETS_DIR = "/run/secrets/dockyard"
DEFAULT_IMAGE_REPOSITORY = "ghcr.io/dockyard/dockyard"
APP = "dockyard"

# What a K3s node's registries.yaml usually mirrors, with the URL each is fetched from.
DEFAULT_UPSTREAMS: tuple[tuple[str, str], ...] = (
    ("docker.io", "https://registry-1.docker.io"),
    ("ghcr.io", "https://ghcr.io"),
    ("quay.io", "https://quay.io"),
    ("gcr.io", "https://gcr.io"),
    ("registry.k8s.io", "https://registry.k8s.io"),
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def default_image() -> str:
    """The image built from this checkout's Containerfile, tagged with the package version."""
    return f"{DEFAULT_IMAGE_REPOSITORY}:{__version__}"


@dataclass(frozen=True)
class Upstream:
    """A registry to cache (`proxy.upstreams[]`), optionally with a credentials Secret."""

    name: str
    url: str
    # A Secret with the keys `username` and `password` (type kubernetes.io/basic-auth).
    secret: str | None = None


def default_upstreams() -> tuple[Upstream, ...]:
    """docker.io, ghcr.io, quay.io, gcr.io and registry.k8s.io, anonymously."""
    return tuple(Upstream(name, url) for name, url in DEFAULT_UPSTREAMS)


@dataclass(frozen=True)
class ManifestOptions:
    """Everything `dockyard k8s manifests` can change."""

    namespace: str = "registry"
    image: str = field(default_factory=default_image)
    size: str = "50Gi"
    storage_class: str | None = None
    node_port: int = 30500
    upstreams: tuple[Upstream, ...] = field(default_factory=default_upstreams)
    tls_secret: str | None = None
    htpasswd_secret: str | None = None
    htpasswd_realm: str = "Dockyard"
    # `serve --workers`: processes sharing the port, for small requests on several cores.
    workers: int = 1

    def __post_init__(self) -> None:
        _check_name("namespace", self.namespace, _DNS_LABEL)
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be between 1 and 64, not {self.workers}")
        if not self.image or any(c.isspace() for c in self.image):
            raise ValueError(f"invalid image {self.image!r}")
        if not _QUANTITY.match(self.size):
            raise ValueError(f"invalid size {self.size!r}: use a quantity such as 50Gi or 500Mi")
        if self.storage_class is not None:
            _check_name("storage class", self.storage_class, _DNS_SUBDOMAIN)
        if not 30000 <= self.node_port <= 32767:
            raise ValueError(
                f"node port {self.node_port} is outside Kubernetes' NodePort range 30000-32767"
            )
        for what, name in (("TLS secret", self.tls_secret), ("htpasswd", self.htpasswd_secret)):
            if name is not None:
                _check_name(what, name, _DNS_SUBDOMAIN)
        seen: dict[str, str] = {}
        for upstream in self.upstreams:
            _check_upstream(upstream)
            volume = _upstream_volume(upstream.name)
            if volume in seen:
                raise ValueError(f"upstream {upstream.name!r} is given twice")
            seen[volume] = upstream.name
            if upstream.secret is not None:
                _check_name(f"secret for {upstream.name}", upstream.secret, _DNS_SUBDOMAIN)


def _check_name(what: str, value: str, pattern: re.Pattern[str]) -> None:
    longest = 63 if pattern is _DNS_LABEL else 253
    if len(value) > longest or not pattern.match(value):
        raise ValueError(
            f"invalid {what} name {value!r}: lower-case letters, digits and '-' "
            "(Kubernetes object names)"
        )


def _check_upstream(upstream: Upstream) -> None:
    # The same checks `dockyard serve` applies to proxy.upstreams[].
    try:
        UpstreamConfig(name=upstream.name, url=upstream.url)
    except ValidationError as exc:
        messages = [str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()]
        raise ValueError("; ".join(messages)) from None


def _upstream_volume(name: str) -> str:
    # Volume names are DNS labels (63 characters): `docker.io` -> `upstream-docker-io`.
    volume = "upstream-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if len(volume) > 63:
        volume = "upstream-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return volume


def labels(options: ManifestOptions) -> dict[str, str]:
    """The app.kubernetes.io labels every object carries."""
    result = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": APP,
        "app.kubernetes.io/component": "registry",
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/managed-by": APP,
    }
    version = image_version(options.image)
    if version is not None:
        result["app.kubernetes.io/version"] = version
    return result


def selector_labels() -> dict[str, str]:
    """The immutable subset that selects Dockyard's pods."""
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": APP}


def image_version(image: str) -> str | None:
    """The tag of `registry/repo:tag[@digest]`, if it is a valid label value."""
    name = image.split("@", 1)[0]
    _, colon, tag = name.rpartition(":")
    if not colon or "/" in tag or not _LABEL_VALUE.match(tag):
        return None
    return tag


def _metadata(options: ManifestOptions, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": labels(options)}


def dockyard_config(options: ManifestOptions) -> dict[str, Any]:
    """Dockyard's config.yml (Distribution's format) for the pod."""
    http: dict[str, Any] = {
        "addr": f":{PORT}",
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if options.tls_secret is not None:
        http["tls"] = {
            "certificate": f"{SECRETS_DIR}/tls/tls.crt",
            "key": f"{SECRETS_DIR}/tls/tls.key",
        }
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "json", "fields": {"service": APP}},
        "storage": {
            "filesystem": {"rootdirectory": DATA_DIR},
            "delete": {"enabled": True},
        },
        "http": http,
    }
    if options.htpasswd_secret is not None:
        config["auth"] = {
            "htpasswd": {"realm": options.htpasswd_realm, "path": f"{SECRETS_DIR}/auth/htpasswd"}
        }
    upstreams: list[dict[str, Any]] = []
    for upstream in options.upstreams:
        entry: dict[str, Any] = {"name": upstream.name, "url": upstream.url}
        if upstream.secret is not None:
            where = f"{SECRETS_DIR}/upstreams/{upstream.name}"
            entry["usernamefile"] = f"{where}/username"
            entry["passwordfile"] = f"{where}/password"
        upstreams.append(entry)
    if upstreams:
        config["proxy"] = {"upstreams": upstreams}
    return config


def namespace(options: ManifestOptions) -> dict[str, Any]:
    """The Namespace, labelled for the restricted Pod Security Standard Dockyard meets."""
    ns_labels = labels(options) | {"pod-security.kubernetes.io/enforce": "restricted"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": ns_labels},
    }


def persistent_volume_claim(options: ManifestOptions) -> dict[str, Any]:
    """`registry-data`: one ReadWriteOnce volume for blobs, uploads and metadata.db."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.size}},
    }
    if options.storage_class is not None:
        spec["storageClassName"] = options.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(options, "registry-data"),
        "spec": spec,
    }


def config_map(options: ManifestOptions) -> dict[str, Any]:
    """`registry-config`: config.yml, without secrets (those are mounted files)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(options, "registry-config"),
        "data": {CONFIG_FILE: dump_yaml(dockyard_config(options))},
    }


def _probe(path: str, scheme: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "registry", "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _volumes(options: ManifestOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "registry-data"}},
        {"name": "config", "configMap": {"name": "registry-config"}},
        # The root filesystem is read-only; give libraries a scratch /tmp.
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    secrets: list[tuple[str, str, str]] = []
    if options.tls_secret is not None:
        secrets.append(("tls", options.tls_secret, f"{SECRETS_DIR}/tls"))
    if options.htpasswd_secret is not None:
        secrets.append(("htpasswd", options.htpasswd_secret, f"{SECRETS_DIR}/auth"))
    for upstream in options.upstreams:
        if upstream.secret is not None:
            where = f"{SECRETS_DIR}/upstreams/{upstream.name}"
            secrets.append((_upstream_volume(upstream.name), upstream.secret, where))
    for volume, secret, path in secrets:
        # 0440 with fsGroup: readable by the registry's group only.
        volumes.append({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}})
        mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    return volumes, mounts


def _resources(workers: int) -> dict[str, Any]:
    """One process: 128Mi requested, 1Gi and 2 CPUs at most. Each further worker is another
    ~80 MB process (the supervisor is ~10 MB): more memory, and a CPU each."""
    if workers == 1:
        return {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        }
    return {
        "requests": {"cpu": f"{100 * workers}m", "memory": f"{32 + 96 * workers}Mi"},
        "limits": {"cpu": str(max(2, workers)), "memory": f"{workers}Gi"},
    }


def deployment(options: ManifestOptions) -> dict[str, Any]:
    """One Dockyard pod; Recreate, because the ReadWriteOnce volume cannot be shared."""
    scheme = "HTTPS" if options.tls_secret is not None else "HTTP"
    volumes, mounts = _volumes(options)
    config_text = config_map(options)["data"][CONFIG_FILE]
    container = {
        "name": APP,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
        + (["--workers", str(options.workers)] if options.workers > 1 else []),
        "ports": [{"name": "registry", "containerPort": PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", scheme, period=10, failures=3),
        "readinessProbe": _probe("/readyz", scheme, period=5, failures=2),
        "resources": _resources(options.workers),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, APP),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels()},
            "template": {
                "metadata": {
                    "labels": labels(options),
                    # Dockyard reads its config once: a changed ConfigMap must restart the pod.
                    "annotations": {
                        "checksum/config": hashlib.sha256(config_text.encode()).hexdigest()
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    # Service links would inject REGISTRY_* variables for a Service named
                    # `registry`, which Dockyard reads as config overrides (as Distribution does).
                    "enableServiceLinks": False,
                    # Longer than http.draintimeout (10s), so SIGTERM can drain.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(options: ManifestOptions) -> dict[str, Any]:
    """`dockyard`: NodePort, so every node reaches it at 127.0.0.1:<node port>."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, APP),
        "spec": {
            "type": "NodePort",
            "selector": selector_labels(),
            "ports": [
                {
                    "name": "registry",
                    "protocol": "TCP",
                    "port": PORT,
                    "targetPort": "registry",
                    "nodePort": options.node_port,
                }
            ],
        },
    }


def render_objects(options: ManifestOptions) -> list[dict[str, Any]]:
    """Every object, in the order `kubectl apply` needs them (the Namespace first)."""
    return [
        namespace(options),
        persistent_volume_claim(options),
        config_map(options),
        deployment(options),
        service(options),
    ]


def render_yaml(options: ManifestOptions) -> str:
    """The whole deployment as one multi-document YAML stream."""
    return dump_yaml_all(render_objects(options))


def render_files(options: ManifestOptions) -> dict[str, str]:
    """One file per object, numbered so `kubectl apply -f DIR` creates the Namespace first."""
    files: dict[str, str] = {}
    for index, obj in enumerate(render_objects(options), start=1):
        name = f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        files[name] = dump_yaml(obj)
    return files
