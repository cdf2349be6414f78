#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian 12 machine (as root), then run the
# whole suite: ruff, mypy, unit tests and end-to-end tests with real clients inside a
# private network namespace (only loopback exists there, so nothing leaves the machine).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${DOCKYARD_SKIP_INSTALL:-}" != "1" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-pip ca-certificates iproute2 util-linux \
    docker-registry docker.io skopeo podman buildah containerd umoci jq apache2-utils wrk zstd \
    mmdebstrap \
    >/dev/null
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  scripts/image-inputs.sh  # the image test's base and wheelhouse (the tests have no network)
fi

.venv/bin/ruff check src tests fuzz
.venv/bin/ruff format --check src tests fuzz
.venv/bin/mypy
exec unshare --net -- sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
