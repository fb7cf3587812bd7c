#!/usr/bin/env bash
# scripts/pg-config.sh — which pg_config serves PostgreSQL MAJOR on this machine.
#
#   scripts/pg-config.sh MAJOR           print its path (it may not exist yet)
#   scripts/pg-config.sh --build MAJOR   the same, building the server first when it
#                                        must come from source and is not cached
#
# A major this Debian release packages (bookworm: 15; trixie: 17; sid: 18) is
# Debian's, /usr/lib/postgresql/MAJOR/bin/pg_config, which scripts/deps.sh installs.
# Any other major comes from scripts/build-postgres.sh, built from Debian's source
# package into the cache ($BIDGUARD_CACHE/postgresql-MAJOR).  An installed
# /usr/lib/postgresql/MAJOR wins in every case.  `make PG=18 …` and
# `make test PG=18` use this script.
set -euo pipefail

build=0
major=""
for arg in "$@"; do
    case "$arg" in
        --build) build=1 ;;
        [0-9]*) major="$arg" ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "pg-config.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done
if ! [[ "$major" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/pg-config.sh [--build] MAJOR" >&2
    exit 2
fi

debian="/usr/lib/postgresql/$major/bin/pg_config"
if [ -x "$debian" ]; then
    echo "$debian"
    exit 0
fi

codename=""
if [ -r /etc/os-release ]; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
fi
case "$codename:$major" in
    bookworm:15 | trixie:17 | sid:18 | forky:18)
        echo "$debian"
        exit 0
        ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$build" = 1 ]; then
    exec bash "$here/build-postgres.sh" "$major"
fi
exec bash "$here/build-postgres.sh" --path "$major"
