"""Atheris harness: image references as users write them (dockyard.oci.reference).

Run: .venv/bin/python fuzz/fuzz_reference.py [-max_total_time=SECONDS] [-runs=N] [CORPUS_DIR ...]
(fuzz/run_all.sh runs every harness with its seeds). A crash is an input that breaks an
invariant of fuzz/checks.py; libFuzzer saves it as crash-<sha1> and stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["dockyard", "fuzz"]):
    from fuzz import checks


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def test_one_input(data: bytes) -> None:
    checks.check_reference(_text(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
