#!/usr/bin/env bash
# scripts/pyenv.sh — the Python virtualenv with the outside tools some tests drive (moto's S3
# server, Apache Flink's `flink` CLI), pinned in scripts/python-requirements.txt.
#
#   scripts/pyenv.sh install   creates/updates the venv (idempotent: cheap when it is up to date)
#   scripts/pyenv.sh path      prints the venv directory
#
# The venv lives outside the clone, at $EDDY_VENV (default /var/tmp/eddy-venv), so repeated CI runs
# on one machine reuse it. Tests find it through the same variable and default.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDDY_VENV:-/var/tmp/eddy-venv}"
REQ=scripts/python-requirements.txt
die() { echo "pyenv.sh: $*" >&2; exit 1; }

cmd_install() {
    command -v python3 >/dev/null 2>&1 || die "python3 not found; install Debian's python3 and python3-venv"
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum "$REQ" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "python tools present in $VENV"
        return
    fi
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "python3-venv missing and apt-get not found"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
            || die "apt-get install python3-venv failed"
    fi
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" || die "could not create the venv at $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" || die "pip install -r $REQ failed"
    echo "$want" > "$stamp"
    echo "python tools installed in $VENV"
}

case "${1:-}" in
    install) cmd_install ;;
    path) echo "$VENV" ;;
    *) die "unknown command '${1:-}' (expected install or path)" ;;
esac
