"""Fixtures for end-to-end tests: real servers and real clients, loopback only.

These tests must run inside a private network namespace (`scripts/test.sh` does
`unshare -n` and brings `lo` up), so nothing can leave the machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.support.client import RegistryClient
from tests.integration.support.server import DistributionServer, DockyardServer


def _only_loopback() -> bool:
    # /proc/net/dev belongs to this process's network namespace (sysfs may not).
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines] == ["lo"]


@pytest.fixture(scope="session", autouse=True)
def private_network() -> None:
    if not _only_loopback():
        pytest.exit(
            "integration tests run only in a private network namespace: "
            "use scripts/test.sh, or `unshare -n sh -c 'ip link set lo up && pytest ...'`",
            returncode=3,
        )


@pytest.fixture(autouse=True)
def _no_blob_info_cache() -> None:
    # skopeo/podman remember blob locations and then try cross-repository mounts;
    # forget them so every test sees the same request sequence.
    for path in (
        Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
        Path("/var/lib/containers/cache/blob-info-cache-v1.sqlite"),
    ):
        path.unlink(missing_ok=True)


@pytest.fixture
def dockyard_factory(tmp_path: Path) -> Iterator[Callable[..., DockyardServer]]:
    """Start any number of Dockyard servers; all are stopped at the end of the test."""
    started: list[DockyardServer] = []

    def start(name: str = "dockyard", **kwargs: object) -> DockyardServer:
        server = DockyardServer(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dockyard(dockyard_factory: Callable[..., DockyardServer]) -> DockyardServer:
    """A fresh Dockyard with deletes enabled."""
    return dockyard_factory(env={"REGISTRY_STORAGE_DELETE_ENABLED": "true"})


@pytest.fixture
def distribution_factory(tmp_path: Path) -> Iterator[Callable[..., DistributionServer]]:
    started: list[DistributionServer] = []

    def start(name: str = "distribution", **kwargs: object) -> DistributionServer:
        server = DistributionServer(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    """One Dockyard (deletes enabled) for every test of a module; each test uses its own
    repository (`repo`), so they stay independent. It must stop cleanly."""
    root = tmp_path_factory.mktemp("shared") / "root"
    server = DockyardServer(root, env={"REGISTRY_STORAGE_DELETE_ENABLED": "true"}).start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def client(shared_dockyard: DockyardServer) -> RegistryClient:
    return RegistryClient(shared_dockyard.url)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of the test's own: `<module>/<test name>`."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"{re.sub(r'[^a-z0-9]+', '-', module)}/{name}"
