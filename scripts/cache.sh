# shellcheck shell=bash
# scripts/cache.sh — where bidguard's slow builds are kept between runs, outside
# the clone (PostgreSQL majors Debian 12 lacks, older 15 releases, Citus).
# Sourced by build-postgres.sh, extract-postgres.sh and build-citus.sh; sets and
# exports BIDGUARD_CACHE unless it is set already: /var/cache/bidguard as root,
# else ${XDG_CACHE_HOME:-~/.cache}/bidguard.
if [ -z "${BIDGUARD_CACHE:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        BIDGUARD_CACHE=/var/cache/bidguard
    else
        BIDGUARD_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bidguard"
    fi
fi
export BIDGUARD_CACHE
