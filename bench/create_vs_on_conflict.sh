#!/usr/bin/env bash
# bench/create_vs_on_conflict.sh — bidguard_create_bid against
# INSERT ... ON CONFLICT DO NOTHING on the same table, interleaved A B A B,
# for each posting count.  Runs against the server libpq's environment names
# (PGHOST, PGPORT, PGDATABASE); the database must have the extension.
#
#   CLIENTS=16 SECONDS_PER_RUN=10 ROUNDS=3 POSTINGS="100 1000000" bench/create_vs_on_conflict.sh
#
# Prints one line per run and a median ratio per posting count.  The table
# is emptied before every run so that each starts from the same state.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clients=${CLIENTS:-16}
seconds=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
postings=${POSTINGS:-"100 1000000"}
threads=$(( clients < 2 ? 1 : 2 ))

run() {	# $1 = script, $2 = postings  -> prints tps
    psql -X -q -c "TRUNCATE bidguard_bids, bidguard_events" -c "VACUUM ANALYZE bidguard_bids, bidguard_events" >/dev/null
    pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" -D postings="$2" \
        -f "$here/$1" 2>/dev/null | awk '/^tps = /{print $3}'
}

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for n in $postings; do
    a=(); b=()
    for ((r = 1; r <= rounds; r++)); do
        ta=$(run create_bid.pgbench "$n"); a+=("$ta")
        tb=$(run on_conflict.pgbench "$n"); b+=("$tb")
        printf 'postings=%-8s round=%d  bidguard_create_bid %10.0f tps   on_conflict %10.0f tps\n' "$n" "$r" "$ta" "$tb"
    done
    ma=$(printf '%s\n' "${a[@]}" | median); mb=$(printf '%s\n' "${b[@]}" | median)
    printf 'postings=%-8s median bidguard_create_bid %.0f tps, on_conflict %.0f tps, ratio %.2f\n' \
        "$n" "$ma" "$mb" "$(echo "$ma / $mb" | bc -l)"
done
