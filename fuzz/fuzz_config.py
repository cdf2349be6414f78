"""Atheris harness: config.yml and REGISTRY_* variables (dockyard.config.load_config).

Run: .venv/bin/python fuzz/fuzz_config.py [-max_total_time=SECONDS] [-runs=N] [CORPUS_DIR ...]
(fuzz/run_all.sh runs every harness with its seeds). A crash is an input that breaks an
invariant of fuzz/checks.py; libFuzzer saves it as crash-<sha1> and stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["dockyard", "fuzz", "yaml"]):
    from fuzz import checks

ENV_MARKER = b"\n#ENV\n"


def test_one_input(data: bytes) -> None:
    # The config file, then optionally `#ENV` and REGISTRY_* variables as KEY=VALUE lines.
    document, _, variables = data.partition(ENV_MARKER)
    environ = {}
    for line in variables.decode("utf-8", errors="replace").splitlines()[:8]:
        key, _, value = line.partition("=")
        environ["REGISTRY_" + key.removeprefix("REGISTRY_")] = value
    checks.check_config(document, environ)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
