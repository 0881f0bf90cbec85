#!/usr/bin/env bash
# scripts/chaos.sh — Eddy's chaos campaign: a real HA cluster (its own ZooKeeper, 3 JobManagers
# under supervisors, TaskManagers in standalone and active mode, run after run) under seeded
# faults, judged by oracles (exactly-once witness, golden output of a windowed job, committed
# files never retracted, no split brain, RUNNING again after every fault, no process left).
#
#   scripts/chaos.sh [--minutes N | --faults N] [--seed S] [--out DIR]
#   scripts/chaos.sh --run-seed S --mode standalone|active [--faults-per-run K]   one run again
#   scripts/chaos.sh --help                                                       every option
#
# The binary: $EDDY_BIN, default $CARGO_TARGET_DIR/release/eddy (or target/release/eddy); build
# it first with `cargo build --release -p eddy`. Needs python3 (standard library only), java and
# ZooKeeper (scripts/zookeeper.sh install), `ss`; mount (root) for the checkpoint-directory faults.
# Exit 0 only if every oracle held; the last line of stdout is
#   chaos: faults=N runs=R lost=L duplicated=D retracted=X split_brain=B failed_runs=F
# Fault model and oracles: docs/chaos.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/java/zookeeper.jar ]; then
  scripts/zookeeper.sh install >&2
fi
exec python3 scripts/chaos/chaos.py "$@"
