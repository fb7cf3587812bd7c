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
#
# It reports, per workload, each alternative's median throughput, its spread
# (min-max over the rounds), bidguard's throughput divided by it, and p50/p99
# latency from the per-transaction logs of pgbench (-l) and redis_peer (--log),
# pooled over the rounds.  Results go to BENCH_RESULTS (default bench/results):
# results.tsv, results.md (with issue 7's targets, met or not) and
# results.png (gnuplot).  bench/scale.sh's scale.tsv there is included when
# present.
#
# Settings: BENCH_SECONDS (8), BENCH_ROUNDS (3), BENCH_CLIENTS (16),
# BENCH_SYNC ("off on"), BENCH_WORKLOADS (all five), BENCH_RESULTS.
# `make bench BENCH_SECONDS=3 BENCH_ROUNDS=1` is a quick look.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

secs=${BENCH_SECONDS:-8}
rounds=${BENCH_ROUNDS:-3}
clients=${BENCH_CLIENTS:-16}
syncs=${BENCH_SYNC:-off on}
workloads=${BENCH_WORKLOADS:-bids_hot bids_cold trades_10 trades_10k guarded_insert}
results=${BENCH_RESULTS:-$root/bench/results}
for knob in secs rounds clients; do
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
printf 'sync\tworkload\talternative\tmedian_tps\tmin_tps\tmax_tps\tbidguard_ratio\tp50_ms\tp99_ms\n' >"$tsv"

# The alternatives of a workload: label=kind:spec, bidguard's first.
#   pgbench:SCRIPT  or  redis:bids|trades
alternatives() {
	case $1 in
		bids_*) echo "bidguard=pgbench:bench/create_bid.pgbench on_conflict=pgbench:bench/on_conflict.pgbench plpgsql=pgbench:bench/plpgsql_bid.pgbench plpgsql_audited=pgbench:bench/audited_bid.pgbench redis_lock=redis:bids" ;;
		trades_*) echo "bidguard=pgbench:bench/try_trade.pgbench exclusion=pgbench:bench/exclusion.pgbench plpgsql=pgbench:bench/plpgsql_trade.pgbench plpgsql_audited=pgbench:bench/audited_trade.pgbench redis_lock=redis:trades" ;;
		guarded_insert) echo "bidguard=pgbench:bench/insert_guarded.pgbench unguarded=pgbench:bench/insert_plain.pgbench same_index_no_trigger=pgbench:bench/insert_indexed.pgbench" ;;
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
	esac
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

	local wl
	for wl in $workloads; do
		local -A tps=()
		local -a alts
		read -r -a alts <<<"$(alternatives "$wl")"
		local def
		def=$(defines "$wl")
		echo "  $wl ($def):"
		local r pair label kind spec out t
		for ((r = 1; r <= rounds; r++)); do
			for pair in "${alts[@]}"; do
				label=${pair%%=*} kind=${pair#*=} spec=${kind#*:} kind=${kind%%:*}
				psql -X -q -v ON_ERROR_STOP=1 -f bench/reset.sql -f bench/redis_peer/reset.sql \
					-f bench/guarded_insert_reset.sql >/dev/null
				if [ "$kind" = pgbench ]; then
					out=$(cd "$work" && pgbench -n -M prepared -c "$clients" -j 2 -T "$secs" \
						-D "$def" -l --log-prefix="$wl.$label.$r" -f "$root/$spec" 2>&1) ||
						{ echo "$out" >&2; exit 1; }
				else
					out=$(bench/redis_peer/redis_peer -w "$spec" -c "$clients" -T "$secs" -D "$def" \
						--redis "$redis_sock" --log "$work/$wl.$label.$r.log" 2>&1) ||
						{ echo "$out" >&2; exit 1; }
				fi
				t=$(awk '/^tps = /{print $3}' <<<"$out")
				[ -n "$t" ] || { echo "$out" >&2; echo "bench: no tps from $label" >&2; exit 1; }
				tps[$label]+="$t "
				printf '    round %d  %-22s %9.0f tps\n' "$r" "$label" "$t"
			done
		done
		local first='' med lo hi p50 p99 ratio
		for pair in "${alts[@]}"; do
			label=${pair%%=*} kind=${pair#*=} kind=${kind%%:*}
			read -r med lo hi < <(tr ' ' '\n' <<<"${tps[$label]}" | grep . | sort -g |
				awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; print m, a[1], a[NR]}')
			[ -n "$first" ] || first=$med
			if [ "$kind" = pgbench ]; then
				read -r p50 p99 < <(cat "$work/$wl.$label".*.[0-9]* 2>/dev/null | awk '{print $3}' | percentiles)
			else
				read -r p50 p99 < <(cat "$work/$wl.$label".*.log | percentiles)
			fi
			ratio=$(awk -v a="$first" -v b="$med" 'BEGIN{printf "%.2f", a / b}')
			printf '    %-22s median %9.0f tps (%.0f-%.0f)  bidguard/this %5s  p50 %s ms  p99 %s ms\n' \
				"$label" "$med" "$lo" "$hi" "$ratio" "$p50" "$p99"
			printf '%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\n' "$sync" "$wl" "$label" \
				"$med" "$lo" "$hi" "$ratio" "$p50" "$p99" >>"$tsv"
		done
		rm -f "$work/$wl".*
		unset tps
	done
	cluster_cleanup
}

for sync in $syncs; do
	(bench_mode "$sync")
done

echo "==> results in $results"
bench/report.sh "$results"
