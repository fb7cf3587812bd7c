#!/usr/bin/env bash
# scripts/deps.sh — make sure what building and testing bidguard needs is installed.
#
#   scripts/deps.sh                 check; install what is missing (root), or print
#                                   the apt-get command and exit 1 (not root)
#   scripts/deps.sh --check         check only: exit 1 and print the command if
#                                   anything is missing, never install
#   scripts/deps.sh PKG...          also require these extra Debian packages
#                                   (e.g. scripts/demo.sh asking for what it uses)
#
# When everything is present it does nothing and is fast: no apt-get update, no
# network.  The server is Debian's (PG_CONFIG under /usr/lib/postgresql or
# /usr/bin, or not installed yet): then its packages are required, for PG_MAJOR.
# Or it is another installation, such as scripts/build-postgres.sh's: then the
# packages below that are not PostgreSQL's, and that installation must have
# PGXS, pg_regress, pg_isolation_regress, the PostgreSQL::Test modules, pgTAP,
# btree_gist and dblink (scripts/build-postgres.sh MAJOR builds all of them).
# Packages (Debian 12 / PostgreSQL 15 names; PG_MAJOR overrides 15):
#   build-essential                 gcc, make (PGXS build)
#   postgresql-$PG_MAJOR            server, initdb, pg_ctl, pgbench, contrib modules
#   postgresql-client-$PG_MAJOR     psql
#   postgresql-server-dev-$PG_MAJOR PGXS headers, pg_regress, pg_isolation_regress,
#                                   PostgreSQL::Test::* perl modules (pulls clang/llvm
#                                   for the bitcode PGXS builds with with_llvm=yes)
#   postgresql-$PG_MAJOR-pgtap      the pgTAP extension
#   libtap-parser-sourcehandler-pgtap-perl   pg_prove
#   libipc-run-perl                 IPC::Run, needed by PostgreSQL::Test::Utils
#   prometheus-postgres-exporter    the exporter test/t/009_exporter.pl runs with
#                                   monitoring/queries.yaml
#   pgbouncer                       the pooler test/t/015_pgbouncer.pl runs bidguard behind
#   prometheus                      promtool, which test/t/009_exporter.pl checks and
#                                   unit-tests monitoring/alerts.yml with
#   python3-celery python3-redis redis-server
#                                   the Celery workers (Redis broker) of test/t/020_celery.pl
#   sqlsmith                        the query fuzzer test/t/017_fuzz.pl runs
#   perl                            prove (TAP::Harness)
#   python3 python3-psycopg         the Python example client and `make demo`'s workers
#   postgresql-MAJOR-plproxy        PL/Proxy, for test/scaleout (Debian's servers only)
#   libpq-dev                       the C example client
#   nodejs npm                      the Node.js example client (only when `node` or
#                                   `npm` is not on PATH: a Node.js from elsewhere,
#                                   e.g. NodeSource's, is used as it is)
# Then, unless examples/node/node_modules has the locked `pg`, it runs `npm ci` there
# (the npm registry; package-lock.json pins every version).
#   util-linux coreutils diffutils findutils tar procps
#                                   runuser, timeout, mktemp, diff (pg_regress), find,
#                                   tar (copying the test tree), ps
set -euo pipefail

# The PostgreSQL major version: PG_MAJOR, else that of pg_config (PG_CONFIG), else 15.
if [ -z "${PG_MAJOR:-}" ]; then
    PG_MAJOR="$("${PG_CONFIG:-pg_config}" --version 2>/dev/null | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p' || true)"
    PG_MAJOR="${PG_MAJOR:-15}"
fi
check_only=0
extra=()
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "deps.sh: unknown option: $arg" >&2; exit 2 ;;
        *) extra+=("$arg") ;;
    esac
done

# Debian's server, or one installed elsewhere (a source build)?
pg_config_path="$(command -v "${PG_CONFIG:-pg_config}" 2>/dev/null || true)"
debian_server=1
case "$pg_config_path" in
    "" | /usr/bin/* | /usr/lib/postgresql/*) ;;
    *) debian_server=0 ;;
esac

packages=(build-essential)
if [ "$debian_server" = 1 ]; then
    packages+=(
        "postgresql-$PG_MAJOR"
        "postgresql-client-$PG_MAJOR"
        "postgresql-server-dev-$PG_MAJOR"
        "postgresql-$PG_MAJOR-pgtap"
        "postgresql-$PG_MAJOR-plproxy"
    )
fi
packages+=(
    libtap-parser-sourcehandler-pgtap-perl
    libipc-run-perl
    prometheus-postgres-exporter
    pgbouncer
    prometheus
    python3-celery
    python3-redis
    redis-server
    sqlsmith
    perl
    python3
    python3-psycopg
    libpq-dev
    util-linux
    coreutils
    diffutils
    findutils
    tar
    procps
)
packages+=("${extra[@]}")

# Which of the packages are not installed?
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true)"
    for p in "${packages[@]}"; do
        if ! awk -v p="$p" '$1 == p && $2 == "ii" { f = 1 } END { exit !f }' <<<"$installed"; then
            missing+=("$p")
        fi
    done
else
    echo "deps.sh: dpkg-query not found: this script knows Debian's packages only." >&2
    echo "deps.sh: install by hand: a C compiler, make, PostgreSQL $PG_MAJOR with its" >&2
    echo "deps.sh: server headers (PGXS), pgTAP, pg_prove, prove and perl's IPC::Run." >&2
    exit 1
fi

# Belt and braces: the files the build and test scripts actually use.  A package
# can be "installed" yet broken, or a tool missing on an odd system; if so, ask
# for its package again (apt-get reinstalls nothing that is fine).
need_file() { # FILE PACKAGE
    if [ ! -e "$1" ]; then
        case " ${missing[*]-} " in *" $2 "*) ;; *) missing+=("$2") ;; esac
    fi
}
if [ "$debian_server" = 1 ]; then
    pkgxs_dir="/usr/lib/postgresql/$PG_MAJOR/lib/pgxs"
    need_file "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" "postgresql-$PG_MAJOR"
    need_file "/usr/lib/postgresql/$PG_MAJOR/bin/psql" "postgresql-client-$PG_MAJOR"
    need_file "$pkgxs_dir/src/makefiles/pgxs.mk" "postgresql-server-dev-$PG_MAJOR"
    need_file "$pkgxs_dir/src/test/regress/pg_regress" "postgresql-server-dev-$PG_MAJOR"
    need_file "$pkgxs_dir/src/test/isolation/pg_isolation_regress" "postgresql-server-dev-$PG_MAJOR"
    need_file "$pkgxs_dir/src/test/perl/PostgreSQL/Test/Cluster.pm" "postgresql-server-dev-$PG_MAJOR"
    need_file "/usr/share/postgresql/$PG_MAJOR/extension/pgtap.control" "postgresql-$PG_MAJOR-pgtap"
else
    # Not ours to install: say what is missing and how to get it.
    pgxs_mk="$("$pg_config_path" --pgxs 2>/dev/null || true)"
    pkgxs_dir="$(dirname "$(dirname "$(dirname "$pgxs_mk")")")"
    sharedir="$("$pg_config_path" --sharedir 2>/dev/null || true)"
    bindir="$("$pg_config_path" --bindir 2>/dev/null || true)"
    absent=()
    for f in "$bindir/postgres" "$bindir/psql" "$bindir/pg_ctl" "$bindir/initdb" "$pgxs_mk" \
        "$pkgxs_dir/src/test/regress/pg_regress" \
        "$pkgxs_dir/src/test/isolation/pg_isolation_regress" \
        "$pkgxs_dir/src/test/perl/PostgreSQL/Test/Cluster.pm" \
        "$sharedir/extension/pgtap.control" "$sharedir/extension/btree_gist.control" \
        "$sharedir/extension/dblink.control"; do
        [ -e "$f" ] || absent+=("$f")
    done
    if [ "${#absent[@]}" -gt 0 ]; then
        echo "deps.sh: $pg_config_path is not a Debian package, and it lacks what the tests need:" >&2
        printf 'deps.sh:   %s\n' "${absent[@]}" >&2
        echo "deps.sh: build PostgreSQL $PG_MAJOR with all of it: scripts/build-postgres.sh $PG_MAJOR" >&2
        echo "deps.sh: (configure --enable-tap-tests; install contrib/btree_gist, contrib/dblink," >&2
        echo "deps.sh: src/test/isolation and pgTAP, e.g. 'make PG_CONFIG=$pg_config_path install' in pgTAP's source)" >&2
        exit 1
    fi
fi
for tool in gcc make; do
    command -v "$tool" >/dev/null 2>&1 || need_file "/nonexistent/$tool" build-essential
done
command -v pg_prove >/dev/null 2>&1 || need_file /nonexistent/pg_prove libtap-parser-sourcehandler-pgtap-perl
command -v prove >/dev/null 2>&1 || need_file /nonexistent/prove perl
perl -MIPC::Run -e 1 >/dev/null 2>&1 || need_file /nonexistent/IPC::Run libipc-run-perl
need_file /usr/bin/prometheus-postgres-exporter prometheus-postgres-exporter
need_file /usr/sbin/pgbouncer pgbouncer
need_file /usr/bin/promtool prometheus
need_file /usr/bin/redis-server redis-server
/usr/bin/python3 -c 'import celery' >/dev/null 2>&1 || need_file /nonexistent/celery python3-celery
/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || need_file /nonexistent/redis python3-redis
need_file /usr/bin/sqlsmith sqlsmith
command -v node >/dev/null 2>&1 || need_file /nonexistent/node nodejs
command -v npm >/dev/null 2>&1 || need_file /nonexistent/npm npm

# The Node.js example's packages, exactly as package-lock.json pins them.
node_packages() {
    local dir
    dir="$(cd "$(dirname "$0")/.." && pwd)/examples/node"
    [ -f "$dir/package-lock.json" ] || return 0
    [ -d "$dir/node_modules/pg" ] && return 0
    echo "deps.sh: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ "${#missing[@]}" -eq 0 ]; then
    [ "$check_only" = 1 ] && [ ! -d "$(dirname "$0")/../examples/node/node_modules/pg" ] && {
        echo "deps.sh: missing: examples/node/node_modules (run: cd examples/node && npm ci)" >&2
        exit 1
    }
    [ "$check_only" = 1 ] || node_packages
    [ -n "${DEPS_VERBOSE:-}" ] && echo "deps.sh: all build and test dependencies are installed"
    exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
echo "deps.sh: missing: ${missing[*]}"
if [ "$check_only" = 1 ] || [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: install them as root with:" >&2
    echo "    $cmd" >&2
    exit 1
fi

echo "deps.sh: installing: ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
echo "deps.sh: installed: ${missing[*]}"
node_packages
