"""The Containerfile builds the image the Deployment runs: same user, port, command and paths.

No container engine runs in the unit tests, so this reads the instructions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dockyard.config import load_config
from dockyard.k8s.manifests import (
    CONFIG_DIR,
    CONFIG_FILE,
    DATA_DIR,
    PORT,
    RUN_AS,
    ManifestOptions,
    render_objects,
)

ROOT = Path(__file__).parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Containerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)  # line continuations
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def only(keyword: str) -> str:
    values = [rest for kw, rest in instructions() if kw == keyword]
    assert len(values) == 1, f"expected one {keyword}, found {values}"
    return values[0]


def deployment_container() -> dict[str, object]:
    deployment = render_objects(ManifestOptions())[3]
    assert deployment["kind"] == "Deployment"
    container: dict[str, object] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_base_image_is_python_311_slim() -> None:
    # FROM ${BASE}, with python:3.11-slim unless a build argument names another copy of it.
    assert only("FROM") == "${BASE}"
    base = [rest for kw, rest in instructions() if kw == "ARG" and rest.startswith("BASE=")]
    assert base == ["BASE=docker.io/library/python:3.11-slim"]
    first = instructions()[0]
    assert first == ("ARG", base[0]), "BASE must be declared before FROM"


def test_installs_this_package() -> None:
    copies = [rest for kw, rest in instructions() if kw == "COPY"]
    assert any(c.split()[0] == "src" for c in copies)
    assert any("pyproject.toml" in c.split() for c in copies)
    assert any(kw == "RUN" and re.search(r"\bpip install \.", rest) for kw, rest in instructions())
    # The build context must carry what pip needs.
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for needed in ("!pyproject.toml", "!README.md", "!src/"):
        assert needed in ignore


def test_runs_as_the_user_the_deployment_names() -> None:
    user = only("USER")
    assert user.split(":")[0] == str(RUN_AS)
    security = deployment_container()["securityContext"]
    assert isinstance(security, dict)
    assert security["runAsUser"] == RUN_AS
    assert security["runAsGroup"] == int(user.split(":")[1])
    run = " ".join(rest for kw, rest in instructions() if kw == "RUN")
    assert f"--uid {RUN_AS}" in run
    assert f"chown {RUN_AS}:{RUN_AS} {DATA_DIR}" in run


def test_exposes_the_port_the_deployment_probes() -> None:
    assert only("EXPOSE") == str(PORT)
    ports = deployment_container()["ports"]
    assert isinstance(ports, list)
    assert ports[0]["containerPort"] == PORT


def test_entrypoint_and_command_match_the_deployment() -> None:
    assert json.loads(only("ENTRYPOINT")) == ["dockyard", "serve"]
    cmd = json.loads(only("CMD"))
    assert cmd == ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    # The Deployment's args replace CMD with the same thing, pointing at the ConfigMap.
    assert deployment_container()["args"] == cmd
    assert json.loads(only("VOLUME")) == [DATA_DIR]


def test_built_in_config_is_valid(tmp_path: Path) -> None:
    # Without the ConfigMap (plain `podman run`), the image's own config.yml is used.
    run = " ".join(rest for kw, rest in instructions() if kw == "RUN")
    match = re.search(r"printf '([^']*)' *> *(\S+)", run)
    assert match is not None
    assert match.group(2) == f"{CONFIG_DIR}/{CONFIG_FILE}"
    path = tmp_path / CONFIG_FILE
    path.write_text(match.group(1).replace("\\n", "\n"), encoding="utf-8")
    loaded = load_config(path, environ={})
    assert loaded.warnings == ()
    assert loaded.config.storage.filesystem.rootdirectory == DATA_DIR
    assert loaded.config.http.addr == f":{PORT}"
