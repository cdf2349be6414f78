"""Atheris harness: manifests and indexes (dockyard.oci.manifest.parse_manifest).

Run: .venv/bin/python fuzz/fuzz_manifest.py [-max_total_time=SECONDS] [-runs=N] [CORPUS_DIR ...]
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

CONTENT_TYPES = [
    None,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/octet-stream",
    "application/json",
    "",
]


def test_one_input(data: bytes) -> None:
    # First byte: the Content-Type; the rest: the manifest.
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)] if data else None
    checks.check_manifest(data[1:], content_type)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
