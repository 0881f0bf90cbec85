#!/usr/bin/env bash
# Runs every test of the workspace (unit, end-to-end with real processes). Used by .ci/run and
# the README. Installs ZooKeeper (Debian package) first if the HA tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/zookeeper.sh ] && [ ! -f /usr/share/java/zookeeper.jar ]; then
  scripts/zookeeper.sh install
fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
