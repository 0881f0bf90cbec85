#!/usr/bin/env bash
# scripts/zookeeper.sh — install, start, stop and probe a single local ZooKeeper server for Eddy's
# HA tests and local clusters. It binds to 127.0.0.1 only, keeps everything (config, data, pid, log)
# under the given directory, and never touches the system service, /var/lib/zookeeper or any
# process it did not start itself (stop kills only the pid in DIR/zookeeper.pid).
#
#   scripts/zookeeper.sh install                      apt-get installs Debian's zookeeper if missing
#   scripts/zookeeper.sh start  --port P --dir D      starts it in the background, waits for "imok"
#   scripts/zookeeper.sh stop   --dir D               kills the pid from D/zookeeper.pid and waits
#   scripts/zookeeper.sh status --dir D               prints running/stopped; exit 0 iff running
#
# Starting again with the same D keeps the data in D/data (a "ZooKeeper restarted" scenario).
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
       scripts/zookeeper.sh start  --port PORT --dir DIR
       scripts/zookeeper.sh stop   --dir DIR
       scripts/zookeeper.sh status --dir DIR
EOF
    exit 2
}

PORT=""
DIR=""

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

ruok() {
    local port="$1"
    # -q1: close one second after EOF on stdin; -w1: connect timeout.
    echo ruok | nc -q1 -w1 127.0.0.1 "$port" 2>/dev/null || true
}

cmd_install() {
    if [ -f "$ZK_JAR" ] && command -v nc >/dev/null 2>&1; then
        echo "zookeeper already installed ($ZK_JAR)"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ZooKeeper 3.8 so that $ZK_JAR exists"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq zookeeper netcat-openbsd >/dev/null || die "apt-get install zookeeper netcat-openbsd failed"
    [ -f "$ZK_JAR" ] || die "installed the zookeeper package but $ZK_JAR is still missing"
    echo "zookeeper installed ($ZK_JAR)"
}

cmd_start() {
    [ -n "$PORT" ] || die "missing --port PORT"
    case "$PORT" in '' | *[!0-9]*) die "invalid port '$PORT': expected a number" ;; esac
    need_dir create
    [ -f "$ZK_JAR" ] || die "$ZK_JAR not found; run 'scripts/zookeeper.sh install' first"
    command -v java >/dev/null 2>&1 || die "java not found on PATH"
    command -v nc >/dev/null 2>&1 || die "nc not found; run 'scripts/zookeeper.sh install' first"

    local pid
    pid="$(live_pid)"
    if [ -n "$pid" ]; then
        die "already running in '$DIR' with pid $pid"
    fi

    mkdir -p "$DIR/data" "$DIR/logs"
    cat >"$DIR/zoo.cfg" <<EOF
tickTime=1000
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
    start) parse_args "$@"; cmd_start ;;
    stop) parse_args "$@"; cmd_stop ;;
    status) parse_args "$@"; cmd_status ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$CMD' (expected install, start, stop or status)" ;;
esac
