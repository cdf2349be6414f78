"""oras-py's own live-registry test suite, run against Dockyard.

The suite ships inside the oras wheel (`oras/tests`). It is copied into `tmp_path` (it
writes scratch files next to itself, and the installed package must stay untouched) and
run there as a subprocess pytest with `ORAS_HOST`/`ORAS_PORT` naming Dockyard, which is
how its authors run it against `ghcr.io/oras-project/registry`.

Adjustments, all outside the suite's own files:
- Deselected: the four tests that talk to ghcr.io (the internet is unreachable here).
- `auth/test_auth.py` (ECR token logic, no registry involved) needs boto3; it is left out
  only when boto3 is not installed.
- `test_chunked_push` pushes a file of `oras.defaults.default_chunksize * 1024` bytes
  (16 GiB by default). A `-p` plugin lowers `default_chunksize` before `oras.provider`
  is imported (its functions bind the value as a default argument), so the file is 16 MiB
  and still goes up in 1024 PATCH chunks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import oras
import pytest

from tests.integration.support.server import DockyardServer
from tests.integration.support.tls import TLSDockyard, tls_init

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ORAS_TESTS = Path(oras.__file__).parent / "tests"

# Tests that reach ghcr.io: nothing outside 127.0.0.0/8 is reachable (or allowed).
INTERNET_TESTS = [
    "test_oras.py::test_get_many_tags",
    "test_oras.py::test_ssl_no_verify",
    "test_oras.py::test_ssl_verify_fails_if_bad_ca",
    "test_oras.py::test_ssl_verify_fails_fast_if_bad_ca",
]

# The suite's `with_auth(True)` tests need a registry with Basic auth over TLS, which its
# conftest enables with ORAS_AUTH=true: the unauthenticated run skips exactly these, and
# test_oras_py_suite_in_authenticated_mode runs them.
AUTH_ONLY_TESTS = {
    "test_oras.py::test_login_logout",
    "test_oras.py::test_directory_push_pull_selfsigned_auth",
    "test_oras.py::test_custom_docker_config_path",
}

# Tests that push to / pull from the registry under test: these must all pass.
REGISTRY_TESTS = {
    "test_oras.py::test_basic_oras",
    "test_oras.py::test_basic_push_pull",
    "test_oras.py::test_basic_push_pul_via_sha_ref",
    "test_oras.py::test_get_delete_tags",
    "test_oras.py::test_directory_push_pull",
    "test_provider.py::test_annotated_registry_push",
    "test_provider.py::test_file_contains_column",
    "test_provider.py::test_chunked_push",
    "test_layout.py::test_push_from_layout_single_arch",
    "test_layout.py::test_push_from_layout_multi_arch",
    "test_layout.py::test_push_from_layout_invalid_tag",
    "test_layout.py::test_pull_to_layout_single_arch",
    "test_layout.py::test_pull_to_layout_multi_arch",
    "test_layout.py::test_pull_to_layout_custom_tag",
}

CHUNK_SIZE = 16 * 1024  # test_chunked_push: 1024 chunks of 16 KiB = a 16 MiB blob

PLUGIN = f'''"""Loaded with -p before the suite imports oras.provider."""
import sys

import oras.defaults

assert "oras.provider" not in sys.modules, "oras.provider imported too early"
oras.defaults.default_chunksize = {CHUNK_SIZE}
'''

PYTEST_INI = """[pytest]
markers =
    with_auth(value): test needs (True) or must not have (False) registry authentication
timeout = 90
"""


def _copy_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "oras_tests"
    shutil.copytree(ORAS_TESTS, suite, ignore=shutil.ignore_patterns("__pycache__"))
    (suite / "pytest.ini").write_text(PYTEST_INI)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "dockyard_oras_chunksize.py").write_text(PLUGIN)
    return suite


def _outcomes(junit: Path) -> dict[str, str]:
    """`file.py::test` -> passed / failed / error / skipped, from a JUnit XML report."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        # classname is the module's dotted path relative to the rootdir: `auth.test_auth`.
        path = case.get("classname", "").replace(".", "/") + ".py"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        outcomes[f"{path}::{case.get('name')}"] = outcome
    return outcomes


def test_oras_py_live_registry_suite(tmp_path: Path, dockyard: DockyardServer) -> None:
    suite = _copy_suite(tmp_path)
    junit = tmp_path / "oras-junit.xml"
    args = [
        sys.executable, "-m", "pytest", "-p", "dockyard_oras_chunksize",
        "-p", "no:cacheprovider", "-q", "-rA", f"--junitxml={junit}",
        f"--basetemp={tmp_path / 'oras-tmp'}",
    ]  # fmt: skip
    for test in INTERNET_TESTS:
        args += ["--deselect", test]
    if importlib.util.find_spec("boto3") is None:
        args += ["--ignore", "auth/test_auth.py"]
    env = {
        **os.environ,
        "ORAS_HOST": "127.0.0.1",
        "ORAS_PORT": str(dockyard.port),
        "PYTHONPATH": str(tmp_path / "plugins"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("ORAS_AUTH", "ORAS_USER", "ORAS_PASS", "REQUESTS_CA_BUNDLE"):
        env.pop(name, None)
    result = subprocess.run(args, cwd=suite, env=env, capture_output=True, text=True, timeout=170)
    report = f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, report

    outcomes = _outcomes(junit)
    assert not [t for t in INTERNET_TESTS if t in outcomes], report
    not_passed = {t: o for t, o in outcomes.items() if o != "passed"}
    assert set(not_passed) == AUTH_ONLY_TESTS, (not_passed, report)
    assert set(not_passed.values()) == {"skipped"}, (not_passed, report)
    missing = REGISTRY_TESTS - {t for t, o in outcomes.items() if o == "passed"}
    assert not missing, (missing, report)
    # The whole offline part of the suite ran too (layout, utils, oci, ...).
    assert len(outcomes) > len(REGISTRY_TESTS) + len(AUTH_ONLY_TESTS), report

    # The chunked push really was chunked: many PATCHes, the blob assembled at PUT.
    patches = [
        entry
        for entry in dockyard.requests()
        if entry.get("method") == "PATCH"
        and str(entry.get("path", "")).startswith("/v2/dinosaur/artifact/blobs/uploads/")
    ]
    assert len(patches) >= 1024, len(patches)
    assert {entry.get("status") for entry in patches} == {202}


def test_oras_py_suite_in_authenticated_mode(tmp_path: Path) -> None:
    """The suite's `ORAS_AUTH=true` mode: Basic authentication over TLS (its tests use
    `tls_verify=False`, as against a self-signed registry)."""
    pki = tmp_path / "pki"
    tls_init(pki)
    htpasswd = tmp_path / "htpasswd"
    users = subprocess.run(
        [sys.executable, "-m", "dockyard", "users", "add", "myuser", "--file", str(htpasswd)],
        env={**os.environ, "DOCKYARD_PASSWORD": "mypass"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert users.returncode == 0, users.stderr
    config = tmp_path / "auth.yml"
    config.write_text(
        f"http:\n  tls:\n    certificate: {pki / 'registry.crt'}\n    key: {pki / 'registry.key'}\n"
        f"auth:\n  htpasswd:\n    realm: oras\n    path: {htpasswd}\n"
    )
    server = TLSDockyard(tmp_path / "root", config=config).start()
    try:
        suite = _copy_suite(tmp_path)
        junit = tmp_path / "oras-auth-junit.xml"
        args = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
            f"--junitxml={junit}", f"--basetemp={tmp_path / 'oras-auth-tmp'}", "test_oras.py",
        ]  # fmt: skip
        for test in INTERNET_TESTS:
            args += ["--deselect", test]
        env = {
            **os.environ,
            "ORAS_HOST": "localhost",
            "ORAS_PORT": str(server.port),
            "ORAS_AUTH": "true",
            "ORAS_USER": "myuser",
            "ORAS_PASS": "mypass",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        result = subprocess.run(
            args, cwd=suite, env=env, capture_output=True, text=True, timeout=170
        )
        report = f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
        assert result.returncode == 0, report
        outcomes = _outcomes(junit)
        passed = {t for t, o in outcomes.items() if o == "passed"}
        # Exactly the authenticated tests ran and passed; the unauthenticated ones were
        # skipped by the suite itself.
        assert passed >= AUTH_ONLY_TESTS, report
        assert {o for t, o in outcomes.items() if t not in passed} <= {"skipped"}, report
        entries = [
            json.loads(line) for line in server.log().splitlines() if '"dockyard.access"' in line
        ]
        assert any(e["status"] == 401 for e in entries)  # credentials were really required
        assert any(e["method"] == "PUT" and e["status"] == 201 for e in entries)
    finally:
        server.stop()
