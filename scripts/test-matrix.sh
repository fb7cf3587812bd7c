#!/usr/bin/env bash
# scripts/test-matrix.sh — `make test` on several PostgreSQL majors, one after another.
#
#   scripts/test-matrix.sh [MAJOR...]     default: 15 18 (what CI tests)
#   make test-matrix PG_MATRIX="15 18"
#
# Each major runs the README's test command, `make test PG=MAJOR`, with its own
# server and binaries (scripts/pg-config.sh: Debian's package, or a build of
# Debian's source package cached outside the clone).  Run the oldest first: the
# newer majors' pg_upgrade test (test/t/013_pg_upgrade.pl) upgrades from
# PostgreSQL 15, which the first run installs; here it is required, not skipped
# (BIDGUARD_REQUIRE_UPGRADE=1).  Prints each run's server and closing line, then
# a summary; exits non-zero if any run failed.  TEST_ARGS is passed on.
set -uo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(15 18)
export BIDGUARD_REQUIRE_UPGRADE="${BIDGUARD_REQUIRE_UPGRADE:-1}"

rows=()
status=0
t_all=$SECONDS
for major in "${majors[@]}"; do
    log="$(mktemp "${TMPDIR:-/tmp}/bidguard-matrix-$major.XXXXXX")"
    echo
    echo "################ PostgreSQL $major: make test PG=$major ################"
    t0=$SECONDS
    rc=0
    make --no-print-directory test PG="$major" ${TEST_ARGS:+TEST_ARGS="$TEST_ARGS"} </dev/null 2>&1 |
        tee "$log" || rc=$?
    closing="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
    server="$(sed -nE 's/^run-tests: (PostgreSQL [^ ]+ from [^;]+);.*/\1/p' "$log" | head -n 1)"
    rows+=("$(printf 'PostgreSQL %-3s %-22s %5ss  %s  (%s)' "$major" "${closing:-no summary}" \
        $((SECONDS - t0)) "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "${server:-server unknown}")")
    [ "$rc" -eq 0 ] || status=1
    rm -f "$log"
done

echo
echo "################ matrix summary ($((SECONDS - t_all)) s) ################"
printf '%s\n' "${rows[@]}"
exit "$status"
