# shellcheck shell=bash
# scripts/cluster.sh — throwaway PostgreSQL clusters for bidguard's tests and demo.
#
# Source it from bash (scripts/run-tests.sh and scripts/demo.sh do):
#
#     . "$(dirname "$0")/cluster.sh"
#     cluster_start                       # initdb + start; exports PG* for psql & co.
#     cluster_psql -c 'CREATE EXTENSION bidguard'
#     pgbench -n -c 32 -T 5 -f work.sql   # any libpq client just works
#     # ... cleanup runs by itself on EXIT, INT, TERM and HUP
#
# One cluster per shell.  It lives in a fresh mktemp directory, CLUSTER_DIR, that
# holds everything and is removed afterwards:
#     $CLUSTER_DIR/data          the data directory       ($CLUSTER_DATA)
#     $CLUSTER_DIR/sock          the unix-socket dir      ($CLUSTER_SOCKDIR, = PGHOST)
#     $CLUSTER_DIR/postgres.log  the server log           ($CLUSTER_LOG)
#     $CLUSTER_DIR/tmp           scratch for callers      (see cluster_mkdir)
# The server runs as CLUSTER_OWNER: the `postgres` OS user when we are root (initdb
# and postgres refuse root), else the current user.  The directory belongs to it.
# It listens on its unix socket only (CLUSTER_TCP=1: also on 127.0.0.1), on a free
# port chosen at random in CLUSTER_PORT_MIN..CLUSTER_PORT_MAX (57000..59999), with
# trust authentication (the socket dir is mode 0700, so only the owner and root
# reach it), superuser `postgres`, UTF8, C locale, lc_messages C, timezone UTC,
# fsync off, max_connections 150, shared_preload_libraries 'bidguard'.
#
# Functions
#   cluster_start [CONF_LINE...]   create and start the cluster; each CONF_LINE (e.g.
#                                  "bidguard.foo = on") is appended to postgresql.conf
#                                  after the defaults, so it overrides them.  Exports
#                                  PGHOST PGPORT PGUSER=postgres PGDATABASE=postgres
#                                  and CLUSTER_* (above), and installs the traps.
#                                  Returns non-zero (after printing the server log)
#                                  when it cannot start.
#   cluster_stop [MODE]            stop the server (MODE fast by default; falls back to
#                                  immediate); keeps the directory.
#   cluster_start_again            start a stopped (or crashed) cluster again.
#   cluster_restart [MODE]         stop (MODE, e.g. immediate = crash) and start again.
#   cluster_cleanup                run the cluster_at_exit commands, stop the server
#                                  and any other postmaster under CLUSTER_DIR (e.g. a
#                                  TAP test's), then remove CLUSTER_DIR.  Idempotent;
#                                  the traps call it.  With KEEP_CLUSTER=1 it leaves
#                                  the server running and the directory in place and
#                                  prints how to connect and how to remove them.
#   cluster_at_exit CMD            register a shell command to run at cleanup, before
#                                  the server stops (last registered runs first).  Use
#                                  it instead of your own EXIT trap; an EXIT trap set
#                                  before cluster_start is kept and runs after cleanup.
#   cluster_psql [PSQL_ARG...]     psql -X -q -v ON_ERROR_STOP=1 on the cluster.
#   cluster_as_owner CMD...        run CMD as CLUSTER_OWNER with cwd CLUSTER_DIR.
#   cluster_run_in DIR CMD...      run CMD as CLUSTER_OWNER with cwd DIR.
#   cluster_mkdir NAME             create $CLUSTER_DIR/NAME owned by CLUSTER_OWNER and
#                                  print its path (for scratch files the owner writes).
#   cluster_chown PATH...          give PATHs to CLUSTER_OWNER (no-op when not root).
#   cluster_log_tail [N]           print the last N (default 50) lines of the server log.
#
# Settings read from the environment (all optional)
#   PG_CONFIG              pg_config of the server to use (default: pg_config in PATH)
#   CLUSTER_PRELOAD        shared_preload_libraries (default 'bidguard'; '' for none)
#   CLUSTER_TCP            1 = also listen on 127.0.0.1 (default: unix socket only)
#   CLUSTER_PORT_MIN/MAX   port range (default 57000..59999)
#   CLUSTER_TMPBASE        where to mktemp (default /tmp when switching user, else
#                          ${TMPDIR:-/tmp}); keep it short: socket paths are limited
#   CLUSTER_OWNER          OS user to run the server as (default: see above)
#   CLUSTER_QUIET          1 = print nothing but errors
#   KEEP_CLUSTER           1 = keep the cluster and its directory (debugging)

# Refuse to be run rather than sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "cluster.sh is a library: source it from a bash script" >&2
    exit 2
fi

: "${PG_CONFIG:=pg_config}"
: "${CLUSTER_PORT_MIN:=57000}"
: "${CLUSTER_PORT_MAX:=59999}"

CLUSTER_BINDIR="$("$PG_CONFIG" --bindir)"
export CLUSTER_BINDIR

if [ -z "${CLUSTER_OWNER:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        CLUSTER_OWNER=postgres
    else
        CLUSTER_OWNER="$(id -un)"
    fi
fi
export CLUSTER_OWNER

_cluster_say() {
    [ "${CLUSTER_QUIET:-0}" = 1 ] || echo "cluster: $*"
}

_cluster_switching_user() {
    [ "$CLUSTER_OWNER" != "$(id -un)" ]
}

cluster_run_in() {
    local dir="$1"
    shift
    if _cluster_switching_user; then
        (cd "$dir" && runuser -u "$CLUSTER_OWNER" -- env PATH="$CLUSTER_BINDIR:$PATH" "$@")
    else
        (cd "$dir" && PATH="$CLUSTER_BINDIR:$PATH" "$@")
    fi
}

cluster_as_owner() {
    cluster_run_in "$CLUSTER_DIR" "$@"
}

cluster_chown() {
    if _cluster_switching_user; then
        chown -R "$CLUSTER_OWNER:" "$@"
    fi
}

cluster_mkdir() {
    local d="$CLUSTER_DIR/$1"
    mkdir -p "$d"
    cluster_chown "$d"
    printf '%s\n' "$d"
}

cluster_psql() {
    "$CLUSTER_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

cluster_log_tail() {
    if [ -f "${CLUSTER_LOG:-}" ]; then
        echo "----- last ${1:-50} lines of $CLUSTER_LOG -----"
        tail -n "${1:-50}" "$CLUSTER_LOG"
        echo "-----"
    fi
}

cluster_at_exit() {
    _CLUSTER_AT_EXIT+=("$1")
}

# Is TCP port $1 free on 127.0.0.1?  (perl is always there: the TAP tests need it)
_cluster_port_free() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
                                      Proto => "tcp", Listen => 1, ReuseAddr => 0);
        exit($s ? 0 : 1);' "$1" 2>/dev/null
}

_cluster_pick_port() {
    local span=$((CLUSTER_PORT_MAX - CLUSTER_PORT_MIN + 1))
    local port=$((CLUSTER_PORT_MIN + (RANDOM * 32768 + RANDOM) % span))
    local i
    for ((i = 0; i < 300; i++)); do
        if _cluster_port_free "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
        port=$((port + 1))
        [ "$port" -le "$CLUSTER_PORT_MAX" ] || port="$CLUSTER_PORT_MIN"
    done
    echo "cluster: no free port in $CLUSTER_PORT_MIN..$CLUSTER_PORT_MAX" >&2
    return 1
}

# shellcheck disable=SC2120  # "set -- $prev" sets the positional parameters
_cluster_install_traps() {
    [ -z "${_CLUSTER_TRAPS:-}" ] || return 0
    _CLUSTER_TRAPS=1
    # Keep an EXIT trap the caller set earlier: it runs after our cleanup.
    local prev
    prev="$(trap -p EXIT)"
    _CLUSTER_PREV_EXIT=""
    if [ -n "$prev" ]; then
        eval "set -- $prev"
        _CLUSTER_PREV_EXIT="$3"
    fi
    trap '_cluster_on_exit' EXIT
    trap '_cluster_on_signal INT' INT
    trap '_cluster_on_signal TERM' TERM
    trap '_cluster_on_signal HUP' HUP
}

_cluster_on_exit() {
    local rc=$?
    cluster_cleanup
    if [ -n "${_CLUSTER_PREV_EXIT:-}" ]; then
        # The caller's handler sees the exit status in $?, as it would have.
        if [ "$rc" -eq 0 ]; then
            eval "$_CLUSTER_PREV_EXIT"
        else
            _cluster_return "$rc" || eval "$_CLUSTER_PREV_EXIT"
        fi
    fi
    return "$rc"
}

_cluster_return() { return "$1"; }

_cluster_on_signal() {
    echo "cluster: caught SIG$1, cleaning up" >&2
    # shellcheck disable=SC2034  # read by the caller's EXIT handler
    CLUSTER_CAUGHT_SIGNAL="$1"
    cluster_cleanup
    trap - "$1"
    kill -s "$1" "$$"
    # If the signal is ignored, still leave with the conventional status.
    case "$1" in INT) exit 130 ;; TERM) exit 143 ;; *) exit 129 ;; esac
}

cluster_start() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -d "${CLUSTER_DIR:-}" ]; then
        echo "cluster: a cluster is already set up in $CLUSTER_DIR" >&2
        return 1
    fi
    if _cluster_switching_user; then
        if ! id -u "$CLUSTER_OWNER" >/dev/null 2>&1; then
            echo "cluster: OS user '$CLUSTER_OWNER' does not exist (it comes with the postgresql-common package)" >&2
            return 1
        fi
        if [ "$(id -u)" -ne 0 ]; then
            echo "cluster: only root can run the cluster as '$CLUSTER_OWNER'; unset CLUSTER_OWNER" >&2
            return 1
        fi
    fi
    local base="${CLUSTER_TMPBASE:-}"
    if [ -z "$base" ]; then
        if _cluster_switching_user; then base=/tmp; else base="${TMPDIR:-/tmp}"; fi
    fi

    _CLUSTER_AT_EXIT=()
    _CLUSTER_CLEANED=""
    _CLUSTER_MAIN_PID="$BASHPID"
    CLUSTER_DIR="$(mktemp -d "$base/bidguard.XXXXXX")" || return 1
    _cluster_install_traps
    export CLUSTER_DIR
    export CLUSTER_DATA="$CLUSTER_DIR/data"
    export CLUSTER_SOCKDIR="$CLUSTER_DIR/sock"
    export CLUSTER_LOG="$CLUSTER_DIR/postgres.log"
    mkdir -p "$CLUSTER_SOCKDIR" "$CLUSTER_DIR/tmp"
    chmod 0700 "$CLUSTER_DIR" "$CLUSTER_SOCKDIR"
    cluster_chown "$CLUSTER_DIR"

    local out
    if ! out="$(cluster_as_owner initdb -D "$CLUSTER_DATA" -U postgres -A trust \
                    -E UTF8 --no-locale --no-sync 2>&1)"; then
        echo "cluster: initdb failed:" >&2
        printf '%s\n' "$out" >&2
        return 1
    fi

    local listen="''"
    [ "${CLUSTER_TCP:-0}" = 1 ] && listen="'127.0.0.1'"
    local preload="${CLUSTER_PRELOAD-bidguard}"
    {
        echo ""
        echo "# ---- added by bidguard scripts/cluster.sh: a throwaway test cluster ----"
        echo "listen_addresses = $listen"
        echo "unix_socket_directories = '$CLUSTER_SOCKDIR'"
        echo "unix_socket_permissions = 0700"
        echo "shared_preload_libraries = '$preload'"
        echo "max_connections = 150"
        echo "max_prepared_transactions = 10"
        echo "shared_buffers = 128MB"
        echo "fsync = off"
        echo "full_page_writes = off"
        echo "synchronous_commit = on"
        echo "lc_messages = 'C'"
        echo "timezone = 'UTC'"
        echo "datestyle = 'iso, mdy'"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] %q%a '"
        echo "log_min_messages = warning"
        echo "log_lock_waits = on"
        echo "log_checkpoints = off"
        echo "deadlock_timeout = 1s"
        local line
        for line in "$@"; do
            echo "$line"
        done
    } >>"$CLUSTER_DATA/postgresql.conf"

    local _ port
    for _ in 1 2 3 4 5; do
        port="$(_cluster_pick_port)" || return 1
        sed -i '/^port = [0-9]*$/d' "$CLUSTER_DATA/postgresql.conf"
        echo "port = $port" >>"$CLUSTER_DATA/postgresql.conf"
        if cluster_as_owner pg_ctl -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 60 -s start >/dev/null 2>&1; then
            export PGHOST="$CLUSTER_SOCKDIR"
            export PGPORT="$port"
            export PGUSER=postgres
            export PGDATABASE=postgres
            unset PGHOSTADDR PGSERVICE PGPASSWORD PGSSLMODE 2>/dev/null || true
            export CLUSTER_PORT="$port"
            _cluster_say "started PostgreSQL $("$CLUSTER_BINDIR/postgres" -V | awk '{print $3}') as $CLUSTER_OWNER in $CLUSTER_DIR (socket $CLUSTER_SOCKDIR, port $port$([ "${CLUSTER_TCP:-0}" = 1 ] && echo ", 127.0.0.1"))"
            return 0
        fi
        if grep -q -e 'could not bind' -e 'Address already in use' -e 'could not create lock file' "$CLUSTER_LOG" 2>/dev/null; then
            _cluster_say "port $port was taken meanwhile; trying another"
            continue
        fi
        break
    done
    echo "cluster: the server did not start" >&2
    cluster_log_tail 40 >&2
    return 1
}

cluster_stop() {
    local mode="${1:-fast}"
    [ -n "${CLUSTER_DATA:-}" ] && [ -f "$CLUSTER_DATA/postmaster.pid" ] || return 0
    if ! cluster_as_owner pg_ctl -D "$CLUSTER_DATA" -m "$mode" -w -t 30 -s stop >/dev/null 2>&1; then
        cluster_as_owner pg_ctl -D "$CLUSTER_DATA" -m immediate -w -t 30 -s stop >/dev/null 2>&1 || true
    fi
}

cluster_start_again() {
    if ! cluster_as_owner pg_ctl -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 60 -s start >/dev/null 2>&1; then
        echo "cluster: the server did not start again" >&2
        cluster_log_tail 40 >&2
        return 1
    fi
}

cluster_restart() {
    cluster_stop "${1:-fast}"
    cluster_start_again
}

# Stop every postmaster whose data directory lies under CLUSTER_DIR: ours, and any
# a TAP test (PostgreSQL::Test::Cluster) left behind when it was killed.
_cluster_kill_strays() {
    local pidfile pid datadir i
    while IFS= read -r pidfile; do
        pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
        datadir="$(sed -n 2p "$pidfile" 2>/dev/null || true)"
        case "$pid" in '' | *[!0-9]*) continue ;; esac
        # Only a live postgres process whose data directory is this one.
        [ -r "/proc/$pid/cmdline" ] || continue
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q postgres || continue
        [ "$datadir" = "$(dirname "$pidfile")" ] || continue
        kill -QUIT "$pid" 2>/dev/null || continue
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$CLUSTER_DIR" -name postmaster.pid -type f 2>/dev/null)
}

cluster_cleanup() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    [ -z "${_CLUSTER_CLEANED:-}" ] || return 0
    # Only the shell that started the cluster cleans it up, not a subshell.
    [ "${_CLUSTER_MAIN_PID:-}" = "$BASHPID" ] || return 0
    _CLUSTER_CLEANED=1
    local i
    for ((i = ${#_CLUSTER_AT_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${_CLUSTER_AT_EXIT[$i]}" || true
    done
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
        echo "cluster: KEEP_CLUSTER=1: left in $CLUSTER_DIR (server log $CLUSTER_LOG)"
        if [ -f "$CLUSTER_DATA/postmaster.pid" ]; then
            echo "cluster:   connect: psql -h $CLUSTER_SOCKDIR -p ${CLUSTER_PORT:-?} -U postgres postgres"
            if _cluster_switching_user; then
                echo "cluster:   remove:  runuser -u $CLUSTER_OWNER -- $CLUSTER_BINDIR/pg_ctl -D $CLUSTER_DATA -m immediate stop; rm -rf $CLUSTER_DIR"
            else
                echo "cluster:   remove:  $CLUSTER_BINDIR/pg_ctl -D $CLUSTER_DATA -m immediate stop; rm -rf $CLUSTER_DIR"
            fi
        else
            echo "cluster:   remove:  rm -rf $CLUSTER_DIR"
        fi
        return 0
    fi
    cluster_stop fast
    _cluster_kill_strays
    rm -rf "$CLUSTER_DIR"
    _cluster_say "removed $CLUSTER_DIR"
}
