#!/usr/bin/env bash
# bench/figures.sh — the comparisons quoted in doc/benchmarks.md, on a throwaway
# cluster (scripts/cluster.sh) of this machine:
#   bidguard_create_bid vs INSERT ... ON CONFLICT DO NOTHING, 100 and 1,000,000 postings;
#   bidguard_try_trade vs an exclusion-constraint table vs PL/pgSQL, 10 and 10,000 bots.
# 16 clients, interleaved runs (bench/compare.sh).  Settings: SECONDS_PER_RUN (10),
# ROUNDS (3), CLIENTS (16), SYNC_COMMIT (off: CPU-bound; 'on' for fsync-bound with fsync on).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
secs=${SECONDS_PER_RUN:-10} rounds=${ROUNDS:-3} clients=${CLIENTS:-16}
sync=${SYNC_COMMIT:-off}
fsync=off; [ "$sync" = on ] && fsync=on
cluster_start "synchronous_commit = $sync" "fsync = $fsync" "max_connections = 100"
cluster_psql -c 'CREATE DATABASE bench'
export PGDATABASE=bench
cluster_psql -c 'CREATE EXTENSION bidguard' -f bench/peers.sql >/dev/null
cluster_psql -c "SELECT bidguard_set_cooldown(b, '1 second') FROM generate_series(1, 10000) AS b" >/dev/null
echo "PostgreSQL $(psql -XAtc 'SHOW server_version'); $(nproc) cores; synchronous_commit=$sync fsync=$fsync;" \
     "$clients clients, $secs s per run, $rounds rounds"
for n in 100 1000000; do
    echo "bids, $n postings:"
    bench/compare.sh -c "$clients" -T "$secs" -r "$rounds" -R bench/reset.sql -D postings=$n \
        bidguard_create_bid=bench/create_bid.pgbench on_conflict_do_nothing=bench/on_conflict.pgbench
done
for n in 10 10000; do
    echo "trades, $n bots, cooldown 1 s:"
    bench/compare.sh -c "$clients" -T "$secs" -r "$rounds" -R bench/reset.sql -D bots=$n \
        bidguard_try_trade=bench/try_trade.pgbench exclusion_constraint=bench/exclusion.pgbench \
        plpgsql_advisory_lock=bench/plpgsql_trade.pgbench
done
