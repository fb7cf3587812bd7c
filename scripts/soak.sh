#!/usr/bin/env bash
# scripts/soak.sh — `make soak`: a long contended run, not part of make test or CI.
#
#   make soak                      SOAK_OPS=1000000 (default), split over the three
#                                  isolation levels
#   make soak SOAK_OPS=300000 SOAK_CLIENTS=16 SOAK_LEVELS="repeatable read"
#
# On a throwaway cluster (scripts/cluster.sh, bidguard preloaded), pgbench races
# SOAK_CLIENTS clients over 20 postings and 8 bots at READ COMMITTED, REPEATABLE
# READ and SERIALIZABLE in turn (40001 and 40P01 retried), through the functions
# and by plain SQL: bidguard_create_bid, bidguard_withdraw_posting, INSERT ... ON
# CONFLICT DO NOTHING on bids, bidguard_try_trade then fill or fail in one
# transaction, and plain INSERTs of trades.  Every pgbench transaction is one
# operation.  While it runs, every second it samples each pgbench backend's
# private memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, which
# leaves out shared buffers); a backend is judged from its first sample after
# the level's first SOAK_WARMUP calls (default 200,000) to its last sample
# before the level's final 5%, and must not grow by more than SOAK_MAX_GROWTH_KB
# (default 1024).  After each level the
# invariants are checked in SQL (no posting with two active bids, no trade
# inside its cooldown, every row with its event, no lock left).  Prints a report
# and exits non-zero if anything failed.  Root is needed to read other users'
# /proc/PID/smaps_rollup (run it as root, or as the cluster's owner).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_OPS="${SOAK_OPS:-1000000}"
SOAK_CLIENTS="${SOAK_CLIENTS:-16}"
SOAK_WARMUP="${SOAK_WARMUP:-200000}"
SOAK_MAX_GROWTH_KB="${SOAK_MAX_GROWTH_KB:-1024}"
SOAK_LEVELS="${SOAK_LEVELS:-read committed,repeatable read,serializable}"
export PG_CONFIG="${PG_CONFIG:-pg_config}"

bash scripts/deps.sh
make -s
make -s install >/dev/null

# shellcheck source=scripts/cluster.sh
. scripts/cluster.sh
cluster_start "max_connections = 100" "deadlock_timeout = '100ms'" "lock_timeout = '30s'"
BINDIR="$CLUSTER_BINDIR"
work="$(cluster_mkdir soak)"

cluster_psql -c 'CREATE EXTENSION bidguard' -c "
SELECT bidguard_set_cooldown(b, make_interval(secs => 0.02 * b)) FROM generate_series(1, 8) AS b;
CREATE FUNCTION soak_insert_trade(bot bigint) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO bidguard_trades (bot_id) VALUES (bot);
EXCEPTION WHEN exclusion_violation THEN NULL;
END \$\$;" >/dev/null

tx_script() { # NAME ISOLATION FIRST_LINE SQL...: one transaction at ISOLATION
    local name="$1" level="$2" first="$3"
    shift 3
    { echo "$first"; echo "BEGIN ISOLATION LEVEL $level;"; printf '%s\n' "$@"; echo 'COMMIT;'; } >"$work/$name.pgbench"
}

write_scripts() { # ISOLATION
    tx_script bid "$1" '\set p random(1, 20)' \
        "SELECT bid_id FROM bidguard_create_bid('soak', 'p' || :p, '{\"via\": \"function\"}');"
    tx_script withdraw "$1" '\set p random(1, 20)' \
        "SELECT withdrawn FROM bidguard_withdraw_posting('soak', 'p' || :p, 'soak');"
    tx_script insert_bid "$1" '\set p random(1, 20)' \
        "INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data) VALUES ('soak', 'p' || :p, '{\"via\": \"insert\"}') ON CONFLICT DO NOTHING;"
    tx_script trade "$1" $'\\set bot random(1, 8)\n\\set fail random(0, 9)' \
        "SELECT coalesce((SELECT trade_id FROM bidguard_try_trade(:bot, '{\"via\": \"function\"}', '0')), 0) AS tid \\gset" \
        'SELECT (bidguard_fill_trade(t)).changed FROM (SELECT :tid::bigint AS t) AS s WHERE t > 0 AND :fail > 0;' \
        'SELECT (bidguard_fail_trade(t)).changed FROM (SELECT :tid::bigint AS t) AS s WHERE t > 0 AND :fail = 0;'
    tx_script insert_trade "$1" '\set bot random(1, 8)' 'SELECT soak_insert_trade(:bot);'
}

private_kb() { # PID -> private KB of the process, or nothing
    awk '/^Private_(Clean|Dirty):/ { kb += $2 } END { if (kb) print kb }' "/proc/$1/smaps_rollup" 2>/dev/null || true
}

report=()
status=0
IFS=, read -r -a levels <<<"$SOAK_LEVELS"
per_level=$((SOAK_OPS / ${#levels[@]}))
per_client=$(((per_level + SOAK_CLIENTS - 1) / SOAK_CLIENTS))
warm_calls=$((SOAK_WARMUP / SOAK_CLIENTS))
total_ops=0
t_all=$SECONDS
for level in "${levels[@]}"; do
    write_scripts "$level"
    tag="${level// /_}"
    samples="$work/$tag.samples"
    : >"$samples"
    t0=$SECONDS
    "$BINDIR/pgbench" -n -c "$SOAK_CLIENTS" -j 2 -t "$per_client" --max-tries=20 \
        -f "$work/bid.pgbench@4" -f "$work/withdraw.pgbench@2" -f "$work/insert_bid.pgbench@1" \
        -f "$work/trade.pgbench@4" -f "$work/insert_trade.pgbench@1" postgres >"$work/$tag.out" 2>&1 &
    bench=$!
    # Sample every second: pid, calls so far (pg_stat_activity has none, so
    # xact_commit of the database over the clients), private KB.
    while kill -0 "$bench" 2>/dev/null; do
        done_ops="$(cluster_psql -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'" 2>/dev/null || echo 0)"
        for pid in $(cluster_psql -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'" 2>/dev/null); do
            kb="$(private_kb "$pid")"
            [ -z "$kb" ] || echo "$pid $done_ops $kb" >>"$samples"
        done
        sleep 1
    done
    rc=0
    wait "$bench" || rc=$?
    processed="$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$work/$tag.out")"
    failed="$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$work/$tag.out")"
    total_ops=$((total_ops + ${processed:-0}))
    # Growth per backend from its first sample past the warm-up to its last
    # one before the final 5% of the level (as clients finish, the last
    # samples catch backends on their way out).
    start_ops="$(awk 'NR == 1 { print $2 }' "$samples")"
    end_ops="$(awk 'END { print $2 }' "$samples")"
    growth="$(awk -v from="$(( ${start_ops:-0} + SOAK_WARMUP ))" \
        -v to="$(( ${end_ops:-0} - (${end_ops:-0} - ${start_ops:-0}) / 20 ))" '
        $2 >= from && $2 <= to { if (!($1 in first)) first[$1] = $3; last[$1] = $3 }
        END { m = 0; n = 0; for (p in first) { n++; g = last[p] - first[p]; if (g > m) m = g }
              printf "%d %d", m, n }' "$samples")"
    max_growth="${growth% *}"
    judged="${growth#* }"
    inv="$(cluster_psql -Atc "
SELECT (SELECT count(*) FROM bidguard_duplicate_active_bids)
     + (SELECT count(*) FROM bidguard_cooldown_violations)
     + (SELECT count(*) FROM bidguard_bids AS b WHERE NOT EXISTS
          (SELECT 1 FROM bidguard_events AS e WHERE e.event_id = b.atomic_event_id))
     + (SELECT count(*) FROM bidguard_trades AS t WHERE NOT EXISTS
          (SELECT 1 FROM bidguard_events AS e WHERE e.event_id = t.atomic_event_id))
     + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid BETWEEN 25089 AND 25092)")"
    ok=ok
    if [ "$rc" -ne 0 ] || [ "${inv:-1}" != 0 ] || [ "${judged:-0}" -eq 0 ] ||
        [ "${max_growth:-0}" -gt "$SOAK_MAX_GROWTH_KB" ]; then
        ok=FAILED
        status=1
        grep -E 'error|aborted' "$work/$tag.out" | sort | uniq -c | sort -rn | head -n 10 || true
    fi
    report+=("$(printf '%-16s %9s ops %6s failed %5ss  violations %s  backends judged %s, max growth after warm-up %s KB  %s' \
        "$level" "${processed:-?}" "${failed:-?}" $((SECONDS - t0)) "${inv:-?}" "${judged:-0}" "${max_growth:-?}" "$ok")")
done

echo
echo "soak: $total_ops operations in $((SECONDS - t_all)) s, $SOAK_CLIENTS clients, $(postgres_version="$("$BINDIR/postgres" -V)"; echo "$postgres_version")"
printf '  %s\n' "${report[@]}"
cluster_psql -Atc "SELECT 'rows: ' || (SELECT count(*) FROM bidguard_bids) || ' bids, '
                 || (SELECT count(*) FROM bidguard_trades) || ' trades, '
                 || (SELECT count(*) FROM bidguard_events) || ' events'"
exit "$status"
