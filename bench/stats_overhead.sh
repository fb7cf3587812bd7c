#!/usr/bin/env bash
# bench/stats_overhead.sh — the cost of counting: bidguard_create_bid with
# bidguard.track_stats on and off, interleaved, on a throwaway cluster.
#   SECONDS_PER_RUN (8), ROUNDS (3), CLIENTS (16), POSTINGS ("100 1000000")
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
secs=${SECONDS_PER_RUN:-8} rounds=${ROUNDS:-3} clients=${CLIENTS:-16}
postings=${POSTINGS:-"100 1000000"}
cluster_start "synchronous_commit = off" "fsync = off" "max_connections = 100"
cluster_psql -c 'CREATE DATABASE bench'
export PGDATABASE=bench
cluster_psql -c 'CREATE EXTENSION bidguard' -f bench/peers.sql >/dev/null
for n in $postings; do
    for ((r = 1; r <= rounds; r++)); do
        for mode in on off; do
            psql -Xq -f bench/reset.sql >/dev/null
            t=$(PGOPTIONS="-c bidguard.track_stats=$mode" pgbench -n -M prepared -c "$clients" -j 2 \
                    -T "$secs" -D postings="$n" -f bench/create_bid.pgbench 2>/dev/null |
                awk '/^tps = /{print $3}')
            printf 'postings=%-8s round=%d track_stats=%-3s %9.0f tps\n' "$n" "$r" "$mode" "$t"
        done
    done
done
