#!/usr/bin/env bash
# bench/run.sh — `make bench`: bidguard against what users would pick instead,
# on this machine, in one run.
#
# For each synchronous_commit setting (BENCH_SYNC, default "off on": off is
# CPU-bound with fsync off; on is fsync-bound with fsync on) it starts a
# throwaway PostgreSQL cluster (scripts/cluster.sh) and a throwaway
# redis-server on a unix socket, and runs every workload against every
# alternative, interleaved (A B C D A B C D ...), BENCH_ROUNDS times for
# BENCH_SECONDS each, with BENCH_CLIENTS clients, emptying the tables before
# every run:
#
#   bids_hot     a bid for one of 100 postings (mostly deduplicated)
#   bids_cold    a bid for one of 1,000,000 postings (mostly inserts)
#                  bidguard_create_bid | INSERT ... ON CONFLICT DO NOTHING |
#                  PL/pgSQL (advisory xact lock, check, insert) |
#                  PL/pgSQL that also keeps bidguard's row rules and audit
#                    event (bench/peers.sql (c); for reference) |
#                  Redis lock (SET NX PX, check, insert, Lua release: bench/redis_peer)
#   trades_10    a trade for one of 10 bots, cooldown 1 s (mostly refused)
#   trades_10k   a trade for one of 10,000 bots (mostly admitted)
#                  bidguard_try_trade | exclusion constraint | PL/pgSQL |
#                  PL/pgSQL with rules and audit event | Redis lock
#   guarded_insert  a plain INSERT into an application table guarded with
#                  bidguard_guard_cooldown | the same table unguarded |
#                  the same table with the guard's index but no trigger
#   batch_cold   a batch of 10 postings among 1,000,000 (mostly inserts)
#   batch_hot    a batch of 10 postings among 100 (mostly found)
#                  bidguard_create_bids | one multi-row INSERT ... ON CONFLICT
#                  DO NOTHING of the same batch
#   rate_hot     an action limited to 100/s per key, 10 keys (mostly refused)
#   rate_cold    the same over 10,000 keys (mostly admitted)
#                  bidguard_rate_limit and the action's INSERT in one statement |
#                  GCRA in Redis (Lua, redis-cell's algorithm), then the INSERT
#                  (bench/redis_peer -w rate)
#
# It reports, per workload, each alternative's median throughput, its spread
# (min-max over the rounds), bidguard's median throughput divided by it and
# the spread of that ratio (min-max of the per-round ratios: each round runs
# bidguard and the alternative back to back), and p50/p99 latency from the
# per-transaction logs of pgbench (-l) and redis_peer (--log), pooled over
# the rounds.  pgbench retries deadlocks and serialization failures
# (--max-tries=10) as a worker would; a run says how many transactions
# still failed.  For bidguard's runs it also records bidguard_lock_wait_histogram
# (reset before each run, read after it, summed over the rounds).
#
# Then, with synchronous_commit = off, the client sweep: bidguard and each
# workload's main SQL peer at BENCH_SWEEP_CLIENTS (1 4 16 64) clients,
# BENCH_SWEEP_SECONDS (4) s per run, BENCH_ROUNDS rounds interleaved.
#
# Results go to BENCH_RESULTS (default bench/results): results.tsv,
# locks.tsv, clients.tsv, results.md (with issue 16's targets, met or not,
# and the machine), results.png (the ratios) and clients.png (throughput
# against clients), both gnuplot.  bench/scale.sh's scale.tsv and
# bench/memory.sh's memory.tsv there are included when present.
#
# Settings: BENCH_SECONDS (8), BENCH_ROUNDS (3), BENCH_CLIENTS (16),
# BENCH_SYNC ("off on"), BENCH_WORKLOADS (all nine), BENCH_SWEEP_CLIENTS
# ("1 4 16 64"; empty: no sweep), BENCH_SWEEP_SECONDS (4), BENCH_RESULTS.
# `make bench BENCH_SECONDS=3 BENCH_ROUNDS=1 BENCH_SWEEP_CLIENTS=` is a quick look.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

secs=${BENCH_SECONDS:-8}
rounds=${BENCH_ROUNDS:-3}
clients=${BENCH_CLIENTS:-16}
syncs=${BENCH_SYNC:-off on}
workloads=${BENCH_WORKLOADS:-bids_hot bids_cold trades_10 trades_10k guarded_insert batch_cold batch_hot rate_hot rate_cold}
sweep_clients=${BENCH_SWEEP_CLIENTS-1 4 16 64}
sweep_secs=${BENCH_SWEEP_SECONDS:-4}
results=${BENCH_RESULTS:-$root/bench/results}
for knob in secs rounds clients sweep_secs; do
	[[ ${!knob} =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_${knob^^} must be a positive integer" >&2; exit 2; }
done

echo "==> dependencies, build, install"
DEPS_VERBOSE=1 scripts/deps.sh redis-server libhiredis-dev gnuplot-nox
export PG_CONFIG=${PG_CONFIG:-pg_config}
make -s --no-print-directory
make -s --no-print-directory install >/dev/null
make -s --no-print-directory -C bench/redis_peer
mkdir -p "$results"
tsv=$results/results.tsv
printf 'sync\tworkload\talternative\tmedian_tps\tmin_tps\tmax_tps\tbidguard_ratio\tp50_ms\tp99_ms\tratio_min\tratio_max\n' >"$tsv"
printf 'sync\tworkload\tle_ms\tcount\tacquired\n' >"$results/locks.tsv"
printf 'workload\talternative\tclients\tmedian_tps\tmin_tps\tmax_tps\tp50_ms\tp99_ms\n' >"$results/clients.tsv"

# The alternatives of a workload: label=kind:spec, bidguard's first.
#   pgbench:SCRIPT  or  redis:bids|trades|rate
alternatives() {
	case $1 in
		bids_*) echo "bidguard=pgbench:bench/create_bid.pgbench on_conflict=pgbench:bench/on_conflict.pgbench plpgsql=pgbench:bench/plpgsql_bid.pgbench plpgsql_audited=pgbench:bench/audited_bid.pgbench redis_lock=redis:bids" ;;
		trades_*) echo "bidguard=pgbench:bench/try_trade.pgbench exclusion=pgbench:bench/exclusion.pgbench plpgsql=pgbench:bench/plpgsql_trade.pgbench plpgsql_audited=pgbench:bench/audited_trade.pgbench redis_lock=redis:trades" ;;
		guarded_insert) echo "bidguard=pgbench:bench/insert_guarded.pgbench unguarded=pgbench:bench/insert_plain.pgbench same_index_no_trigger=pgbench:bench/insert_indexed.pgbench" ;;
		batch_*) echo "bidguard=pgbench:bench/create_bids.pgbench on_conflict=pgbench:bench/on_conflict_batch.pgbench" ;;
		rate_*) echo "bidguard=pgbench:bench/rate_limit.pgbench redis_gcra=redis:rate" ;;
		*) echo "bench: unknown workload $1" >&2; exit 2 ;;
	esac
}

defines() {
	case $1 in
		bids_hot) echo "postings=100" ;;
		bids_cold) echo "postings=1000000" ;;
		trades_10) echo "bots=10" ;;
		trades_10k) echo "bots=10000" ;;
		guarded_insert) echo "none=0" ;;
		batch_cold) echo "postings=1000000" ;;
		batch_hot) echo "postings=100" ;;
		rate_hot) echo "keys=10" ;;
		rate_cold) echo "keys=10000" ;;
	esac
}

# The alternative the client sweep compares bidguard with.
sweep_peer() {
	case $1 in
		bids_*|batch_*) echo on_conflict ;;
		trades_*) echo exclusion ;;
		guarded_insert) echo unguarded ;;
		rate_*) echo redis_gcra ;;
	esac
}

# median, min, max of the numbers on stdin
spread() {
	grep . | sort -g | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; print m, a[1], a[NR]}'
}

# pooled p50 and p99, in ms, of the latencies (µs, one per line) on stdin
percentiles() {
	sort -n | awk '{a[NR]=$1} END {
		if (NR == 0) { print "-", "-"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "%.3f %.3f\n", a[i50] / 1000, a[i99] / 1000 }'
}

bench_mode() {
	local sync=$1 fsync=off
	[ "$sync" = on ] && fsync=on
	# shellcheck source-path=SCRIPTDIR source=../scripts/cluster.sh
	. scripts/cluster.sh
	cluster_start "synchronous_commit = $sync" "fsync = $fsync" "max_connections = 100" >/dev/null
	local work redis_sock
	work=$(cluster_mkdir bench)
	chmod 777 "$work"
	redis_sock=$work/redis.sock
	redis-server --port 0 --unixsocket "$redis_sock" --unixsocketperm 700 --save '' \
		--appendonly no --daemonize yes --pidfile "$work/redis.pid" --dir "$work" >/dev/null
	cluster_at_exit "kill \$(cat '$work/redis.pid') 2>/dev/null || true"
	for _ in $(seq 50); do [ -S "$redis_sock" ] && break; sleep 0.1; done
	cluster_psql -c 'CREATE DATABASE bench'
	export PGDATABASE=bench
	cluster_psql -c 'CREATE EXTENSION bidguard' -f bench/peers.sql -v bots=10000 \
		-f bench/redis_peer/schema.sql -f bench/guarded_insert.sql >/dev/null
	cluster_psql -c "SELECT bidguard_set_cooldown(b, '1 second') FROM generate_series(1, 10000) AS b" >/dev/null
	echo "==> synchronous_commit = $sync, fsync = $fsync: PostgreSQL $(psql -XAtc 'SHOW server_version');" \
		"$(redis-server --version | awk '{print "Redis", $3}'); $(nproc) cores;" \
		"$clients clients, $secs s per run, $rounds rounds"

	# one run: WORKLOAD LABEL KIND SPEC DEFINES CLIENTS SECONDS LOGPREFIX -> tps
	run_one() {
		local out t
		psql -X -q -v ON_ERROR_STOP=1 -f bench/reset.sql -f bench/redis_peer/reset.sql \
			-f bench/guarded_insert_reset.sql >/dev/null
		if [ "$3" = pgbench ]; then
			out=$(cd "$work" && pgbench -n -M prepared -c "$6" -j 2 -T "$7" --max-tries=10 \
				-D "$5" -l --log-prefix="$8" -f "$root/$4" 2>&1) ||
				{ echo "$out" >&2; return 1; }
			# deadlocks and serialization failures are retried, as a worker
			# would; what still failed is said, never hidden in the tps
			local failed
			failed=$(awk '/^number of failed transactions:/ {print $5}' <<<"$out")
			if [ -n "$failed" ] && [ "$failed" != 0 ]; then
				echo "    ($2, $6 clients: $failed transactions failed after 10 tries;" \
					"$(awk '/^number of transactions retried:/ {print $5}' <<<"$out") retried)" >&2
			fi
		else
			out=$(bench/redis_peer/redis_peer -w "$4" -c "$6" -T "$7" -D "$5" \
				--redis "$redis_sock" --log "$work/$8.log" 2>&1) ||
				{ echo "$out" >&2; return 1; }
		fi
		t=$(awk '/^tps = /{print $3}' <<<"$out")
		[ -n "$t" ] || { echo "$out" >&2; echo "bench: no tps from $2" >&2; return 1; }
		echo "$t"
	}
	# pooled p50 p99 of the runs logged under PREFIX
	latency() {
		if ls "$work/$1".*.[0-9]* >/dev/null 2>&1; then
			cat "$work/$1".*.[0-9]* | awk '{print $3}' | percentiles
		else
			cat "$work/$1".*.log 2>/dev/null | percentiles
		fi
	}

	local wl
	for wl in $workloads; do
		local -A tps=()
		local -a alts hist=()
		read -r -a alts <<<"$(alternatives "$wl")"
		local def acquired=0
		def=$(defines "$wl")
		echo "  $wl ($def):"
		local r pair label kind spec t
		for ((r = 1; r <= rounds; r++)); do
			for pair in "${alts[@]}"; do
				label=${pair%%=*} kind=${pair#*=} spec=${kind#*:} kind=${kind%%:*}
				[ "$label" = bidguard ] && psql -X -q -c 'SELECT bidguard_stats_reset()' >/dev/null
				t=$(run_one "$wl" "$label" "$kind" "$spec" "$def" "$clients" "$secs" "$wl.$label.$r") || exit 1
				if [ "$label" = bidguard ]; then
					local i=0 c
					while read -r c; do
						hist[i]=$(( ${hist[i]:-0} + c )); i=$((i + 1))
					done < <(psql -X -At -c 'SELECT count FROM bidguard_lock_wait_histogram ORDER BY le_ms')
					acquired=$((acquired + $(psql -X -At -c 'SELECT lock_acquired FROM bidguard_stats')))
				fi
				tps[$label]+="$t "
				printf '    round %d  %-22s %9.0f tps\n' "$r" "$label" "$t"
			done
		done
		local first='' med lo hi p50 p99 ratio rmin rmax
		for pair in "${alts[@]}"; do
			label=${pair%%=*}
			read -r med lo hi < <(tr ' ' '\n' <<<"${tps[$label]}" | spread)
			[ -n "$first" ] || first=$med
			read -r p50 p99 < <(latency "$wl.$label")
			ratio=$(awk -v a="$first" -v b="$med" 'BEGIN{printf "%.2f", a / b}')
			read -r _ rmin rmax < <(paste -d' ' <(tr ' ' '\n' <<<"${tps[bidguard]}" | grep .) \
				<(tr ' ' '\n' <<<"${tps[$label]}" | grep .) | awk '{printf "%.4f\n", $1 / $2}' | spread)
			printf '    %-22s median %9.0f tps (%.0f-%.0f)  bidguard/this %5s (%.2f-%.2f)  p50 %s ms  p99 %s ms\n' \
				"$label" "$med" "$lo" "$hi" "$ratio" "$rmin" "$rmax" "$p50" "$p99"
			printf '%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%.2f\t%.2f\n' "$sync" "$wl" "$label" \
				"$med" "$lo" "$hi" "$ratio" "$p50" "$p99" "$rmin" "$rmax" >>"$tsv"
		done
		local les i=0 le
		les=$(psql -X -At -c 'SELECT le_ms FROM bidguard_lock_wait_histogram ORDER BY le_ms')
		printf '    bidguard lock waits (cumulative, %s locks taken):' "$acquired"
		for le in $les; do
			printf ' <=%sms %s' "$le" "${hist[i]}"
			printf '%s\t%s\t%s\t%s\t%s\n' "$sync" "$wl" "$le" "${hist[i]}" "$acquired" >>"$results/locks.tsv"
			i=$((i + 1))
		done
		echo
		rm -f "$work/$wl".*
		unset tps
	done

	# The client sweep (synchronous_commit = off only).
	if [ "$sync" = off ] && [ -n "$sweep_clients" ]; then
		echo "  client sweep ($sweep_clients clients, $sweep_secs s per run, $rounds rounds):"
		local n peer
		for wl in $workloads; do
			def=$(defines "$wl") peer=$(sweep_peer "$wl")
			for n in $sweep_clients; do
				local -A sw=()
				for ((r = 1; r <= rounds; r++)); do
					for pair in $(alternatives "$wl"); do
						label=${pair%%=*} kind=${pair#*=} spec=${kind#*:} kind=${kind%%:*}
						[ "$label" = bidguard ] || [ "$label" = "$peer" ] || continue
						t=$(run_one "$wl" "$label" "$kind" "$spec" "$def" "$n" "$sweep_secs" "sweep.$wl.$label.$n.$r") || exit 1
						sw[$label]+="$t "
					done
				done
				for label in bidguard "$peer"; do
					read -r med lo hi < <(tr ' ' '\n' <<<"${sw[$label]}" | spread)
					read -r p50 p99 < <(latency "sweep.$wl.$label.$n")
					printf '    %-15s %-12s %3d clients  median %9.0f tps (%.0f-%.0f)  p50 %s ms  p99 %s ms\n' \
						"$wl" "$label" "$n" "$med" "$lo" "$hi" "$p50" "$p99"
					printf '%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\n' "$wl" "$label" "$n" "$med" "$lo" "$hi" \
						"$p50" "$p99" >>"$results/clients.tsv"
				done
				rm -f "$work/sweep.$wl".*
				unset sw
			done
		done
	fi
	cluster_cleanup
}

for sync in $syncs; do
	(bench_mode "$sync")
done

echo "==> results in $results"
bench/report.sh "$results"
