#!/usr/bin/env bash
# bench/scaleout.sh — `make bench-scaleout`: bidguard through a PL/Proxy proxy
# (two shards) and a Citus coordinator (two workers)
# against one bidguard server, on this machine, in one run
# (bench/scaleout.pl says what it runs).  Results: bench/results/scaleout.tsv.
# Settings: BENCH_SECONDS (8), BENCH_ROUNDS (3), BENCH_CLIENTS (16), PG_CONFIG.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pg_config="$(command -v "${PG_CONFIG:-pg_config}")"
pgxs="$(cd "$(dirname "$("$pg_config" --pgxs)")/../.." && pwd)"
bindir="$("$pg_config" --bindir)"
results="${BENCH_RESULTS:-$root/bench/results}"
mkdir -p "$results"
work="$(mktemp -d /tmp/bidguard-bench-scaleout.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/bench" "$root/test" "$root/doc" "$work/"
out="$work/scaleout.tsv"
run=(env PATH="$bindir:$PATH" PG_REGRESS="$pgxs/src/test/regress/pg_regress"
    PERL5LIB="$pgxs/src/test/perl" PG_TEST_PORT_DIR="$work" TESTDIR="$work" BIDGUARD_SRCDIR="$work"
    BENCH_OUT="$out" BENCH_SECONDS="${BENCH_SECONDS:-8}" BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
    BENCH_CLIENTS="${BENCH_CLIENTS:-16}" perl "$work/bench/scaleout.pl")
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$work"
    (cd "$work" && runuser -u postgres -- "${run[@]}") >"$work/bench.log" 2>&1 || { tail -50 "$work/bench.log" "$work"/tmp_check/log/regress_log_*; exit 1; }
else
    (cd "$work" && "${run[@]}") >"$work/bench.log" 2>&1 || { tail -50 "$work/bench.log" "$work"/tmp_check/log/regress_log_*; exit 1; }
fi
{ echo "# $(date -u +%F) $(uname -m), $(nproc) cores, $("$pg_config" --version)"; cat "$out"; } >"$results/scaleout.tsv"
cat "$results/scaleout.tsv"
