#!/usr/bin/env bash
# bench/guarded_insert.sh — the cost of a cooldown guard on an application's
# table: a plain INSERT into a table guarded with bidguard_guard_cooldown,
# against the same table unguarded, and against the same table with the
# guard's index but no trigger.  A throwaway cluster (scripts/cluster.sh),
# interleaved runs (bench/compare.sh).  Settings: SECONDS_PER_RUN (8), ROUNDS
# (3), CLIENTS (16), SYNC_COMMIT (off: CPU-bound; 'on' with fsync on).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
secs=${SECONDS_PER_RUN:-8} rounds=${ROUNDS:-3} clients=${CLIENTS:-16}
sync=${SYNC_COMMIT:-off}
fsync=off; [ "$sync" = on ] && fsync=on
cluster_start "synchronous_commit = $sync" "fsync = $fsync" "max_connections = 100" >/dev/null
cluster_psql -c 'CREATE DATABASE bench'
export PGDATABASE=bench
cluster_psql -c 'CREATE EXTENSION bidguard' -f bench/guarded_insert.sql >/dev/null
echo "PostgreSQL $(psql -XAtc 'SHOW server_version'); $(nproc) cores; synchronous_commit=$sync fsync=$fsync;" \
     "$clients clients, $secs s per run, $rounds rounds"
bench/compare.sh -c "$clients" -T "$secs" -r "$rounds" -R bench/guarded_insert_reset.sql \
    guarded_insert=bench/insert_guarded.pgbench unguarded_insert=bench/insert_plain.pgbench \
    same_index_no_trigger=bench/insert_indexed.pgbench
