#!/usr/bin/env bash
# bench/ab.sh — two builds of bidguard side by side on one throwaway cluster:
#
#   bash bench/ab.sh OLD_REF [NEW_REF]      git refs; NEW_REF defaults to HEAD
#   AB_SECONDS=8 AB_ROUNDS=3 AB_CLIENTS=16 bash bench/ab.sh v1.0
#
# Each ref is built from `git archive` in a scratch directory.  Each has a
# database made with its own install script; before each of its runs its
# bidguard.so and script are installed into the server (backends load the
# library when they first use it, so every pgbench run gets the one
# installed before it).  The runs are interleaved, A B A B ..., on the same
# cluster (synchronous_commit off, fsync off, no preload), with TRUNCATE and
# CHECKPOINT before each: bidguard_create_bid over 1M postings (mostly
# inserts), bidguard_try_trade over 10k bots with a 1 s cooldown (mostly
# admitted), and a plain INSERT into bidguard_trades (the trigger path).
# Prints each run's tps and the median ratio NEW / OLD.  The current build
# is installed again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
old="${1:?usage: bench/ab.sh OLD_REF [NEW_REF]}"
new="${2:-HEAD}"
secs="${AB_SECONDS:-8}" rounds="${AB_ROUNDS:-3}" clients="${AB_CLIENTS:-16}"
export PG_CONFIG="${PG_CONFIG:-pg_config}"

# shellcheck source=scripts/cluster.sh
. scripts/cluster.sh
CLUSTER_PRELOAD='' cluster_start "synchronous_commit = off" "fsync = off" "max_connections = 100"
scratch="$(cluster_mkdir ab)"
for side in old new; do
    ref="${!side}"
    mkdir -p "$scratch/$side"
    git archive "$ref" | tar -C "$scratch/$side" -xf -
    make -C "$scratch/$side" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >/dev/null
done
lib="$("$PG_CONFIG" --pkglibdir)"
ext="$("$PG_CONFIG" --sharedir)/extension"
use() { # SIDE
    install -m 755 "$scratch/$1/bidguard.so" "$lib/bidguard.so"
    # its control file (its default_version) and every script it has
    install -m 644 "$scratch/$1/bidguard.control" "$scratch/$1"/sql/bidguard--*.sql "$ext/"
}
restore_current() {
    make -s PG_CONFIG="$PG_CONFIG" install >/dev/null 2>&1 || true
}
cluster_at_exit restore_current
for side in old new; do
    use "$side"
    cluster_psql -c "CREATE DATABASE ab_$side"
    cluster_psql -d "ab_$side" -o /dev/null -c 'CREATE EXTENSION bidguard' \
        -c "SELECT bidguard_set_cooldown(b, '1 second') FROM generate_series(1, 10000) AS b"
done
# (a refused row is caught, so that pgbench's client goes on)
cat >"$scratch/insert_trade.pgbench" <<'EOF'
\set bot random(1, :bots)
DO $$BEGIN INSERT INTO bidguard_trades (bot_id) VALUES (:bot); EXCEPTION WHEN exclusion_violation THEN NULL; END$$;
EOF

run() { # SIDE SCRIPT VAR -> tps
    use "$1"
    cluster_psql -d "ab_$1" -q -c 'TRUNCATE bidguard_bids, bidguard_trades, bidguard_events' -c CHECKPOINT
    "$CLUSTER_BINDIR/pgbench" -n -c "$clients" -j 2 -T "$secs" -D "$3" -f "$2" "ab_$1" 2>&1 |
        sed -nE 's/^tps = ([0-9.]+).*/\1/p'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "A/B: old $old ($(git rev-parse --short "$old")), new $new ($(git rev-parse --short "$new"));" \
    "$("$CLUSTER_BINDIR/postgres" -V); $clients clients, $rounds x $secs s, interleaved"
for w in "create_bid $root/bench/create_bid.pgbench postings=1000000" \
    "try_trade $root/bench/try_trade.pgbench bots=10000" \
    "insert_trade $scratch/insert_trade.pgbench bots=10000"; do
    set -- $w
    : >"$scratch/$1.old"
    : >"$scratch/$1.new"
    for ((r = 1; r <= rounds; r++)); do
        for side in old new; do
            tps="$(run "$side" "$2" "$3")"
            echo "$tps" >>"$scratch/$1.$side"
            echo "  $1 round $r $side: $tps tps"
        done
    done
    mo="$(median <"$scratch/$1.old")"
    mn="$(median <"$scratch/$1.new")"
    printf '%-14s old %10.0f tps  new %10.0f tps  new/old %.2fx\n' "$1" "$mo" "$mn" \
        "$(awk -v a="$mn" -v b="$mo" 'BEGIN { print a / b }')"
done
