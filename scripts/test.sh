#!/usr/bin/env bash
# Runs every test of the workspace (unit, end-to-end with real processes). Used by .ci/run and
# the README. First checks every prerequisite of the HA tests (java, ZooKeeper's jar, setsid) and
# installs what is missing (Debian packages): idempotent and cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/zookeeper.sh install
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
