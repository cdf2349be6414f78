#!/usr/bin/env bash
# Install Dockyard on a fresh Debian 12 machine (as root) and start it on the embedded
# default: port 5000, blobs and SQLite metadata under ./data. Extra arguments go to
# `dockyard serve`, e.g. `scripts/install-and-serve.sh --config /etc/dockyard/config.yml`.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip ca-certificates >/dev/null
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
exec .venv/bin/dockyard serve "$@"
