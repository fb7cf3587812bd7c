#!/usr/bin/env bash
# bench/scale.sh — how bidguard's throughput changes with the size of its
# tables: bidguard_create_bid and bidguard_try_trade with N pre-populated bids
# and N pre-populated trades (and their 2N events), for each N in SIZES, on a
# throwaway cluster (scripts/cluster.sh).
#
#   SIZES="10000 1000000 10000000" SECONDS_PER_RUN=8 ROUNDS=3 bench/scale.sh
#
# Pre-populated rows (bench/scale_load_bids.sql, bench/scale_load_trades.sql):
# N bids over N postings of marketplace 'scale', 90% terminal, 10% active;
# N trades of bots 1..BOTS (1,000,000; registered with bidguard_set_cooldown, 1 s), a
# minute apart per bot, in the past, 98% filled; each row with the creation
# event its INSERT would have written.  Loaded with the triggers off
# (session_replication_role = replica), bids and trades in two sessions at
# once; the sizes grow in place (10k, then 990k more, then 9M more), each
# load followed by VACUUM ANALYZE and a check of the invariants
# (bench/scale_check.sql).
#
# Measured, 16 clients, prepared statements, alternating (A B A B ...), after
# an unmeasured warm-up run of each:
#   create_bid  bench/create_bid.pgbench: postings drawn from 10^9 in marketplace
#               'bench', so nearly every call inserts a new bid (and its event)
#               into the big tables and their indexes;
#   try_trade   bench/try_trade.pgbench over bots 1..BOTS, the very bots whose
#               history was loaded: each call reads the bot's range of the
#               cooldown index among N/BOTS past trades of that bot (none
#               inside the 1 s window), and each admission inserts into the big
#               tables.  About half the calls are admitted at ~10k tps; the share
#               is printed, since a refusal costs less than an admission.
#               (Fresh bots would find empty key ranges in the cooldown index
#               and meet none of the history: they would measure less of N.)
# Before every run bench/scale_reset.sql deletes what earlier runs added
# (ids above N; triggers off), VACUUMs and checkpoints.  Each run's line shows
# the sequential scans of bidguard's tables during it (the functions' paths
# should use indexes only), index scans per transaction, and blocks read from
# outside shared_buffers per transaction (misses).
#
# Alongside: this machine's speed may drift during a run (other work on a
# shared host), which would pass for an effect of size.  So at every size
# after the first, each run on the grown database is followed by the same run
# on a second database that keeps the first size, and "alongside" is the
# ratio of the two medians: size N against the first size, measured in the
# same minutes.  ALONGSIDE=0 skips those runs.
#
# Prints a table of median tps (min–max) per size, its ratio to the first
# (smallest) size's row, and the alongside ratio; writes SCALE_TSV (default
# bench/results/scale.tsv, relative to the repository), columns size,
# workload, median, min, max, for the grown database's runs (bench/report.sh
# reads it).
#
# Settings: SIZES, SECONDS_PER_RUN (8), ROUNDS (3), WARMUP_SECONDS (4),
# CLIENTS (16), BOTS (1000000), ALONGSIDE (1), SHARED_BUFFERS (unset:
# cluster.sh's 128MB), SCALE_TSV, CHECK_COOLDOWN (0; 1 = also count
# bidguard_cooldown_violations after each load, which takes long at 10M).
# Autovacuum is off: the resets vacuum, and an autovacuum that starts at one
# size and not at another would be noise.  Time and disk on a 2-core machine:
# loading takes ~30 s per million bid+trade pairs (4.5 min for 10M), the data
# ~0.75 kB a pair (7.4 GB at 10M, ~11 GB at the peak with the WAL); the whole
# default run took 11 min.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh

sizes=$(tr ' ' '\n' <<<"${SIZES:-10000 1000000 10000000}" | grep . | sort -n -u | xargs)
secs=${SECONDS_PER_RUN:-8} rounds=${ROUNDS:-3} clients=${CLIENTS:-16} bots=${BOTS:-1000000}
warmup=${WARMUP_SECONDS:-4} alongside=${ALONGSIDE:-1}
tsv=${SCALE_TSV:-bench/results/scale.tsv}
postings=1000000000
threads=$(( clients < 2 ? 1 : 2 ))
for v in $sizes $secs $rounds $clients $bots $warmup; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "scale.sh: SIZES and the counts must be integers" >&2; exit 2; }
done
[ -n "$sizes" ] && [ "${sizes%% *}" -ge 1 ] || { echo "scale.sh: SIZES must be positive" >&2; exit 2; }
first=${sizes%% *} largest=${sizes##* }
nsizes=$(wc -w <<<"$sizes")

# A rough budget, from this 2-core machine: loading ~30 s per million pairs;
# a run costs its seconds, ~3 s of reset and ~1 s more per million rows.
est_load=$(( largest * 30 / 1000000 + 5 * nsizes ))
est_runs=0
for n in $sizes; do
    per=$(( rounds * 2 ))
    [ "$alongside" = 1 ] && [ "$n" != "$first" ] && per=$(( per * 2 ))
    est_runs=$(( est_runs + per * (secs + 4 + n / 1000000) + 2 * (warmup + 4 + n / 1000000) ))
done
need_kb=$(( largest * 3 / 4 + 5 * 1024 * 1024 ))     # 0.75 kB a pair, plus WAL
base=${CLUSTER_TMPBASE:-/tmp}
avail_kb=$(df -Pk "$base" | awk 'NR == 2 {print $4}')
echo "scale: sizes $sizes; $clients clients, $secs s per run, $rounds rounds, $bots bots"
echo "scale: estimate ~$(( (est_load + est_runs + 59) / 60 )) min ($est_load s loading, $est_runs s" \
     "runs and resets); needs ~$(( need_kb / 1024 / 1024 + 1 )) GB on $base, $(( avail_kb / 1024 / 1024 )) GB free"
if [ "$avail_kb" -lt "$need_kb" ]; then
    echo "scale: not enough free disk on $base for $largest rows; lower SIZES" >&2
    exit 1
fi
# Is the machine busy with other work?  CPU time not idle over 2 s, in %.
busy_pct() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 2
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " ");
        t = (y[1] - x[1]) + (y[2] - x[2]); printf "%d", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'
}
busy=$(busy_pct)
if [ "$busy" -gt 20 ]; then
    echo "scale: warning: the CPUs are ${busy}% busy before the cluster starts: other work is" \
         "running, and the figures will show it"
fi

conf=("synchronous_commit = off" "fsync = off" "max_connections = 100"
      "autovacuum = off" "max_wal_size = 4GB" "checkpoint_timeout = 30min"
      "maintenance_work_mem = 256MB")
[ -z "${SHARED_BUFFERS:-}" ] || conf+=("shared_buffers = $SHARED_BUFFERS")
cluster_start "${conf[@]}"

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN {print b - a}'; }

# grow DB FROM TO: load bids and trades FROM..TO into DB, two sessions at once
grow() {
    local db=$1 from=$2 to=$3 pid_bids pid_trades
    PGDATABASE=$db q -v from="$from" -v to="$to" -v anchor="$anchor" -f bench/scale_load_bids.sql &
    pid_bids=$!
    PGDATABASE=$db q -v from="$from" -v to="$to" -v bots="$bots" -v anchor="$anchor" \
        -f bench/scale_load_trades.sql &
    pid_trades=$!
    wait "$pid_bids" || { echo "scale: loading bids failed" >&2; return 1; }
    wait "$pid_trades" || { echo "scale: loading trades failed" >&2; return 1; }
}
# settle DB N: sequences after the N loaded rows, VACUUM ANALYZE, checkpoint
settle() {
    PGDATABASE=$1 q -c "SELECT setval(pg_get_serial_sequence('bidguard_bids', 'bid_id'), $2),
                               setval(pg_get_serial_sequence('bidguard_trades', 'trade_id'), $2)" >/dev/null
    PGDATABASE=$1 q -c 'VACUUM (ANALYZE) bidguard_bids, bidguard_trades, bidguard_events, bidguard_bots' \
        -c 'CHECKPOINT'
}
reset() { PGDATABASE=$1 q -v n="$2" -f bench/scale_reset.sql; }

# Sequential scans, index scans and blocks read from outside shared_buffers
# (misses) of bidguard's tables and their indexes in DB so far.
counters() {
    PGDATABASE=$1 q -F ' ' -c "
        SELECT coalesce(sum(t.seq_scan), 0), coalesce(sum(t.idx_scan), 0),
               coalesce(sum(coalesce(io.heap_blks_read, 0) + coalesce(io.idx_blks_read, 0)), 0)
          FROM pg_stat_user_tables AS t JOIN pg_statio_user_tables AS io USING (relid)
         WHERE t.relname IN ('bidguard_bids', 'bidguard_events', 'bidguard_trades', 'bidguard_bots')"
}
# what bidguard_try_trade decided so far (the counters are the server's)
decisions() {
    q -F ' ' -c "SELECT trades_executed, trades_rejected_cooldown, trades_rejected_busy FROM bidguard_stats"
}

# run DB WORKLOAD SECONDS: one pgbench run; prints its output
run() {
    local args
    if [ "$2" = create_bid ]; then
        args=(-D postings=$postings -f bench/create_bid.pgbench)
    else
        args=(-D bots="$bots" -f bench/try_trade.pgbench)
    fi
    PGDATABASE=$1 pgbench -n -M prepared -c "$clients" -j "$threads" -T "$3" "${args[@]}" 2>&1
}

# measure DB N WORKLOAD LABEL: reset, run, print a line; sets $tps
measure() {
    local db=$1 n=$2 w=$3 label=$4 out seq0 idx0 rd0 seq1 idx1 rd1 ex0 cd0 busy0 ex1 cd1 busy1
    local failed xacts extra=""
    reset "$db" "$n"
    read -r seq0 idx0 rd0 < <(counters "$db")
    read -r ex0 cd0 busy0 < <(decisions)
    out=$(run "$db" "$w" "$secs") || { echo "$out" >&2; echo "scale: pgbench failed" >&2; exit 1; }
    sleep 1     # the clients' statistics reach the server's counters as they exit
    read -r seq1 idx1 rd1 < <(counters "$db")
    read -r ex1 cd1 busy1 < <(decisions)
    tps=$(awk '/^tps = /{print $3}' <<<"$out")
    [ -n "$tps" ] || { echo "$out" >&2; echo "scale: no tps from pgbench" >&2; exit 1; }
    failed=$(awk '/number of failed transactions/{print $5}' <<<"$out")
    xacts=$(awk '/number of transactions actually processed/{print $6}' <<<"$out")
    xacts=${xacts:-1}
    if [ "$w" = try_trade ]; then
        local tot=$(( ex1 - ex0 + cd1 - cd0 + busy1 - busy0 ))
        [ "$tot" -gt 0 ] || tot=1
        extra=$(printf ', admitted %d%%' $(( 100 * (ex1 - ex0) / tot )))
        [ $(( 100 * (busy1 - busy0) / tot )) = 0 ] || extra+=$(printf ', busy %d%%' $(( 100 * (busy1 - busy0) / tot )))
    fi
    printf '  %-16s round %d  %-10s %7.0f tps   seq scans %d, index scans/xact %.1f, misses/xact %.2f%s%s\n' \
        "$label" "$r" "$w" "$tps" $((seq1 - seq0)) \
        "$(awk -v a=$((idx1 - idx0)) -v x="$xacts" 'BEGIN {print a / x}')" \
        "$(awk -v a=$((rd1 - rd0)) -v x="$xacts" 'BEGIN {print a / x}')" "$extra" \
        "$([ "${failed:-0}" = 0 ] || echo "  ($failed failed)")"
}

# median, min and max of the numbers given
stats() {
    tr ' ' '\n' <<<"$*" | grep . | sort -g |
        awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.0f %.0f %.0f\n", m, a[1], a[NR]}'
}

for db in bench ref; do
    [ "$db" = bench ] || { [ "$alongside" = 1 ] && [ "$nsizes" -gt 1 ]; } || continue
    cluster_psql -c "CREATE DATABASE $db"
    PGDATABASE=$db cluster_psql -c 'CREATE EXTENSION bidguard' \
        -c "SELECT bidguard_set_cooldown(b, '1 second') FROM generate_series(1, $bots) AS b" >/dev/null
done
export PGDATABASE=bench
anchor=$(q -c "SELECT date_trunc('day', now() - interval '400 days')")
echo "PostgreSQL $(q -c 'SHOW server_version'); $(nproc) cores; shared_buffers=$(q -c 'SHOW shared_buffers');" \
     "synchronous_commit=off fsync=off autovacuum=off"
if [ "$alongside" = 1 ] && [ "$nsizes" -gt 1 ]; then
    grow ref 1 "$first" && settle ref "$first"
    echo "alongside: database ref keeps $first bids and $first trades"
fi

loaded=0
declare -A result       # [size,workload] = "median min max"; [size,workload,ref] = the same, alongside
mkdir -p "$(dirname "$tsv")"
printf 'size\tworkload\tmedian\tmin\tmax\n' >"$tsv.tmp"

for n in $sizes; do
    # 1. grow the tables from $loaded to $n rows each
    from=$((loaded + 1))
    t0=$(date +%s.%N)
    grow bench "$from" "$n"
    t1=$(date +%s.%N)
    settle bench "$n"
    t2=$(date +%s.%N)
    check=$(q -F ' ' -v from=$from -v to="$n" -f bench/scale_check.sql)
    t3=$(date +%s.%N)
    printf 'size %s: loaded %s bids and %s trades (+%s events) in %.0f s, VACUUM ANALYZE %.0f s; database %s\n' \
        "$n" "$((n - loaded))" "$((n - loaded))" "$((2 * (n - loaded)))" \
        "$(secs_between "$t0" "$t1")" "$(secs_between "$t1" "$t2")" \
        "$(q -c "SELECT pg_size_pretty(pg_database_size('bench'))")"
    printf '  check (%.0f s): dup_active bids_no_event trades_no_event bad_fill early_trades = %s\n' \
        "$(secs_between "$t2" "$t3")" "$check"
    [ "$check" = "0 0 0 0 0" ] || { echo "scale: the loaded rows break an invariant" >&2; exit 1; }
    if [ "${CHECK_COOLDOWN:-0}" = 1 ]; then
        echo "  cooldown violations: $(q -c 'SELECT count(*) FROM bidguard_cooldown_violations')"
    fi
    loaded=$n
    with_ref=0
    [ "$alongside" = 1 ] && [ "$n" != "$first" ] && with_ref=1

    # 2. measure, alternating the workloads (each followed by its run on ref)
    if [ "$warmup" -gt 0 ]; then
        for w in create_bid try_trade; do
            reset bench "$n"
            run bench "$w" "$warmup" >/dev/null || { echo "scale: pgbench failed" >&2; exit 1; }
            [ "$with_ref" = 0 ] || { reset ref "$first"; run ref "$w" "$warmup" >/dev/null ||
                                     { echo "scale: pgbench failed" >&2; exit 1; }; }
        done
    fi
    declare -A runs=()
    for ((r = 1; r <= rounds; r++)); do
        for w in create_bid try_trade; do
            measure bench "$n" "$w" "$n rows"
            runs[$w]+="$tps "
            if [ "$with_ref" = 1 ]; then
                measure ref "$first" "$w" "  ref $first"
                runs[$w,ref]+="$tps "
            fi
        done
    done
    for w in create_bid try_trade; do
        result[$n,$w]=$(stats "${runs[$w]}")
        read -r med lo hi <<<"${result[$n,$w]}"
        printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$w" "$med" "$lo" "$hi" >>"$tsv.tmp"
        [ "$with_ref" = 0 ] || result[$n,$w,ref]=$(stats "${runs[$w,ref]}")
    done
    unset runs
    # back to the n pre-populated rows before growing them
    [ "$n" = "$largest" ] || reset bench "$n"
done
mv "$tsv.tmp" "$tsv"

echo
printf '%-10s  %-24s %-6s %-10s  %-24s %-6s %-10s\n' "size" "create_bid tps (min–max)" "ratio" "alongside" \
    "try_trade tps (min–max)" "ratio" "alongside"
for n in $sizes; do
    line=$(printf '%-10s' "$n")
    for w in create_bid try_trade; do
        read -r med lo hi <<<"${result[$n,$w]}"
        read -r med0 _ _ <<<"${result[$first,$w]}"
        side=-
        if [ -n "${result[$n,$w,ref]:-}" ]; then
            read -r rmed _ _ <<<"${result[$n,$w,ref]}"
            side=$(awk -v a="$med" -v b="$rmed" 'BEGIN {printf "%.2f", a / b}')
        fi
        line+=$(printf '  %-24s %-6s %-10s' "$med ($lo–$hi)" \
            "$(awk -v a="$med" -v b="$med0" 'BEGIN {printf "%.2f", a / b}')" "$side")
    done
    echo "$line"
done
echo "(ratio: median at that size / median at $first rows, measured earlier;"
echo " alongside: median at that size / median of the same runs on $first rows, interleaved with them;"
echo " results in $tsv)"
