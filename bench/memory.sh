#!/usr/bin/env bash
# bench/memory.sh — the memory of one backend that has made many calls
# (issue 16): on a throwaway cluster (scripts/cluster.sh), one session calls
# bidguard_create_bid (a new posting each time, so each call creates a bid
# and its event) and then bidguard_try_trade (over 1,000,000 bots with no
# cooldown, so each call admits a trade) MEMORY_CALLS times each (default
# 1,000,000), committing after every call (a procedure with COMMIT), and
# reads its own memory from pg_backend_memory_contexts after 1,000 calls and
# after all of them.  Writes RESULTS/memory.tsv (default bench/results).
#
#   MEMORY_CALLS=1000000 bash bench/memory.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
calls=${MEMORY_CALLS:-1000000}
results=${BENCH_RESULTS:-$root/bench/results}
[[ $calls =~ ^[1-9][0-9]*$ ]] && [ "$calls" -gt 1000 ] ||
	{ echo "memory: MEMORY_CALLS must be an integer above 1000" >&2; exit 2; }
mkdir -p "$results"
export PG_CONFIG=${PG_CONFIG:-pg_config}
make -s --no-print-directory install >/dev/null
# shellcheck source-path=SCRIPTDIR source=../scripts/cluster.sh
. scripts/cluster.sh
cluster_start "synchronous_commit = off" "fsync = off" >/dev/null
cluster_psql -o /dev/null -c 'CREATE EXTENSION bidguard' -c "
CREATE PROCEDURE mem_bids(n int, start int) LANGUAGE plpgsql AS \$\$
BEGIN
    FOR i IN start .. start + n - 1 LOOP
        PERFORM bidguard_create_bid('mem', 'p' || i);
        COMMIT;
    END LOOP;
END \$\$;
CREATE PROCEDURE mem_trades(n int, start int) LANGUAGE plpgsql AS \$\$
BEGIN
    FOR i IN start .. start + n - 1 LOOP
        PERFORM bidguard_try_trade(1 + i % 1000000);
        COMMIT;
    END LOOP;
END \$\$;
CREATE FUNCTION mem_bytes() RETURNS bigint LANGUAGE sql AS
    \$\$SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts\$\$;" \
	-c "SELECT bidguard_set_cooldown(b, '0') FROM generate_series(1, 1000000) AS b"
printf 'function\tcalls\tbytes_after_1000\tbytes_after_all\tseconds\n' >"$results/memory.tsv"
for fn in create_bid try_trade; do
	proc=mem_bids; [ "$fn" = try_trade ] && proc=mem_trades
	start=$(date +%s.%N)
	read -r warm after < <(cluster_psql -At -F ' ' <<-SQL | tr '\n' ' '
		CALL $proc(1000, 0);
		SELECT mem_bytes();
		CALL $proc($calls - 1000, 1000);
		SELECT mem_bytes();
	SQL
	echo)
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
	printf '%s\t%s\t%s\t%s\t%s\n' "$fn" "$calls" "$warm" "$after" "$secs" >>"$results/memory.tsv"
	echo "memory: $fn, one backend: $warm bytes after 1,000 calls, $after after $calls ($secs s)"
done
