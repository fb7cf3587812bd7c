#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: the duplicate-bid race, without and with bidguard.
#
# What it shows. Scanner workers watch a marketplace feed; every posting they see
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
# checks bidguard's invariant and audit trail. Every number printed is measured
# in this run.
#
# Exit status: 0 when the naive run produced duplicates and the guarded run none;
# 1 when the guarded run has a duplicate or a bid without its creation event, or
# the naive run happened to show no race (rerun with more clients or seconds);
# 2 on a usage error.
#
# Usage: scripts/demo.sh [--quick]          (make demo [DEMO_ARGS=--quick])
#   --quick            2-second runs instead of 5
# Environment:
#   DEMO_SECONDS       length of each run in seconds (default 5; 2 with --quick)
#   DEMO_CLIENTS       concurrent scanners, i.e. pgbench clients (default 16)
#   DEMO_POSTINGS      postings listed on the feed at a time (default 20)
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
for knob in seconds clients postings; do
	[[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "DEMO_${knob^^} must be a positive integer, not '${!knob}'"
done
((seconds <= 60)) || die "DEMO_SECONDS is at most 60"
((clients <= 100)) || die "DEMO_CLIENTS is at most 100 (the cluster allows 150 connections)"

feed_ms=100   # a fresh batch of $postings postings is listed every 100 ms
pause=0.001   # seconds a scanner spends evaluating a posting, in both runs
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
echo "database bidguard_demo: extension bidguard $("${psql[@]}" -A -t -c "SELECT extversion FROM pg_extension WHERE extname = 'bidguard'"), naive table bids"

# --- 3. the two runs ---------------------------------------------------------

# run NAME SCRIPT: pgbench SCRIPT, leaving its output in $work/NAME.log and
# setting NAME_transactions and NAME_tps from it.
run() {
	local name=$1 script=$2 log=$work/$1.log
	step "$name run: $clients scanners, $seconds s, $postings live postings, $pause s evaluation pause"
	if ! "$pgbench" -n -M prepared -c "$clients" -j "$threads" -T "$seconds" \
		-D postings="$postings" -D feed_ms="$feed_ms" -D pause="$pause" \
		-f "$script" >"$log" 2>&1; then
		cat "$log" >&2
		echo "demo: pgbench failed in the $name run" >&2
		exit 1
	fi
	local transactions tps
	transactions=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log")
	[[ -n $transactions && -n $tps ]] || {
		cat "$log" >&2
		echo "demo: could not read the $name run's pgbench summary" >&2
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

naive_transactions='' naive_tps='' naive_bids='' naive_postings='' naive_dup_postings='' naive_surplus=''
guarded_transactions='' guarded_tps='' guarded_bids='' guarded_postings='' guarded_dup_postings='' guarded_surplus=''

run naive "$root/demo/naive.pgbench"
count naive bids
run guarded "$root/demo/guarded.pgbench"
count guarded bidguard_bids

invariant_sql=$(grep -v '^--' "$root/demo/invariant.sql")
invariant=$("${psql[@]}" -A -t -F ' ' -c "$invariant_sql")

# --- 4. the report -----------------------------------------------------------

row() {
	printf '  %-40s %18s %18s\n' "$@"
}

step "report"
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

# What bidguard itself counted (shared-memory statistics, spec section 7).
if stats=$("${psql[@]}" -A -t -F ' ' -c "SELECT bids_created, bids_deduplicated, lock_waited, round(lock_wait_max_ms::numeric, 1) FROM bidguard_stats" 2>&1); then
	read -r created deduplicated waited wait_max <<<"$stats"
	echo "  bidguard_stats: $created bids created, $deduplicated calls given the posting's existing bid,"
	echo "                  $waited lock waits behind a concurrent creator (longest ${wait_max} ms)"
else
	echo "  (bidguard_stats unavailable: $(head -n 1 <<<"${stats#*ERROR:  }"))"
fi

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
if ((naive_surplus == 0)); then
	echo "INCONCLUSIVE: the naive run hit no race this time, so it shows nothing to stop."
	((clients > 1)) || echo "With DEMO_CLIENTS=1 there is no concurrency, hence no race."
	echo "Rerun with more scanners or time, e.g. DEMO_CLIENTS=32 DEMO_SECONDS=10 make demo."
	status=1
fi
if ((status == 0)); then
	echo "OK: the naive scanners left $naive_surplus duplicate active bids on $naive_dup_postings of $naive_postings postings;"
	echo "    with bidguard_create_bid(), $guarded_postings postings got exactly one active bid each."
fi
exit "$status"
