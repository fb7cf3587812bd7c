#!/usr/bin/env bash
# scripts/extract-postgres.sh — one Debian release of a PostgreSQL major, unpacked
# from Debian's own binary packages into the cache, beside (not instead of) the
# machine's installed one.
#
#   scripts/extract-postgres.sh MAJOR VERSION   e.g. 15 15.18-0+deb12u1
#   scripts/extract-postgres.sh MAJOR --oldest  the oldest version of postgresql-MAJOR
#                                               the machine's apt sources offer
#
# Prints the unpacked pg_config on the last line.  The packages (postgresql-MAJOR,
# postgresql-client-MAJOR, postgresql-server-dev-MAJOR) are fetched with
# `apt-get download` from the machine's own apt sources and unpacked with
# `dpkg -x` into $BIDGUARD_CACHE/debian-postgresql-VERSION: nothing is installed,
# and PostgreSQL's relocatable paths make pg_config, the server and PGXS work
# from there.  test/t/013_pg_upgrade.pl uses it to upgrade from a second 15
# release (see doc/operations.md, Upgrading PostgreSQL).  Reused when present.
set -euo pipefail

major="${1:-}"
version="${2:-}"
if ! [[ "$major" =~ ^[0-9]+$ ]] || [ -z "$version" ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
say() { echo "extract-postgres: $*" >&2; }

. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

apt_opts=(-o APT::Sandbox::User=root)
[ "$(id -u)" -eq 0 ] || apt_opts=()
versions() {
    apt-cache madison "postgresql-$major" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' |
        sort -u -V
}
if [ "$version" = --oldest ]; then
    version="$(versions | head -n 1)"
    if [ -z "$version" ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update >&2 || true
        version="$(versions | head -n 1)"
    fi
    [ -n "$version" ] || { say "apt knows no version of postgresql-$major"; exit 1; }
fi

dir="$BIDGUARD_CACHE/debian-postgresql-$version"
pg_config="$dir/usr/lib/postgresql/$major/bin/pg_config"
if [ -f "$dir/.bidguard-extracted" ] && "$pg_config" --version >/dev/null 2>&1; then
    say "reusing $("$pg_config" --version) in $dir"
    echo "$pg_config"
    exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/debs"
pkgs=("postgresql-$major=$version" "postgresql-client-$major=$version" "postgresql-server-dev-$major=$version")
if ! (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >&2); then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update >&2
        (cd "$dir/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >&2) ||
            { say "apt-get download ${pkgs[*]} failed"; exit 1; }
    else
        say "apt-get download ${pkgs[*]} failed"
        exit 1
    fi
fi
for deb in "$dir"/debs/*.deb; do
    dpkg -x "$deb" "$dir"
done
rm -rf "$dir/debs"
chmod -R a+rX "$dir"
"$pg_config" --version >/dev/null || { say "the unpacked $pg_config does not run"; exit 1; }
echo "postgresql-$major $version, Debian binary packages" >"$dir/.bidguard-extracted"
say "unpacked $("$pg_config" --version) into $dir"
echo "$pg_config"
