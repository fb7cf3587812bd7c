#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: the two incidents bidguard exists for, each run
# by real worker processes, first as the incident's code did it, then through
# bidguard.
#
# The workers are the Python example's (examples/python/bidguard_worker.py):
# scanner processes that bid on every posting of a marketplace feed, and
# trading processes running the double-trade incident's Celery-style task.
# demo/incidents.py runs them with one of two guards, and nothing else differs:
#   none      the incidents' own code on plain tables (demo/schema.sql,
#             demo/trade_schema.sql): "SELECT ... FOR UPDATE the posting's
#             active bid, INSERT one if there is none"; "has the bot traded
#             within its cooldown? if not, place the order and record it";
#   bidguard  bidguard_create_bid(), bidguard_try_trade() & co.
#
# Part 1, duplicate bids: $DEMO_WORKERS scanners, no guard, then bidguard.
# Part 2, double trades:  $DEMO_WORKERS traders, no guard, then bidguard.
# After every run it counts with SQL what the run left: postings with more than
# one active bid; pairs of a bot's trades closer than its cooldown. For the
# guarded runs it also checks bidguard's audit views and trail and shows the
# statistics bidguard kept (reset before each run). Every number printed is
# measured in this run.
#
# Exit status: 0 when both unguarded runs produced their race and both guarded
# runs none; 1 when a guarded run let a duplicate or a violation through, left
# a row without its event, did nothing, or its workers' counts disagree with
# the tables, or when an unguarded run happened to show no race (rerun with
# more workers or seconds); 2 on a usage error.
#
# Usage: scripts/demo.sh [--quick]          (make demo [DEMO_ARGS=--quick])
#   --quick            2-second runs instead of 5 (the whole demo in under a minute)
# Environment:
#   DEMO_SECONDS       length of each run in seconds (default 5; 2 with --quick)
#   DEMO_WORKERS       worker processes per run (default 16)
#   DEMO_POSTINGS      postings listed per feed batch, every 100 ms (default 20)
#   DEMO_BOTS          bots the traders trade (default 4)
#   DEMO_COOLDOWN_MS   each bot's cooldown in milliseconds (default 1000; at
#                      most half a run, so that a guarded bot trades twice)
#   PG_CONFIG          which PostgreSQL to build against and run (default pg_config)
#   PYTHON             a Python 3 with psycopg 3 (default /usr/bin/python3, which
#                      Debian's python3-psycopg is for)

# run(), count() and count_trades() set NAME_* variables by name:
# shellcheck disable=SC2154
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
	sed -n 's/^# \{0,1\}//; /^Usage:/,/^ *PYTHON /p' "${BASH_SOURCE[0]}"
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
workers=${DEMO_WORKERS:-16}
postings=${DEMO_POSTINGS:-20}
bots=${DEMO_BOTS:-4}
cooldown_ms=${DEMO_COOLDOWN_MS:-1000}
for knob in seconds workers postings bots cooldown_ms; do
	[[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "DEMO_${knob^^} must be a positive integer, not '${!knob}'"
done
((seconds <= 60)) || die "DEMO_SECONDS is at most 60"
((workers <= 100)) || die "DEMO_WORKERS is at most 100 (the cluster allows 150 connections)"
((bots <= 1000)) || die "DEMO_BOTS is at most 1000"
((cooldown_ms * 2 <= seconds * 1000)) ||
	die "DEMO_COOLDOWN_MS is at most half a run ($((seconds * 500)) ms with $seconds-second runs)"

exchange_ms=50   # how long the exchange takes to place an order, in both trade runs
cooldown=$(printf '%d.%03d' $((cooldown_ms / 1000)) $((cooldown_ms % 1000)))   # seconds
python=${PYTHON:-/usr/bin/python3}

step() {
	printf '\n==> %s\n' "$*"
}

# --- 1. dependencies, build, install -----------------------------------------

step "dependencies (scripts/deps.sh)"
DEPS_VERBOSE=1 "$root/scripts/deps.sh" python3 python3-psycopg
"$python" -c 'import psycopg' 2>/dev/null ||
	die "$python cannot import psycopg 3; set PYTHON to a Python 3 that can"

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
work=$(cluster_mkdir demo)   # the workers' output; removed with the cluster
psql=(cluster_psql)

export PGDATABASE=bidguard_demo
"${psql[@]}" -d postgres -c "CREATE DATABASE bidguard_demo"
"${psql[@]}" -c "CREATE EXTENSION bidguard"
"${psql[@]}" -f "$root/demo/schema.sql" -f "$root/demo/trade_schema.sql"
echo "database bidguard_demo: extension bidguard $("${psql[@]}" -A -t -c "SELECT extversion FROM pg_extension WHERE extname = 'bidguard'"), plain tables bids, bots and trades"
echo "workers: $python $(realpath --relative-to="$PWD" "$root/demo/incidents.py") (psycopg $("$python" -c 'import psycopg; print(psycopg.__version__)'))"

# --- 3. the runs -------------------------------------------------------------

# run NAME GUARD DESCRIPTION WORKER_ARG...: the workers of demo/incidents.py
# with GUARD (none | bidguard); sets NAME_<key> for every key of their JSON
# summary (bid_calls, bids_created, trade_calls, trades_executed, ...).
run() {
	local name=$1 guard=$2 description=$3 out=$work/$1.json
	shift 3
	step "$description"
	if ! "$python" "$root/demo/incidents.py" --guard "$guard" --seconds "$seconds" "$@" >"$out"; then
		echo "demo: the workers failed in run '$name'" >&2
		exit 1
	fi
	cat "$out"
	local assignments
	assignments=$("$python" - "$name" "$out" <<-'EOF'
		import json, sys
		name, path = sys.argv[1:]
		for key, value in json.load(open(path)).items():
		    if isinstance(value, int):
		        print(f"{name}_{key}={value}")
		EOF
	)
	eval "$assignments"
}

# count NAME TABLE: set NAME_bids, NAME_postings, NAME_dup_postings, NAME_surplus.
count() {
	local name=$1 line
	line=$("${psql[@]}" -A -t -v tbl="$2" -f "$root/demo/count.sql")
	IFS='|' read -r "${name}_bids" "${name}_postings" "${name}_dup_postings" "${name}_surplus" <<<"$line"
}

# count_trades NAME TRADES BOTS: set NAME_trades (counting trades), NAME_violations,
# NAME_violating_bots, NAME_gap1..3.
count_trades() {
	local name=$1 line
	line=$("${psql[@]}" -A -t -v trades="$2" -v bots="$3" -f "$root/demo/trade_count.sql")
	IFS='|' read -r "${name}_trades" "${name}_violations" "${name}_violating_bots" \
		"${name}_gap1" "${name}_gap2" "${name}_gap3" <<<"$line"
}

# stats COLUMNS: bidguard's shared-memory statistics (spec section 7) as one
# space-separated line; fails with the server's message when unavailable.
stats() {
	"${psql[@]}" -A -t -F ' ' -c "SELECT $1 FROM bidguard_stats" 2>&1
}

stats_reset() {
	"${psql[@]}" -A -t -c "SELECT bidguard_stats_reset()" >/dev/null 2>&1 || true
}

bid_args=(--scanners "$workers" --traders 0 --postings "$postings")
trade_args=(--scanners 0 --traders "$workers" --bots "$bots" --cooldown-ms "$cooldown_ms"
	--exchange-ms "$exchange_ms")

# Part 1: duplicate bids.
run naive none "part 1, no guard: $workers scanner processes, $seconds s, the incident's SELECT ... FOR UPDATE, then INSERT" "${bid_args[@]}"
count naive bids
stats_reset
run guarded bidguard "part 1, bidguard: the same $workers scanner processes, $seconds s, bidguard_create_bid()" "${bid_args[@]}"
count guarded bidguard_bids
bid_stats_ok=1
bid_stats=$(stats "bids_created, bids_deduplicated, lock_waited, round(lock_wait_max_ms::numeric, 1)") || bid_stats_ok=0
invariant_sql=$(grep -v '^--' "$root/demo/invariant.sql")
invariant=$("${psql[@]}" -A -t -F ' ' -c "$invariant_sql")

# Part 2: double trades.
run tnaive none "part 2, no guard: $workers trading processes, $seconds s, $bots bots, cooldown checked, then traded" "${trade_args[@]}"
count_trades tnaive trades bots
stats_reset
run tguarded bidguard "part 2, bidguard: the same $workers trading processes, $seconds s, bidguard_try_trade()" "${trade_args[@]}"
count_trades tguarded bidguard_trades bidguard_bots
trade_stats_ok=1
trade_stats=$(stats "trades_executed, trades_rejected_cooldown, trades_rejected_busy, lock_waited") || trade_stats_ok=0
trade_invariant_sql=$(grep -v '^--' "$root/demo/trade_invariant.sql")
trade_invariant=$("${psql[@]}" -A -t -F ' ' -c "$trade_invariant_sql")
# the workers' own count of trades, against the tables'
tnaive_rows=$("${psql[@]}" -A -t -c "SELECT count(*) FROM trades")
tguarded_rows=$("${psql[@]}" -A -t -c "SELECT count(*) FROM bidguard_trades")

# --- 4. the report -----------------------------------------------------------

row() {
	printf '  %-44s %18s %18s\n' "$@"
}

step "report, part 1: duplicate bids"
echo "Every 100 ms the feed lists $postings new postings; each scanner picks one of them, bids on it"
echo "unless it has an active bid, submits the bid it created, and one time in 20 withdraws the"
echo "bid it found (a rescan). Same worker code in both columns; only the guard differs."
echo
row "" "no guard" "bidguard"
row "" "SELECT FOR UPDATE," "create_bid()"
row "" "then INSERT" ""
row "worker processes (scanners)" "$workers" "$workers"
row "duration (s)" "$seconds" "$seconds"
row "bid calls (posting checked, bid or not)" "$naive_bid_calls" "$guarded_bid_calls"
row "throughput (calls/s)" "$((naive_bid_calls / seconds))" "$((guarded_bid_calls / seconds))"
row "bids created (workers' count)" "$naive_bids_created" "$guarded_bids_created"
row "bids in the table" "$naive_bids" "$guarded_bids"
row "postings bid on" "$naive_postings" "$guarded_postings"
row "postings with more than one active bid" "$naive_dup_postings" "$guarded_dup_postings"
row "duplicate active bids (surplus rows)" "$naive_surplus" "$guarded_surplus"

echo
echo "Invariant and audit trail of bidguard's table:"
echo "  $invariant_sql"
read -r one_active every_event <<<"$invariant"
echo "  -> at most one active bid per posting: $one_active; every bid has its bid_created event: $every_event"
if ((bid_stats_ok)); then
	read -r created deduplicated waited wait_max <<<"$bid_stats"
	echo "  bidguard_stats for the run: $created bids created, $deduplicated calls given the posting's"
	echo "  existing bid, $waited lock waits behind a concurrent creator (longest ${wait_max} ms)"
else
	echo "  (bidguard_stats unavailable: $(head -n 1 <<<"${bid_stats#*ERROR:  }"))"
fi

step "report, part 2: double trades"
echo "Each trader takes a bot whose cooldown ($cooldown s) has passed by its own reckoning and runs"
echo "the trade task: check the cooldown, place the order (the exchange takes $exchange_ms ms), record"
echo "the fill or the rejection. With bidguard the check is bidguard_try_trade(), whose bot lock"
echo "is held until COMMIT, across the exchange call. Same worker code in both columns."
echo
row "" "no guard" "bidguard"
row "" "check, then trade" "try_trade()"
row "worker processes (traders)" "$workers" "$workers"
row "duration (s)" "$seconds" "$seconds"
row "trade tasks run" "$tnaive_trade_calls" "$tguarded_trade_calls"
row "throughput (tasks/s)" "$((tnaive_trade_calls / seconds))" "$((tguarded_trade_calls / seconds))"
row "trades executed (workers' count)" "$tnaive_trades_executed" "$tguarded_trades_executed"
row "trades in the table" "$tnaive_rows" "$tguarded_rows"
row "tasks refused: cooldown" "$tnaive_trades_cooldown" "$tguarded_trades_cooldown"
row "tasks refused: busy (trade under way)" "-" "$tguarded_trades_busy"
row "trade pairs closer than the cooldown" "$tnaive_violations" "$tguarded_violations"
row "bots with such a pair" "$tnaive_violating_bots" "$tguarded_violating_bots"
row "smallest gaps between a bot's trades (s)" "$tnaive_gap1" "$tguarded_gap1"
row "" "$tnaive_gap2" "$tguarded_gap2"
row "" "$tnaive_gap3" "$tguarded_gap3"
echo "  (the incident's double trades were 0.09-0.82 s apart. Gaps are between effective times,"
echo "  coalesce(filled_at, created_at), of trades that count (not failed); with bidguard the next"
echo "  trade is admitted a cooldown after the previous fill at the earliest, and fills an exchange"
echo "  call later.)"

echo
echo "Invariant and audit trail of bidguard's table:"
echo "  $trade_invariant_sql"
read -r no_violation every_trade_event <<<"$trade_invariant"
echo "  -> bidguard_cooldown_violations is empty: $no_violation; every trade has its trade_executed event: $every_trade_event"
if ((trade_stats_ok)); then
	read -r executed rejected_cooldown rejected_busy trade_waited <<<"$trade_stats"
	echo "  bidguard_stats for the run: $executed trades executed, $rejected_cooldown refused in the cooldown,"
	echo "  $rejected_busy refused as busy, $trade_waited lock waits (the workers ask with wait => '0')"
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
if ((tguarded_rows == 0)); then
	echo "FAIL: the guarded trade run executed no trades at all."
	status=1
fi
if ((naive_bids_created != naive_bids || guarded_bids_created != guarded_bids ||
	tnaive_trades_executed != tnaive_rows || tguarded_trades_executed != tguarded_rows)); then
	echo "FAIL: the workers' counts of what they committed disagree with the tables."
	status=1
fi
if ((naive_surplus == 0)); then
	echo "INCONCLUSIVE: the unguarded bid run hit no race this time, so it shows nothing to stop."
	status=1
fi
if ((tnaive_violations == 0)); then
	echo "INCONCLUSIVE: the unguarded trade run hit no race this time, so it shows nothing to stop."
	status=1
fi
if ((naive_surplus == 0 || tnaive_violations == 0)); then
	((workers > 1)) || echo "With DEMO_WORKERS=1 there is no concurrency, hence no race."
	echo "Rerun with more workers or time, e.g. DEMO_WORKERS=32 DEMO_SECONDS=10 make demo."
fi
if ((status == 0)); then
	echo "OK: without a guard the scanners left $naive_surplus duplicate active bids on $naive_dup_postings of $naive_postings postings;"
	echo "    with bidguard_create_bid(), $guarded_postings postings, never more than one active bid each."
	echo "OK: without a guard the traders traded $tnaive_violations times inside a bot's cooldown (smallest gap $tnaive_gap1 s);"
	echo "    with bidguard_try_trade(), $tguarded_rows trades, no two that count closer than $cooldown s (smallest gap $tguarded_gap1 s)."
fi
exit "$status"
