#!/usr/bin/env bash
# scripts/build-postgres.sh — a PostgreSQL major that Debian 12 does not package,
# built from Debian's own source package, into a cache outside the clone.
#
#   scripts/build-postgres.sh MAJOR        build (or reuse) PostgreSQL MAJOR; print the
#                                          path of its pg_config on the last line
#   scripts/build-postgres.sh --print MAJOR
#                                          print that path if the build is cached, else
#                                          exit 1 (never downloads or builds)
#   scripts/build-postgres.sh --path MAJOR print where that pg_config is or will be
#
# Where the source comes from: `apt-get source postgresql-MAJOR`, run with a private
# apt configuration (in the cache, never /etc/apt) whose only lines are deb-src lines
# for Debian sid and trixie, signed by the machine's debian-archive-keyring.  sid has
# postgresql-18, trixie postgresql-17; dpkg-source applies Debian's patches, so this
# is the server Debian's own packages are built from.  No registry beyond Debian's.
#
# What is built and installed into $BIDGUARD_CACHE/postgresql-MAJOR:
#   the server and client programs, PGXS, pg_regress, pg_isolation_regress and the
#   PostgreSQL::Test::* perl modules (configure --enable-tap-tests), the contrib
#   modules the tests use (btree_gist, dblink), and pgTAP (from Debian's `pgtap`
#   source package, built with PGXS against this server).
# A stamp file records what was built; a later run with the same recipe reuses the
# build without touching the network.  BIDGUARD_PG_REBUILD=1 builds again (at the
# newest version the mirror has).
#
# Environment:
#   BIDGUARD_CACHE       the cache (default /var/cache/bidguard as root, else
#                        ${XDG_CACHE_HOME:-~/.cache}/bidguard)
#   BIDGUARD_PG_REBUILD  1 = ignore a cached build
#   BIDGUARD_DEBIAN_MIRROR  default http://deb.debian.org/debian
#   JOBS                 make -j (default: nproc)
# Build dependencies (Debian packages) are installed when missing and we are root.
set -euo pipefail

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; }

print_only=0
path_only=0
major=""
for arg in "$@"; do
    case "$arg" in
        --print) print_only=1 ;;
        --path) path_only=1 ;;
        -h | --help) usage; exit 0 ;;
        [0-9]*) major="$arg" ;;
        *) echo "build-postgres.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$major" ]; then
    usage >&2
    exit 2
fi

. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
# The prefix must contain "postgres": Debian's 50-per-version-dirs patch would
# otherwise put the libraries into /usr/lib/postgresql/MAJOR, the system's own.
prefix="$BIDGUARD_CACHE/postgresql-$major"
stamp="$prefix/.bidguard-build"
if [ "$path_only" = 1 ]; then
    echo "$prefix/bin/pg_config"
    exit 0
fi
mirror="${BIDGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
contrib_modules=(btree_gist dblink)
configure_flags=(--enable-tap-tests --with-icu --with-readline --without-llvm)

# What a cached build must match: bump RECIPE when the steps below change.
RECIPE=1
recipe="recipe=$RECIPE contrib=${contrib_modules[*]} configure=${configure_flags[*]}"

say() { echo "build-postgres: $*" >&2; }

cached() {
    [ -f "$stamp" ] && grep -qxF "$recipe" "$stamp" && [ -x "$prefix/bin/pg_config" ] &&
        "$prefix/bin/pg_config" --version >/dev/null 2>&1
}

if [ "${BIDGUARD_PG_REBUILD:-0}" != 1 ] && cached; then
    say "reusing $("$prefix/bin/pg_config" --version) in $prefix ($(sed -n 's/^source=//p' "$stamp"))"
    echo "$prefix/bin/pg_config"
    exit 0
fi
if [ "$print_only" = 1 ]; then
    say "no cached build of PostgreSQL $major in $prefix (run: scripts/build-postgres.sh $major)"
    exit 1
fi

# ---------------------------------------------------------------- build dependencies
# Tarballs from PostgreSQL 17 on are `git archive`s without the generated parsers,
# so bison and flex are needed too.
build_deps=(build-essential dpkg-dev xz-utils bzip2 pkg-config perl libipc-run-perl bison flex
    libreadline-dev zlib1g-dev libicu-dev debian-archive-keyring ca-certificates)
missing=()
for p in "${build_deps[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing build dependencies: ${missing[*]}"
        say "install them as root: apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
    say "installing build dependencies: ${missing[*]}"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >&2
fi

# ---------------------------------------------------------------- the source
mkdir -p "$BIDGUARD_CACHE"
apt_dir="$BIDGUARD_CACHE/apt"
rm -rf "$apt_dir"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/preferences.d"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$apt_dir/etc/sources.list" <<EOF
# bidguard scripts/build-postgres.sh: source packages only, for building test servers
deb-src [signed-by=$keyring] $mirror sid main
deb-src [signed-by=$keyring] $mirror trixie main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
    -o "Dir::Etc::SourceParts=$apt_dir/etc/none"
    -o "Dir::Etc::Preferences=$apt_dir/etc/none"
    -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir"
    -o "Dir::Cache::archives=$apt_dir/archives"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=true"
)
say "apt-get update with a private configuration (deb-src sid, trixie)"
apt-get "${apt_opts[@]}" update >&2

src_root="$BIDGUARD_CACHE/src"
rm -rf "$src_root"
mkdir -p "$src_root"

# Fetch and unpack a source package, newest version first.  When the mirror has
# the upstream tarball but not Debian's .dsc or packaging (a mirror between two
# uploads), take the tarball alone: apt checks it against the signed index all the
# same; only Debian's patches are then missing (FETCHED says which it was).
fetch_source() { # PACKAGE -> sets FETCHED_DIR (the unpacked tree) and FETCHED (what)
    local pkg="$1" dir v tarball
    local -a versions=()
    mapfile -t versions < <(apt-cache "${apt_opts[@]}" showsrc "$pkg" 2>/dev/null |
        sed -n 's/^Version: //p' | sort -r -V -u)
    for v in "${versions[@]}"; do
        rm -rf "${src_root:?}/$pkg"[-_]*
        if (cd "$src_root" && apt-get "${apt_opts[@]}" source "$pkg=$v" >&2); then
            FETCHED="$pkg $v (Debian source package)"
        elif (cd "$src_root" && apt-get "${apt_opts[@]}" source --tar-only "$pkg=$v" >&2); then
            tarball="$(find "$src_root" -maxdepth 1 -name "${pkg}_*.orig.tar.*" | head -n 1)"
            [ -n "$tarball" ] && tar -C "$src_root" -xf "$tarball" || continue
            FETCHED="$pkg $v (the upstream tarball of Debian's source package)"
        else
            say "could not fetch $pkg $v; trying an older version"
            continue
        fi
        dir="$(find "$src_root" -mindepth 1 -maxdepth 1 -type d -name "$pkg-*" | sort | tail -n 1)"
        if [ -n "$dir" ]; then
            FETCHED_DIR="$dir"
            return 0
        fi
    done
    return 1
}

server_stamp="$prefix/.bidguard-server"
if [ -f "$server_stamp" ] && grep -qxF "$recipe" "$server_stamp" && [ -x "$prefix/bin/pg_config" ]; then
    # A server built by an earlier run that stopped before pgTAP.
    pg_source="$(sed -n 's/^source=//p' "$server_stamp")"
    say "reusing the server build in $prefix ($pg_source)"
else
    say "apt-get source postgresql-$major"
    if ! fetch_source "postgresql-$major"; then
        say "Debian has no source package postgresql-$major in sid or trixie"
        exit 1
    fi
    pg_src="$FETCHED_DIR"
    say "building $FETCHED in $pg_src"

    jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
    rm -rf "$prefix"
    (
        cd "$pg_src"
        ./configure --prefix="$prefix" "${configure_flags[@]}" >"$src_root/configure.log" 2>&1 ||
            { tail -n 40 "$src_root/configure.log" >&2; exit 1; }
        make -j"$jobs" -s >"$src_root/make.log" 2>&1 || { tail -n 60 "$src_root/make.log" >&2; exit 1; }
        make -s install >>"$src_root/make.log" 2>&1 || { tail -n 60 "$src_root/make.log" >&2; exit 1; }
        for m in "${contrib_modules[@]}"; do
            make -C "contrib/$m" -j"$jobs" -s install >>"$src_root/make.log" 2>&1 ||
                { tail -n 60 "$src_root/make.log" >&2; exit 1; }
        done
    )
    pg_source="$FETCHED"
    printf '%s\nsource=%s\n' "$recipe" "$pg_source" >"$server_stamp"
fi
pg_config="$prefix/bin/pg_config"

# ---------------------------------------------------------------- pgTAP
say "apt-get source pgtap"
fetch_source pgtap || { say "could not fetch Debian's pgtap source package"; exit 1; }
pgtap_src="$FETCHED_DIR"
pgtap_source="$FETCHED"
(
    cd "$pgtap_src"
    make -s PG_CONFIG="$pg_config" >"$src_root/pgtap.log" 2>&1 &&
        make -s PG_CONFIG="$pg_config" install >>"$src_root/pgtap.log" 2>&1
) || { tail -n 40 "$src_root/pgtap.log" >&2; exit 1; }

# ---------------------------------------------------------------- check and stamp
for f in "$prefix/bin/postgres" "$prefix/bin/initdb" "$prefix/bin/pg_ctl" "$prefix/bin/pgbench" \
    "$prefix/bin/pg_upgrade" "$prefix/bin/pg_dump" "$prefix/bin/pg_restore"; do
    [ -x "$f" ] || { say "the build did not install $f"; exit 1; }
done
pgxs_dir="$(dirname "$(dirname "$(dirname "$("$pg_config" --pgxs)")")")"
for f in "$pgxs_dir/src/test/regress/pg_regress" \
    "$pgxs_dir/src/test/isolation/pg_isolation_regress" \
    "$pgxs_dir/src/test/perl/PostgreSQL/Test/Cluster.pm" \
    "$("$pg_config" --sharedir)/extension/btree_gist.control" \
    "$("$pg_config" --sharedir)/extension/dblink.control" \
    "$("$pg_config" --sharedir)/extension/pgtap.control"; do
    [ -e "$f" ] || { say "the build did not install $f"; exit 1; }
done
{
    echo "$recipe"
    echo "source=$pg_source; $pgtap_source"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$stamp"
# The sources and the private apt lists are not needed any more.
rm -rf "$src_root" "$apt_dir"
say "installed $("$pg_config" --version) into $prefix"
echo "$pg_config"
