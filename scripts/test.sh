#!/usr/bin/env bash
# Runs every test of the workspace (unit, end-to-end with real processes). Used by .ci/run and
# the README. First checks every prerequisite of the HA tests (java, ZooKeeper's jar, setsid) and
# installs what is missing (Debian packages): idempotent and cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/zookeeper.sh install
# Outside Python tools some tests drive (moto's S3 server, Flink's CLI): a venv outside the clone.
bash scripts/pyenv.sh install
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The 10^7-key RocksDB test (issue 12): checkpoint, SIGKILL and native restore of 10^7 keys under a
# TaskManager memory limit. #[ignore]d because it takes well over 10 minutes on 2 cores (RocksDB's
# own work); a separate step, on when EDDY_TEN_MILLION_KEYS=1.
if [ "${EDDY_TEN_MILLION_KEYS:-0}" = 1 ]; then
  cargo nextest run -p eddy --test cluster --run-ignored only rocksdb_ten_million
fi
# The short chaos campaign (docs/chaos.md): 30 faults, 3-4 minutes, on the debug binary the
# tests just built. Skipped when a test filter was given.
if [ $# -eq 0 ]; then
  EDDY_BIN="${CARGO_TARGET_DIR:-target}/debug/eddy" scripts/chaos.sh --faults 30 --seed 1 --gap-ms 200:500
fi
