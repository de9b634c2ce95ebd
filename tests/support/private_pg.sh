#!/usr/bin/env bash
# Private, throwaway PostgreSQL instance for tests.
#
#   private_pg.sh init    DIR PORT   initdb DIR/data, start, wait, create db `test`, print `ready`
#   private_pg.sh stop    DIR        pg_ctl stop -m fast, wait until stopped
#   private_pg.sh start   DIR        start the existing cluster again, wait, print `ready`
#   private_pg.sh destroy DIR        stop (immediate) if running, remove DIR/data and DIR/run
#
# Layout: DIR/data (cluster), DIR/run (unix socket dir), DIR/pg.log (server log),
#         DIR/port (port number, so start/stop need only DIR).
# Listens on 127.0.0.1:PORT only, trust auth, superuser `postgres`; never touches
# the machine's shared cluster. When run as root, server programs run as the
# `postgres` system user (PostgreSQL refuses to run as root).
#
# Connect with: psql -h 127.0.0.1 -p PORT -U postgres -d test
set -euo pipefail

WAIT_SECS=30

die() {
    echo "private_pg: $*" >&2
    if [[ -n "${LOG:-}" && -f "$LOG" ]]; then
        echo "---- last lines of $LOG ----" >&2
        tail -n 40 "$LOG" >&2 || true
    fi
    exit 1
}

usage() {
    echo "usage: $0 init DIR PORT | stop DIR | start DIR | destroy DIR" >&2
    exit 2
}

find_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/pg_ctl" ]]; then
        echo "$d"
        return
    fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        [[ -x "$d/pg_ctl" ]] && { echo "$d"; return; }
    fi
    die "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin)"
}

# Run a server-side program as the cluster owner.
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

is_running() {
    [[ -f "$DATA/postmaster.pid" ]] || return 1
    # A killed postmaster can linger as a zombie until init reaps it; pg_ctl
    # status would still call that "running".
    local pid state
    pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/stat" ]]; then
        state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)
        [[ "$state" == Z ]] && return 1
    fi
    as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

# Does anything answer on 127.0.0.1:PORT?
port_answers() {
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -t 1 >/dev/null 2>&1
}

start_server() {
    local started=0 attempts=0 deadline=$((SECONDS + WAIT_SECS))
    while :; do
        if is_running; then
            port_answers && return 0
        elif ((started)); then
            die "server exited during startup"
        else
            # Not running (a stale postmaster.pid after a crash is fine).
            if port_answers; then
                die "something else already answers on 127.0.0.1:$PORT"
            fi
            if as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t "$WAIT_SECS" -s >>"$LOG" 2>&1; then
                started=1
                continue
            fi
            # Right after a crash/kill, orphaned backends may still hold the
            # old shared memory for a moment; retry a few times.
            ((++attempts < 5 && SECONDS < deadline)) || die "pg_ctl start failed"
            sleep 0.5
            continue
        fi
        # Running but not accepting yet (still starting, or a just-killed
        # postmaster whose pid has not been reaped yet): keep polling.
        ((SECONDS >= deadline)) && die "server not ready on 127.0.0.1:$PORT after ${WAIT_SECS}s"
        sleep 0.1
    done
}

stop_server() { # $1 = mode (fast|immediate)
    if ! is_running; then
        return 0
    fi
    as_owner "$BIN/pg_ctl" stop -D "$DATA" -m "$1" -w -t "$WAIT_SECS" -s >>"$LOG" 2>&1 ||
        die "pg_ctl stop -m $1 failed"
    # Belt and braces: make sure nothing answers on the port any more.
    if [[ -n "${PORT:-}" ]]; then
        local deadline=$((SECONDS + WAIT_SECS))
        while port_answers; do
            ((SECONDS >= deadline)) && die "port $PORT still answering after stop"
            sleep 0.1
        done
    fi
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
[[ -n "$DIR" ]] || usage
mkdir -p "$DIR" 2>/dev/null || true
DIR=$(cd "$DIR" 2>/dev/null && pwd) || die "cannot access $DIR"
DATA="$DIR/data"
RUN="$DIR/run"
LOG="$DIR/pg.log"
BIN=$(find_bin)
unset PGDATA PGHOST PGHOSTADDR PGPORT PGSERVICE PGOPTIONS 2>/dev/null || true

load_port() {
    [[ -f "$DIR/port" ]] || die "no cluster set up in $DIR (missing $DIR/port; run init first)"
    PORT=$(<"$DIR/port")
    [[ "$PORT" =~ ^[0-9]+$ ]] || die "bad port in $DIR/port"
}

case "$CMD" in
init)
    [[ $# -eq 3 ]] || usage
    PORT=$3
    [[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "bad port: $PORT"
    if [[ -e "$DATA" && -n "$(ls -A "$DATA" 2>/dev/null)" ]]; then
        LOG="" die "$DATA already exists and is not empty (destroy it first)"
    fi

    mkdir -p "$DATA" "$RUN"
    : >"$LOG"
    chmod 700 "$DATA"
    chmod 755 "$RUN"
    if [[ $EUID -eq 0 ]]; then
        getent passwd postgres >/dev/null || die "running as root but no 'postgres' user exists"
        chown postgres: "$DATA" "$RUN" "$LOG"
        # DIR may be a root-owned 0700 tempdir: let postgres traverse it.
        chmod o+x "$DIR"
        runuser -u postgres -- test -w "$DATA" -a -w "$RUN" -a -w "$LOG" ||
            die "user postgres cannot reach $DIR (a parent directory is not traversable?)"
    fi
    port_answers && LOG="" die "something else already answers on 127.0.0.1:$PORT"
    echo "$PORT" >"$DIR/port"

    if ! as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 \
        --no-locale --no-sync >>"$LOG" 2>&1; then
        die "initdb failed"
    fi

    # Unix socket paths are limited to ~107 bytes; fall back to TCP only.
    sockdir="$RUN"
    if (( ${#RUN} + 20 > 107 )); then
        echo "private_pg: $RUN too long for a unix socket; TCP only" >&2
        sockdir=""
    fi
    cat >>"$DATA/postgresql.conf" <<EOF

# ---- private_pg.sh test settings ----
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sockdir'
max_connections = 50
shared_buffers = 16MB
huge_pages = off
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_destination = 'stderr'
EOF

    start_server
    if ! "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres \
        --maintenance-db=postgres test >>"$LOG" 2>&1; then
        die "createdb test failed"
    fi
    echo ready
    ;;
start)
    [[ $# -eq 2 ]] || usage
    [[ -f "$DATA/PG_VERSION" ]] || die "no cluster in $DATA"
    load_port
    start_server
    echo ready
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    [[ -f "$DATA/PG_VERSION" ]] || die "no cluster in $DATA"
    load_port
    stop_server fast
    ;;
destroy)
    [[ $# -eq 2 ]] || usage
    PORT=""
    [[ -f "$DIR/port" ]] && PORT=$(<"$DIR/port")
    if [[ -f "$DATA/PG_VERSION" ]]; then
        stop_server immediate || true
    fi
    rm -rf "$DATA" "$RUN" "$DIR/port"
    ;;
*)
    usage
    ;;
esac
