#!/usr/bin/env bash
# Runs every test of the workspace (unit, end-to-end with real processes). Used by .ci/run and
# the README. Installs ZooKeeper (Debian package) first if the HA tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/zookeeper.sh ] && [ ! -f /usr/share/java/zookeeper.jar ]; then
  scripts/zookeeper.sh install
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The short chaos campaign (docs/chaos.md): 30 faults, 3-4 minutes, on the debug binary the
# tests just built. Skipped when a test filter was given.
if [ $# -eq 0 ]; then
  EDDY_BIN="${CARGO_TARGET_DIR:-target}/debug/eddy" scripts/chaos.sh --faults 30 --seed 1 --gap-ms 200:500
fi
