#!/usr/bin/env bash
# scripts/zookeeper.sh — install, start, stop and probe a single local ZooKeeper server for Eddy's
# HA tests and local clusters. It binds to 127.0.0.1 only, keeps everything (config, data, pid, log)
# under the given directory, and never touches the system service, /var/lib/zookeeper or any
# process it did not start itself (stop kills only the pid in DIR/zookeeper.pid).
#
#   scripts/zookeeper.sh install                      checks every prerequisite; apt-get installs what is missing
#   scripts/zookeeper.sh check                        the same check only: lists what is missing, exit 1 if any
#   scripts/zookeeper.sh start  --port P --dir D [--tick-ms MS]
#                                                     starts it in the background, waits for "imok";
#                                                     --tick-ms: ZooKeeper's tickTime (default 1000):
#                                                     it expires sessions in tick buckets, so a lost
#                                                     session is noticed up to one tick late
#   scripts/zookeeper.sh stop   --dir D               kills the pid from D/zookeeper.pid and waits
#   scripts/zookeeper.sh status --dir D               prints running/stopped; exit 0 iff running
#
# Starting again with the same D keeps the data in D/data (a "ZooKeeper restarted" scenario).
# Prerequisites: bash (its /dev/tcp probes the server; no nc needed), java, Debian's ZooKeeper jar,
# setsid, chromium for the dashboard test, and librocksdb-dev + libclang-dev for the RocksDB state
# backend (a build prerequisite). `install` is idempotent and cheap when everything is
# there, so scripts/test.sh and .ci/run always run it.
set -euo pipefail

ZK_JAR=/usr/share/java/zookeeper.jar
READY_TIMEOUT_S=30

die() {
    echo "zookeeper.sh: $*" >&2
    exit 1
}

usage() {
    cat >&2 <<'EOF'
usage: scripts/zookeeper.sh install
       scripts/zookeeper.sh check
       scripts/zookeeper.sh start  --port PORT --dir DIR [--tick-ms MS]
       scripts/zookeeper.sh stop   --dir DIR
       scripts/zookeeper.sh status --dir DIR
EOF
    exit 2
}

PORT=""
DIR=""
TICK_MS=1000

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --port)
                [ $# -ge 2 ] || die "--port needs a value"
                PORT="$2"
                shift 2
                ;;
            --dir)
                [ $# -ge 2 ] || die "--dir needs a value"
                DIR="$2"
                shift 2
                ;;
            --tick-ms)
                [ $# -ge 2 ] || die "--tick-ms needs a value"
                case "$2" in
                    '' | *[!0-9]*) die "invalid --tick-ms '$2': expected milliseconds from 10 to 1000" ;;
                esac
                [ "$2" -ge 10 ] && [ "$2" -le 1000 ] || die "invalid --tick-ms '$2': expected milliseconds from 10 to 1000"
                TICK_MS="$2"
                shift 2
                ;;
            *) die "unknown argument '$1'" ;;
        esac
    done
}

# need_dir [create]: checks --dir and makes it absolute (creating it only for start).
need_dir() {
    [ -n "$DIR" ] || die "missing --dir DIR"
    if [ "${1:-}" = create ]; then
        mkdir -p "$DIR" || die "cannot create directory '$DIR'"
    fi
    if [ -d "$DIR" ]; then
        DIR="$(cd "$DIR" && pwd)"
    fi
}

# Prints the pid recorded in DIR if that process is alive, else nothing.
live_pid() {
    local pidfile="$DIR/zookeeper.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    if kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# Sends ZooKeeper's "ruok" four-letter word over bash's /dev/tcp and prints the answer ("imok"),
# or nothing. Runs in a subshell bounded to ~2 s, so a server that accepts but never answers
# cannot hang the caller.
ruok() {
    local port="$1"
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
        printf 'ruok' >&3
        reply=""
        IFS= read -r -t 2 -n 4 reply <&3 || true
        printf '%s' "$reply"
    ) 2>/dev/null || true
}

# Prints "<what>:<debian package>" for every missing prerequisite, one a line.
missing_prerequisites() {
    [ -f "$ZK_JAR" ] || echo "$ZK_JAR:zookeeper"
    command -v java >/dev/null 2>&1 || echo "java:default-jre-headless"
    command -v setsid >/dev/null 2>&1 || echo "setsid:util-linux"
    # Not ZooKeeper's, but installed with the rest: the dashboard's end-to-end test
    # (crates/eddy/tests/dashboard.rs) drives a headless Chromium.
    command -v chromium >/dev/null 2>&1 || echo "chromium:chromium"
    # Not ZooKeeper's either: the RocksDB state backend links Debian's librocksdb (the `rocksdb`
    # crate's bindgen needs libclang even then; .cargo/config.toml sets ROCKSDB_LIB_DIR).
    [ -f /usr/include/rocksdb/c.h ] || echo "librocksdb:librocksdb-dev"
    ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || echo "libclang:libclang-dev"
    return 0
}

cmd_check() {
    local missing
    missing="$(missing_prerequisites)"
    if [ -z "$missing" ]; then
        echo "zookeeper prerequisites present (java, setsid, chromium, librocksdb, libclang, $ZK_JAR)"
        return 0
    fi
    echo "zookeeper.sh: missing: $(echo "$missing" | cut -d: -f1 | tr '\n' ' ')(run 'scripts/zookeeper.sh install')" >&2
    exit 1
}

cmd_install() {
    local missing packages
    missing="$(missing_prerequisites)"
    if [ -z "$missing" ]; then
        echo "zookeeper prerequisites present (java, setsid, chromium, librocksdb, libclang, $ZK_JAR)"
        return 0
    fi
    packages="$(echo "$missing" | cut -d: -f2 | sort -u | tr '\n' ' ')"
    echo "zookeeper.sh: missing $(echo "$missing" | cut -d: -f1 | tr '\n' ' ')- installing: $packages"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $packages by hand (ZooKeeper 3.8 so that $ZK_JAR exists)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq $packages >/dev/null || die "apt-get install $packages failed"
    missing="$(missing_prerequisites)"
    [ -z "$missing" ] || die "still missing after apt-get install: $(echo "$missing" | cut -d: -f1 | tr '\n' ' ')"
    echo "zookeeper prerequisites installed ($packages)"
}

cmd_start() {
    [ -n "$PORT" ] || die "missing --port PORT"
    case "$PORT" in '' | *[!0-9]*) die "invalid port '$PORT': expected a number" ;; esac
    need_dir create
    local missing
    missing="$(missing_prerequisites)"
    [ -z "$missing" ] || die "missing: $(echo "$missing" | cut -d: -f1 | tr '\n' ' ')(run 'scripts/zookeeper.sh install' first)"

    local pid
    pid="$(live_pid)"
    if [ -n "$pid" ]; then
        die "already running in '$DIR' with pid $pid"
    fi

    mkdir -p "$DIR/data" "$DIR/logs"
    cat >"$DIR/zoo.cfg" <<EOF
tickTime=$TICK_MS
initLimit=10
syncLimit=5
dataDir=$DIR/data
clientPort=$PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr
minSessionTimeout=1000
maxSessionTimeout=60000
EOF

    # Call java directly: zkServer.sh/zkEnv.sh hard-code /var/log/zookeeper.
    # setsid: the server must not die with the caller's terminal or process group.
    setsid java -Dzookeeper.log.dir="$DIR/logs" -Dzookeeper.root.logger=INFO,CONSOLE \
        -cp "$DIR:$ZK_JAR" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$DIR/zoo.cfg" \
        >>"$DIR/zookeeper.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$DIR/zookeeper.pid"

    local deadline=$((SECONDS + READY_TIMEOUT_S))
    while [ $SECONDS -lt $deadline ]; do
        if [ "$(ruok "$PORT")" = "imok" ]; then
            echo "zookeeper started on 127.0.0.1:$PORT (pid $pid, dir $DIR)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "zookeeper.sh: zookeeper (pid $pid) exited during start-up; last log lines of $DIR/zookeeper.log:" >&2
            tail -n 20 "$DIR/zookeeper.log" >&2 || true
            rm -f "$DIR/zookeeper.pid"
            exit 1
        fi
        sleep 0.1
    done
    echo "zookeeper.sh: zookeeper on 127.0.0.1:$PORT did not answer 'ruok' within ${READY_TIMEOUT_S} s; last log lines of $DIR/zookeeper.log:" >&2
    tail -n 20 "$DIR/zookeeper.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    rm -f "$DIR/zookeeper.pid"
    exit 1
}

cmd_stop() {
    need_dir
    local pid
    pid="$(live_pid)"
    if [ -z "$pid" ]; then
        rm -f "$DIR/zookeeper.pid"
        echo "zookeeper not running in '$DIR'"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -0 "$pid" 2>/dev/null && die "zookeeper (pid $pid) did not exit"
    rm -f "$DIR/zookeeper.pid"
    echo "zookeeper stopped (pid $pid)"
}

cmd_status() {
    need_dir
    local pid port=""
    pid="$(live_pid)"
    if [ -z "$pid" ]; then
        echo "stopped"
        exit 1
    fi
    if [ -f "$DIR/zoo.cfg" ]; then
        port="$(sed -n 's/^clientPort=//p' "$DIR/zoo.cfg")"
    fi
    if [ -n "$port" ] && [ "$(ruok "$port")" = "imok" ]; then
        echo "running (pid $pid, 127.0.0.1:$port, imok)"
    else
        echo "running (pid $pid, 127.0.0.1:${port:-?}, not answering ruok)"
    fi
}

[ $# -ge 1 ] || usage
CMD="$1"
shift
case "$CMD" in
    install) [ $# -eq 0 ] || die "install takes no arguments"; cmd_install ;;
    check) [ $# -eq 0 ] || die "check takes no arguments"; cmd_check ;;
    start) parse_args "$@"; cmd_start ;;
    stop) parse_args "$@"; cmd_stop ;;
    status) parse_args "$@"; cmd_status ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$CMD' (expected install, check, start, stop or status)" ;;
esac
