#!/usr/bin/env bash
# scripts/build-citus.sh — Citus for the scale-out tests, built once into a cache
# outside the clone and installed into a PostgreSQL server from there.
#
#   scripts/build-citus.sh [PG_CONFIG]     build (or reuse) Citus for that server and
#                                          install it there (default: pg_config)
#   scripts/build-citus.sh --print [PG_CONFIG]
#                                          exit 0 when Citus is installed in that
#                                          server, 1 otherwise (builds nothing)
#
# Users install Citus from Citus's own packages (doc/scaleout.md, With Citus); this
# script is for machines that cannot reach them, such as CI.  The source is the
# unmodified Citus 13.2.2 tarball with its one-line build fix for PostgreSQL 15.14
# and later, both in ../shared/deps/ (BIDGUARD_CITUS_DEPS to point elsewhere).
# Citus 13.2 supports PostgreSQL 15, 16 and 17; other majors are refused.
#
# The build tree lives in $BIDGUARD_CACHE/citus-13.2.2-pgMAJOR, stamped with the
# server it was built for; a later run reuses it (make install only, seconds).
#
# Environment: BIDGUARD_CACHE (default /var/cache/bidguard as root, else
# ${XDG_CACHE_HOME:-~/.cache}/bidguard), BIDGUARD_CITUS_DEPS, JOBS (make -j).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
print_only=0
pg_config=pg_config
for arg in "$@"; do
    case "$arg" in
        --print) print_only=1 ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) pg_config="$arg" ;;
    esac
done

say() { echo "build-citus: $*" >&2; }

version=13.2.2
major="$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
pkglibdir="$("$pg_config" --pkglibdir)"
sharedir="$("$pg_config" --sharedir)"

installed() {
    [ -f "$pkglibdir/citus.so" ] && [ -f "$sharedir/extension/citus.control" ] &&
        grep -q "default_version = '${version%.*}" "$sharedir/extension/citus.control"
}
if [ "$print_only" = 1 ]; then
    installed
    exit $?
fi
case "$major" in
    15 | 16 | 17) ;;
    *) say "Citus $version supports PostgreSQL 15, 16 and 17; $pg_config is PostgreSQL $major"; exit 3 ;;
esac

. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
deps="${BIDGUARD_CITUS_DEPS:-$here/../../shared/deps}"
tree="$BIDGUARD_CACHE/citus-$version-pg$major"
stamp="$tree/.bidguard-build"
want="citus=$version pg=$("$pg_config" --version) includedir=$("$pg_config" --includedir-server)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "reusing the build in $tree"
else
    tarball="$deps/citus-$version.tar.xz"
    patchfile="$deps/citus-$version-pg15.14.patch"
    for f in "$tarball" "$patchfile"; do
        if [ ! -r "$f" ]; then
            say "missing $f (set BIDGUARD_CITUS_DEPS to the directory holding the Citus source)"
            exit 1
        fi
    done
    if [ "$(id -u)" -eq 0 ]; then
        missing=()
        for p in build-essential liblz4-dev libzstd-dev libkrb5-dev libssl-dev autoconf flex bison; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
        if [ "${#missing[@]}" -gt 0 ]; then
            say "installing ${missing[*]}"
            apt-get install -y -q "${missing[@]}" >/dev/null
        fi
    fi
    say "building Citus $version for PostgreSQL $major in $tree (about 3 minutes on 2 cores)"
    # Built where it stays: configure records absolute paths in the tree.
    # The stamp is written last, so an interrupted build is never reused.
    rm -rf "$tree"
    mkdir -p "$BIDGUARD_CACHE"
    tar -xf "$tarball" -C "$BIDGUARD_CACHE"
    mv "$BIDGUARD_CACHE/citus-$version" "$tree"
    (
        cd "$tree"
        patch -p1 -s <"$patchfile"
        PG_CONFIG="$pg_config" ./configure --without-libcurl --with-pgconfig="$pg_config" >"$tree/configure.log" 2>&1 ||
            { tail -20 "$tree/configure.log" >&2; exit 1; }
        make -s -j"${JOBS:-$(nproc)}" >"$tree/make.log" 2>&1 || { tail -30 "$tree/make.log" >&2; exit 1; }
    )
    echo "$want" >"$stamp"
fi
if ! installed || [ "$pkglibdir/citus.so" -ot "$stamp" ]; then
    say "installing Citus $version into $pkglibdir"
    make -s -C "$tree" install >/dev/null
fi
installed
say "Citus $version is installed for PostgreSQL $major"
