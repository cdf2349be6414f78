#!/usr/bin/env bash
# Prepare what the end-to-end test of the Containerfile needs, which it cannot fetch itself
# (the tests run without a network): a stand-in for the python:3.11-slim base image, made
# from Debian 12's own Python with mmdebstrap, and a wheelhouse with Dockyard's dependencies
# and build backend. Run as root with the package registries reachable; scripts/test.sh
# calls it. Writes .cache/containerfile/{base.tar,wheels/}; does nothing if they exist
# (the wheelhouse is made again when pyproject.toml, and so the dependencies, changed).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=.cache/containerfile
mkdir -p "$OUT"

if [ ! -s "$OUT/base.tar" ]; then
  # The machine's own apt sources (a mirror or snapshot CI may be pinned to), else Debian's.
  sources=http://deb.debian.org/debian
  for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$candidate" ]; then sources="$candidate"; break; fi
  done
  # python:3.11-slim is Debian 12 with Python 3.11 and pip, which installs into the system
  # Python; Debian marks that Python as externally managed, the image does not.
  mmdebstrap --quiet --variant=apt --include=python3,python3-pip,passwd \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    bookworm "$OUT/base.part.tar" "$sources"
  mv "$OUT/base.part.tar" "$OUT/base.tar"
fi

deps=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$OUT/wheels/.complete" 2>/dev/null)" != "$deps" ]; then
  rm -rf "$OUT/wheels"
  PY=.venv/bin/python
  "$PY" -m pip wheel -q --wheel-dir "$OUT/wheels" .
  rm -f "$OUT"/wheels/dockyard-*.whl  # the image builds Dockyard itself, from the sources
  "$PY" -m pip download -q --only-binary=:all: --dest "$OUT/wheels" "setuptools>=77" wheel
  echo "$deps" > "$OUT/wheels/.complete"
fi
