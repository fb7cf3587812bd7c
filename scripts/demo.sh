#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: the two races bidguard guards against, each
# without and with bidguard: duplicate bids, then double trades.
#
# Part 1, duplicate bids. Scanner workers watch a marketplace feed; every posting they see
# gets one bid. The incident (shared/background/bid-deduplication-writeup.md) did
# "is there an active bid for this posting? (SELECT ... FOR UPDATE) if not, INSERT
# one". FOR UPDATE only locks rows that exist: while a posting has no bid yet,
# every scanner that asks is told "no", and each inserts its own bid.
#
# The demo runs the same pgbench workload twice on a throwaway cluster:
#   1. naive   — the incident's check-then-insert on a plain `bids` table
#                (demo/schema.sql, demo/naive.pgbench);
#   2. guarded — the check-then-insert replaced by bidguard_create_bid()
#                (demo/guarded.pgbench).
# Same clients, same duration, same feed of postings, same evaluation pause.
# Then it counts, with SQL, the postings left with more than one active bid, and
# checks bidguard's invariant and audit trail.
#
# Part 2, double trades. Trading workers evaluate bots; a bot may trade once per
# cooldown. The incident (shared/background/double-trade-writeup.md): two Celery
# workers both asked "is this bot's last trade (max of coalesce(filled_at,
# created_at)) older than its cooldown?", both were told yes, and both traded,
# 0.09-0.82 s apart. The trade being placed is not in the table until the
# exchange has answered, so every worker that asks meanwhile passes the check.
# Two more pgbench runs, on the same cluster:
#   3. naive   — check, place the order (the exchange call: a pause), INSERT the
#                trade, on plain `bots` and `trades` tables
#                (demo/trade_schema.sql, demo/trade_naive.pgbench);
#   4. guarded — BEGIN; bidguard_try_trade(bot, '{}', '0'); the same exchange
#                call with the bot's lock held; bidguard_fill_trade(); COMMIT
#                (demo/trade_guarded.pgbench).
# Same workers, same duration, same bots and cooldown, same exchange pause, and
# the same short random wait between a worker's evaluations (its other tasks).
# Then it counts, with SQL, the pairs of consecutive trades of a bot closer than
# the cooldown, shows the smallest gaps between a bot's trades, and checks
# bidguard's own audit view and trail. Every number printed is measured in this
# run.
#
# Exit status: 0 when both naive runs produced their race and both guarded runs
# none; 1 when a guarded run has a duplicate bid or a trade inside the cooldown,
# a row without its creation event, or made nothing at all, or a naive run
# happened to show no race (rerun with more clients or seconds); 2 on a usage
# error.
#
# Usage: scripts/demo.sh [--quick]          (make demo [DEMO_ARGS=--quick])
#   --quick            2-second runs instead of 5
# Environment:
#   DEMO_SECONDS       length of each run in seconds (default 5; 2 with --quick)
#   DEMO_CLIENTS       concurrent scanners and trading workers, i.e. pgbench
#                      clients (default 16)
#   DEMO_POSTINGS      postings listed on the feed at a time (default 20)
#   DEMO_BOTS          bots the trading workers evaluate (default 4)
#   DEMO_COOLDOWN_MS   each bot's cooldown in milliseconds (default 1000; at
#                      most half a run, so that a guarded bot trades twice)
#   PG_CONFIG          which PostgreSQL to build against and run (default pg_config)

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
	sed -n 's/^# \{0,1\}//; /^Usage:/,/^ *PG_CONFIG/p' "${BASH_SOURCE[0]}"
}

die() {
	echo "demo: $*" >&2
	exit 2
}

quick=0
for arg in "$@"; do
	case $arg in
		--quick) quick=1 ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $arg" ;;
	esac
done

if ((quick)); then default_seconds=2; else default_seconds=5; fi
seconds=${DEMO_SECONDS:-$default_seconds}
clients=${DEMO_CLIENTS:-16}
postings=${DEMO_POSTINGS:-20}
bots=${DEMO_BOTS:-4}
cooldown_ms=${DEMO_COOLDOWN_MS:-1000}
for knob in seconds clients postings bots cooldown_ms; do
	[[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "DEMO_${knob^^} must be a positive integer, not '${!knob}'"
done
((seconds <= 60)) || die "DEMO_SECONDS is at most 60"
((clients <= 100)) || die "DEMO_CLIENTS is at most 100 (the cluster allows 150 connections)"
((bots <= 1000)) || die "DEMO_BOTS is at most 1000"
((cooldown_ms * 2 <= seconds * 1000)) ||
	die "DEMO_COOLDOWN_MS is at most half a run ($((seconds * 500)) ms with $seconds-second runs)"

feed_ms=100      # a fresh batch of $postings postings is listed every 100 ms
pause=0.001      # seconds a scanner spends evaluating a posting, in both bid runs
exchange=0.05    # seconds the exchange takes to place an order, in both trade runs
think_ms=50      # a trading worker waits 0..50 ms between two evaluations
cooldown=$(printf '%d.%03d' $((cooldown_ms / 1000)) $((cooldown_ms % 1000)))   # seconds
threads=$((clients < 2 ? clients : 2))

step() {
	printf '\n==> %s\n' "$*"
}

# --- 1. dependencies, build, install -----------------------------------------

step "dependencies (scripts/deps.sh)"
DEPS_VERBOSE=1 "$root/scripts/deps.sh"

export PG_CONFIG=${PG_CONFIG:-pg_config}

step "build and install (make && make install)"
make -C "$root" -s --no-print-directory
make -C "$root" -s --no-print-directory install
echo "built bidguard.so; installed into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"

# --- 2. a throwaway cluster --------------------------------------------------

# cluster_start creates the cluster in a fresh temp directory, exports PGHOST,
# PGPORT, PGUSER, and installs EXIT/INT/TERM/HUP traps that stop the server and
# remove the directory, so an interrupted demo leaves nothing behind.
# shellcheck source-path=SCRIPTDIR source=cluster.sh
. "$root/scripts/cluster.sh"

step "throwaway cluster (scripts/cluster.sh)"
# shellcheck disable=SC2119  # no extra postgresql.conf lines
cluster_start
work=$(cluster_mkdir demo)   # pgbench logs; removed with the cluster
pgbench=$CLUSTER_BINDIR/pgbench
psql=(cluster_psql)

export PGDATABASE=bidguard_demo
"${psql[@]}" -d postgres -c "CREATE DATABASE bidguard_demo"
"${psql[@]}" -c "CREATE EXTENSION bidguard"
"${psql[@]}" -f "$root/demo/schema.sql"
"${psql[@]}" -v bots="$bots" -v cooldown="$cooldown s" -f "$root/demo/trade_schema.sql"
echo "database bidguard_demo: extension bidguard $("${psql[@]}" -A -t -c "SELECT extversion FROM pg_extension WHERE extname = 'bidguard'"), naive tables bids, bots and trades"
echo "$bots bots with a cooldown of $cooldown s, in bots and registered with bidguard_set_cooldown()"

# --- 3. the runs -------------------------------------------------------------

# run NAME LABEL SCRIPT DESCRIPTION PGBENCH_ARG...: pgbench SCRIPT, leaving its
# output in $work/NAME.log and setting NAME_transactions and NAME_tps from it.
run() {
	local name=$1 label=$2 script=$3 description=$4 log=$work/$1.log
	shift 4
	step "$label run: $description"
	if ! "$pgbench" -n -M prepared -c "$clients" -j "$threads" -T "$seconds" \
		"$@" -f "$script" >"$log" 2>&1; then
		cat "$log" >&2
		echo "demo: pgbench failed in the $label run" >&2
		exit 1
	fi
	local transactions tps
	transactions=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log")
	[[ -n $transactions && -n $tps ]] || {
		cat "$log" >&2
		echo "demo: could not read the $label run's pgbench summary" >&2
		exit 1
	}
	printf -v "${name}_transactions" '%s' "$transactions"
	printf -v "${name}_tps" '%.0f' "$tps"
	echo "$transactions transactions, $(printf '%.0f' "$tps") tps"
}

# count NAME TABLE: set NAME_bids, NAME_postings, NAME_dup_postings, NAME_surplus.
count() {
	local name=$1 line
	line=$("${psql[@]}" -A -t -v tbl="$2" -f "$root/demo/count.sql")
	IFS='|' read -r "${name}_bids" "${name}_postings" "${name}_dup_postings" "${name}_surplus" <<<"$line"
}

# count_trades NAME RUN TRADES BOTS: set NAME_trades, NAME_violations,
# NAME_violating_bots, NAME_executed, NAME_cooldown, NAME_busy, NAME_gap1..3
# (RUN is the run's name in trade_outcomes).
count_trades() {
	local name=$1 line
	line=$("${psql[@]}" -A -t -v run="$2" -v trades="$3" -v bots="$4" -f "$root/demo/trade_count.sql")
	IFS='|' read -r "${name}_trades" "${name}_violations" "${name}_violating_bots" \
		"${name}_executed" "${name}_cooldown" "${name}_busy" \
		"${name}_gap1" "${name}_gap2" "${name}_gap3" <<<"$line"
}

# stats COLUMNS: bidguard's shared-memory statistics (spec section 7) as one
# space-separated line; fails with the server's message when unavailable.
stats() {
	"${psql[@]}" -A -t -F ' ' -c "SELECT $1 FROM bidguard_stats" 2>&1
}

naive_transactions='' naive_tps='' naive_bids='' naive_postings='' naive_dup_postings='' naive_surplus=''
guarded_transactions='' guarded_tps='' guarded_bids='' guarded_postings='' guarded_dup_postings='' guarded_surplus=''
tnaive_transactions='' tnaive_tps='' tnaive_trades='' tnaive_violations='' tnaive_violating_bots=''
tnaive_executed='' tnaive_cooldown='' tnaive_busy='' tnaive_gap1='' tnaive_gap2='' tnaive_gap3=''
tguarded_transactions='' tguarded_tps='' tguarded_trades='' tguarded_violations='' tguarded_violating_bots=''
tguarded_executed='' tguarded_cooldown='' tguarded_busy='' tguarded_gap1='' tguarded_gap2='' tguarded_gap3=''

bid_run=("$clients scanners, $seconds s, $postings live postings, $pause s evaluation pause"
	-D postings="$postings" -D feed_ms="$feed_ms" -D pause="$pause")
trade_run=("$clients workers, $seconds s, $bots bots, $cooldown s cooldown, $exchange s exchange call"
	-D bots="$bots" -D exchange="$exchange" -D think_ms="$think_ms")

# Part 1: duplicate bids.
run naive naive "$root/demo/naive.pgbench" "${bid_run[@]}"
count naive bids
run guarded guarded "$root/demo/guarded.pgbench" "${bid_run[@]}"
count guarded bidguard_bids

invariant_sql=$(grep -v '^--' "$root/demo/invariant.sql")
invariant=$("${psql[@]}" -A -t -F ' ' -c "$invariant_sql")
bid_stats_ok=1
bid_stats=$(stats "bids_created, bids_deduplicated, lock_waited, round(lock_wait_max_ms::numeric, 1)") || bid_stats_ok=0

# Part 2: double trades.
run tnaive "naive trade" "$root/demo/trade_naive.pgbench" "${trade_run[@]}"
count_trades tnaive naive trades bots
run tguarded "guarded trade" "$root/demo/trade_guarded.pgbench" "${trade_run[@]}"
count_trades tguarded guarded bidguard_trades bidguard_bots

trade_invariant_sql=$(grep -v '^--' "$root/demo/trade_invariant.sql")
trade_invariant=$("${psql[@]}" -A -t -F ' ' -c "$trade_invariant_sql")
trade_stats_ok=1
trade_stats=$(stats "trades_executed, trades_rejected_cooldown, trades_rejected_busy") || trade_stats_ok=0

# --- 4. the report -----------------------------------------------------------

row() {
	printf '  %-42s %18s %18s\n' "$@"
}

step "report, part 1: duplicate bids"
echo "Each scanner loop picks one of the $postings postings listed on the feed (a fresh batch every"
echo "$feed_ms ms), evaluates it for $pause s, and bids unless the posting has an active bid."
echo
row "" "naive" "bidguard"
row "" "check-then-insert" "create_bid()"
row "clients (scanners)" "$clients" "$clients"
row "duration (s)" "$seconds" "$seconds"
row "transactions (pgbench)" "$naive_transactions" "$guarded_transactions"
row "throughput (tps)" "$naive_tps" "$guarded_tps"
row "postings bid on" "$naive_postings" "$guarded_postings"
row "bids created" "$naive_bids" "$guarded_bids"
row "postings with more than one active bid" "$naive_dup_postings" "$guarded_dup_postings"
row "duplicate active bids (surplus rows)" "$naive_surplus" "$guarded_surplus"

echo
echo "Invariant and audit trail of the guarded table:"
echo "  $invariant_sql"
read -r one_active every_event <<<"$invariant"
echo "  -> at most one active bid per posting: $one_active; every bid has its bid_created event: $every_event"

if ((bid_stats_ok)); then
	read -r created deduplicated waited wait_max <<<"$bid_stats"
	echo "  bidguard_stats: $created bids created, $deduplicated calls given the posting's existing bid,"
	echo "                  $waited lock waits behind a concurrent creator (longest ${wait_max} ms)"
else
	echo "  (bidguard_stats unavailable: $(head -n 1 <<<"${bid_stats#*ERROR:  }"))"
fi

step "report, part 2: double trades"
echo "Each worker loop waits 0-$think_ms ms, picks one of the $bots bots and checks its cooldown ($cooldown s):"
echo "has it traded within the cooldown? If not, it places the order (the exchange call takes"
echo "$exchange s) and records the trade. bidguard holds the bot's lock from the check to COMMIT."
echo
row "" "naive" "bidguard"
row "" "check-then-trade" "try_trade()"
row "clients (workers)" "$clients" "$clients"
row "duration (s)" "$seconds" "$seconds"
row "evaluations (pgbench transactions)" "$tnaive_transactions" "$tguarded_transactions"
row "throughput (evaluations/s)" "$tnaive_tps" "$tguarded_tps"
row "trades executed" "$tnaive_trades" "$tguarded_trades"
row "evaluations refused: cooldown" "$tnaive_cooldown" "$tguarded_cooldown"
row "evaluations refused: busy (trade under way)" "-" "$tguarded_busy"
row "trade pairs closer than the cooldown" "$tnaive_violations" "$tguarded_violations"
row "bots with such a pair" "$tnaive_violating_bots" "$tguarded_violating_bots"
row "smallest gaps between a bot's trades (s)" "$tnaive_gap1" "$tguarded_gap1"
row "" "$tnaive_gap2" "$tguarded_gap2"
row "" "$tnaive_gap3" "$tguarded_gap3"
echo "  (the incident's double trades were 0.09-0.82 s apart. A gap is measured between effective"
echo "  times, coalesce(filled_at, created_at); with bidguard the next trade is admitted a cooldown"
echo "  after the previous one filled at the earliest, and fills an exchange call later.)"

echo
echo "Invariant and audit trail of the guarded table:"
echo "  $trade_invariant_sql"
read -r no_violation every_trade_event <<<"$trade_invariant"
echo "  -> bidguard_cooldown_violations is empty: $no_violation; every trade has its trade_executed event: $every_trade_event"

if ((trade_stats_ok)); then
	read -r executed rejected_cooldown rejected_busy <<<"$trade_stats"
	echo "  bidguard_stats: $executed trades executed, $rejected_cooldown refused in the cooldown, $rejected_busy refused as busy"
else
	echo "  (bidguard_stats unavailable: $(head -n 1 <<<"${trade_stats#*ERROR:  }"))"
fi

# --- 5. the verdict ----------------------------------------------------------

echo
status=0
if ((guarded_surplus > 0)) || [[ $one_active != t || $every_event != t ]]; then
	echo "FAIL: bidguard let a duplicate active bid through, or a bid lacks its creation event."
	status=1
fi
if ((guarded_bids == 0)); then
	echo "FAIL: the guarded run created no bids at all."
	status=1
fi
if ((tguarded_violations > 0)) || [[ $no_violation != t || $every_trade_event != t ]]; then
	echo "FAIL: bidguard let a trade through inside the cooldown, or a trade lacks its admission event."
	status=1
fi
if ((tguarded_trades == 0)); then
	echo "FAIL: the guarded trade run executed no trades at all."
	status=1
fi
# Every iteration logs its outcome in its own transaction: the counts must agree.
if ((tnaive_executed != tnaive_trades || tnaive_busy != 0 || tguarded_executed != tguarded_trades)); then
	echo "FAIL: the trade outcomes logged ($tnaive_executed, $tguarded_executed executed) disagree with the trades tables ($tnaive_trades, $tguarded_trades rows)."
	status=1
fi
if ((naive_surplus == 0)); then
	echo "INCONCLUSIVE: the naive bid run hit no race this time, so it shows nothing to stop."
	status=1
fi
if ((tnaive_violations == 0)); then
	echo "INCONCLUSIVE: the naive trade run hit no race this time, so it shows nothing to stop."
	status=1
fi
if ((naive_surplus == 0 || tnaive_violations == 0)); then
	((clients > 1)) || echo "With DEMO_CLIENTS=1 there is no concurrency, hence no race."
	echo "Rerun with more clients or time, e.g. DEMO_CLIENTS=32 DEMO_SECONDS=10 make demo."
fi
if ((status == 0)); then
	echo "OK: the naive scanners left $naive_surplus duplicate active bids on $naive_dup_postings of $naive_postings postings;"
	echo "    with bidguard_create_bid(), $guarded_postings postings got exactly one active bid each."
	echo "OK: the naive workers traded $tnaive_violations times inside a bot's cooldown (smallest gap $tnaive_gap1 s);"
	echo "    with bidguard_try_trade(), $tguarded_trades trades, none closer than $cooldown s (smallest gap $tguarded_gap1 s)."
fi
exit "$status"
