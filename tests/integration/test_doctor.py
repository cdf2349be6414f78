"""`dockyard doctor` against a healthy set-up and against each broken variant."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.support.client import RegistryClient
from tests.integration.support.containerd import dead_endpoint
from tests.integration.support.server import DockyardServer, free_port

PASSWORD = "doctor-secret"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def registries(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / f"registries-{len(list(tmp_path.glob('registries-*')))}.yaml"
    result = cli("k3s", "registries", "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out


def doctor(path: Path, *images: str) -> tuple[int, list[dict[str, object]]]:
    args = ["doctor", "--file", str(path), "--format", "json", "--timeout", "3"]
    for image in images:
        args += ["--image", image]
    result = cli(*args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["checks"]


def failed(checks: list[dict[str, object]]) -> list[str]:
    return [f"{c['name']}" for c in checks if not c["ok"] and not c["warning"]]


def test_healthy_setup_is_all_green(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    server = dockyard_factory()
    RegistryClient(server.url).push_image("library/app", "v1")
    path = registries(tmp_path, "--endpoint", server.url, "--mirror", "docker.io")
    status, checks = doctor(path, "docker.io/library/app:v1")
    names = [c["name"] for c in checks if c["ok"]]
    assert status == 0, checks
    for name in ("DNS", "TCP", "/v2/", "resolve docker.io/library/app:v1"):
        assert name in names


def test_broken_variants_are_named(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    server = dockyard_factory()
    RegistryClient(server.url).push_image("library/app", "v1")
    # Nothing listens there.
    dead = registries(tmp_path, "--endpoint", dead_endpoint().removesuffix("/v2"))
    status, checks = doctor(dead)
    assert status == 1 and "TCP" in failed(checks)
    # A name the node cannot resolve.
    unresolvable = registries(tmp_path, "--endpoint", "http://no-such-registry.invalid:30500")
    status, checks = doctor(unresolvable)
    assert status == 1 and "DNS" in failed(checks)
    # https against a plain-http Dockyard.
    wrong_scheme = registries(
        tmp_path, "--endpoint", server.url.replace("http://", "https://"), "--mirror", "docker.io"
    )
    status, checks = doctor(wrong_scheme)
    assert status == 1 and "TLS" in failed(checks)
    # The image is not there.
    healthy = registries(tmp_path, "--endpoint", server.url, "--mirror", "docker.io")
    status, checks = doctor(healthy, "docker.io/library/missing:v1")
    assert status == 1 and "resolve docker.io/library/missing:v1" in failed(checks)
    # A typo in the file: the linter names it.
    typo = tmp_path / "typo.yaml"
    typo.write_text(healthy.read_text().replace("endpoint:", "endpionts:", 1))
    status, checks = doctor(typo)
    assert status == 1
    assert any(str(c["name"]).startswith("lint ") and not c["ok"] for c in checks)


def test_auth_checks(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> None:
    htpasswd = tmp_path / "htpasswd"
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "users", "add", "node", "--file", str(htpasswd)],
        env={"DOCKYARD_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = tmp_path / "auth.yml"
    config.write_text(f"auth:\n  htpasswd:\n    realm: r\n    path: {htpasswd}\n")
    server = dockyard_factory(config=config, port=free_port())
    client = RegistryClient(server.url)
    client.http.auth = ("node", PASSWORD)
    client.push_image("library/app", "v1")
    without = registries(tmp_path, "--endpoint", server.url, "--mirror", "docker.io")
    status, checks = doctor(without, "docker.io/library/app:v1")
    assert status == 1 and "/v2/" in failed(checks)
    wrong = registries(
        tmp_path,
        "--endpoint",
        server.url,
        "--mirror",
        "docker.io",
        "--username",
        "node",
        "--password",
        "wrong",
    )
    status, checks = doctor(wrong, "docker.io/library/app:v1")
    assert status == 1 and "auth" in failed(checks)
    right = registries(
        tmp_path,
        "--endpoint",
        server.url,
        "--mirror",
        "docker.io",
        "--username",
        "node",
        "--password",
        PASSWORD,
    )
    status, checks = doctor(right, "docker.io/library/app:v1")
    assert status == 0, checks
