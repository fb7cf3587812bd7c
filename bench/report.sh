#!/usr/bin/env bash
# bench/report.sh DIR — turn DIR/results.tsv, locks.tsv and clients.tsv
# (bench/run.sh) and, when present, DIR/scale.tsv (bench/scale.sh) and
# DIR/memory.tsv (bench/memory.sh) into DIR/results.md, with issue 16's
# targets met or not and the machine they were measured on; DIR/results.png,
# a chart of bidguard's throughput divided by each alternative's, and
# DIR/clients.png, throughput against clients (gnuplot).  Prints results.md.
set -euo pipefail
dir=${1:?usage: bench/report.sh DIR}
tsv=$dir/results.tsv
[ -f "$tsv" ] || { echo "report: no $tsv" >&2; exit 1; }
md=$dir/results.md

ratio() { # SYNC WORKLOAD ALTERNATIVE: bidguard's throughput / the alternative's
	awk -F'\t' -v s="$1" -v w="$2" -v a="$3" '$1 == s && $2 == w && $3 == a {print $7}' "$tsv"
}
spread_of() { # SYNC WORKLOAD ALTERNATIVE: "min–max" of the per-round ratios
	awk -F'\t' -v s="$1" -v w="$2" -v a="$3" '$1 == s && $2 == w && $3 == a && $10 != "" {print $10 "–" $11}' "$tsv"
}
target() { # LABEL SYNC WORKLOAD ALTERNATIVE TARGET: one row of the targets table
	local r sp
	r=$(ratio "$2" "$3" "$4") sp=$(spread_of "$2" "$3" "$4")
	echo "| $1 | ≥ $5× | ${r:-–}× | ${sp:-–} | $(verdict "$r" ">=" "$5") |"
}

verdict() { # VALUE OP TARGET
	[ -n "$1" ] || { echo "not measured"; return; }
	awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "**not met**" }'
}

{
	echo "# bidguard benchmarks"
	echo
	echo "Produced by \`make bench\` (bench/run.sh, bench/report.sh) on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "Machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores,"
	echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r);"
	echo "PostgreSQL $(pg_config --version | awk '{print $2}'), a throwaway cluster (shared_preload_libraries = bidguard,"
	echo "fsync off with synchronous_commit off, on with on), clients and server on the same cores."
	echo "Ratios are bidguard's median throughput divided by the alternative's, measured in the same run,"
	echo "interleaved; the spread is the lowest and highest of the per-round ratios (each round runs every"
	echo "alternative back to back); latencies are pooled over the rounds."
	for sync in $(cut -f1 "$tsv" | tail -n +2 | awk '!seen[$0]++'); do
		echo
		echo "## synchronous_commit = $sync"
		echo
		echo "| workload | alternative | median tps (min–max) | bidguard ÷ this (rounds) | p50 ms | p99 ms |"
		echo "|---|---|---|---|---|---|"
		awk -F'\t' -v s="$sync" 'NR > 1 && $1 == s {
			sp = ($10 != "" && $3 != "bidguard") ? sprintf(" (%s–%s)", $10, $11) : ""
			printf "| %s | %s | %\047d (%\047d–%\047d) | %s%s | %s | %s |\n", $2, $3, $4, $5, $6, $7, sp, $8, $9 }' "$tsv"
	done
	echo
	echo "## Targets (issue 16; synchronous_commit = off)"
	echo
	echo "| target | wanted | measured | rounds | |"
	echo "|---|---|---|---|---|"
	target "create_bid ÷ INSERT … ON CONFLICT DO NOTHING, 100 postings" off bids_hot on_conflict 2.0
	target "create_bid ÷ INSERT … ON CONFLICT DO NOTHING, 1M postings" off bids_cold on_conflict 1.1
	target "try_trade ÷ EXCLUDE USING gist insert, 10 bots" off trades_10 exclusion 1.2
	target "try_trade ÷ EXCLUDE USING gist insert, 10k bots" off trades_10k exclusion 1.1
	target "guarded plain INSERT ÷ unguarded INSERT" off guarded_insert unguarded 0.90
	target "create_bids ÷ multi-row INSERT … ON CONFLICT, 10 of 1M postings" off batch_cold on_conflict 1.0
	target "create_bids ÷ multi-row INSERT … ON CONFLICT, 10 of 100 postings" off batch_hot on_conflict 1.0
	for w in bids_hot bids_cold trades_10 trades_10k; do
		target "÷ audited PL/pgSQL peer ($w)" off "$w" plpgsql_audited 1.5
	done
	for w in bids_hot bids_cold trades_10 trades_10k; do
		target "÷ Redis-lock peer ($w)" off "$w" redis_lock 3
	done
	if [ -f "$dir/scale.tsv" ]; then
		for w in $(awk -F'\t' 'NR > 1 {print $2}' "$dir/scale.tsv" | awk '!seen[$0]++'); do
			r=$(awk -F'\t' -v w="$w" 'NR > 1 && $2 == w {
					if (min == "" || $1 < min) { min = $1; a = $3 } if ($1 > max) { max = $1; b = $3 } }
				END { if (a > 0) printf "%.2f", b / a }' "$dir/scale.tsv")
			echo "| $w at the largest size ÷ at the smallest (bench/scale.sh) | ≥ 0.95× | ${r:-–}× | – | $(verdict "$r" ">=" 0.95) |"
		done
	else
		echo "| throughput at 10M rows ÷ at 10k | ≥ 0.95× | – | – | not measured (run bench/scale.sh) |"
	fi
	echo
	echo "## Lock waits during bidguard's runs"
	echo
	echo "From \`bidguard_lock_wait_histogram\` (reset before each of bidguard's runs, summed over the rounds):"
	echo "how many of the guard locks bidguard took had waited at most so long.  The rest were granted at once."
	echo
	if [ -f "$dir/locks.tsv" ]; then
		echo "| sync | workload | locks taken | waited | ≤ 1 ms | ≤ 10 ms | ≤ 100 ms | ≤ 1 s | longer |"
		echo "|---|---|---|---|---|---|---|---|---|"
		awk -F'\t' 'NR > 1 { k = $1 "\t" $2; if (!(k in acq)) order[++n] = k; acq[k] = $5; c[k, $3] = $4 }
			END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, "\t"); w = c[k, "Infinity"]
				printf "| %s | %s | %d | %d | %d | %d | %d | %d | %d |\n", p[1], p[2], acq[k], w,
					c[k, 1], c[k, 10], c[k, 100], c[k, 1000], w - c[k, 1000] } }' "$dir/locks.tsv"
	fi
	if [ -f "$dir/clients.tsv" ] && [ "$(wc -l <"$dir/clients.tsv")" -gt 1 ]; then
		echo
		echo "## Throughput against clients (synchronous_commit = off)"
		echo
		echo "| workload | alternative | clients | median tps (min–max) | bidguard ÷ this | p50 ms | p99 ms |"
		echo "|---|---|---|---|---|---|---|"
		awk -F'\t' 'NR > 1 { if ($2 == "bidguard") b[$1, $3] = $4
				r = ($2 == "bidguard" || $4 == 0) ? "1.00" : sprintf("%.2f", b[$1, $3] / $4)
				printf "| %s | %s | %s | %\047d (%\047d–%\047d) | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, r, $7, $8 }' "$dir/clients.tsv"
		echo
		echo "![throughput against clients](clients.png)"
	fi
	if [ -f "$dir/memory.tsv" ]; then
		echo
		echo "## Backend memory (bench/memory.sh)"
		echo
		echo "| function | calls | backend memory after 1,000 calls | after all | growth |"
		echo "|---|---|---|---|---|"
		awk -F'\t' 'NR > 1 { printf "| %s | %\047d | %\047d bytes | %\047d bytes | %\047d bytes |\n", $1, $2, $3, $4, $4 - $3 }' "$dir/memory.tsv"
	fi
	echo
	echo "The PL/pgSQL peers: \`plpgsql\` writes one row and nothing else; \`plpgsql_audited\`"
	echo "(the target's) also keeps what bidguard keeps besides the guard: the same CHECKs, keys and"
	echo "foreign keys, and an audit event per change in the same transaction (bench/peers.sql (c))."
	echo
	echo "| workload | bidguard ÷ plpgsql_audited, synchronous_commit = off | = on |"
	echo "|---|---|---|"
	for w in bids_hot bids_cold trades_10 trades_10k; do
		r=$(ratio off "$w" plpgsql_audited) r2=$(ratio on "$w" plpgsql_audited)
		if [ -n "$r$r2" ]; then echo "| $w | ${r:-–}× | ${r2:-–}× |"; fi
	done
	echo
	echo "![bidguard's throughput divided by each alternative's](results.png)"
} >"$md"

# The chart: one bar per (workload, alternative) and synchronous_commit setting.
dat=$(mktemp)
trap 'rm -f "$dat"' EXIT
syncs=$(cut -f1 "$tsv" | tail -n +2 | awk '!seen[$0]++' | tr '\n' ' ')
awk -F'\t' -v syncs="$syncs" 'NR > 1 && $3 != "bidguard" {
		key = $2 "/" $3; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
		r[key, $1] = $7 }
	END { ns = split(syncs, s, " ")
		for (i = 1; i <= n; i++) { line = "\"" order[i] "\""
			for (j = 1; j <= ns; j++) line = line " " ((order[i], s[j]) in r ? r[order[i], s[j]] : "NaN")
			print line } }' "$tsv" >"$dat"
if command -v gnuplot >/dev/null 2>&1; then
	plot="plot '$dat' using 2:xtic(1) title 'synchronous_commit = $(awk '{print $1}' <<<"$syncs")'"
	col=3
	for s in $(awk '{for (i = 2; i <= NF; i++) print $i}' <<<"$syncs"); do
		plot+=", '' using $col title 'synchronous_commit = $s'"
		col=$((col + 1))
	done
	gnuplot <<-EOF
		set terminal pngcairo size 1200,600 noenhanced font 'sans,10'
		set output '$dir/results.png'
		set title "bidguard's throughput divided by each alternative's (higher is better for bidguard)"
		set style data histograms
		set style histogram clustered gap 1
		set style fill solid 0.8 border -1
		set yrange [0:*]
		set grid ytics
		set xtics rotate by -35
		set rmargin 12
		set bmargin 9
		set ylabel 'ratio'
		set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linecolor rgb 'black'
		$plot
	EOF
fi
# Throughput against clients: one panel per workload, bidguard and its peer.
if command -v gnuplot >/dev/null 2>&1 && [ -f "$dir/clients.tsv" ] && [ "$(wc -l <"$dir/clients.tsv")" -gt 1 ]; then
	wls=$(awk -F'\t' 'NR > 1 {print $1}' "$dir/clients.tsv" | awk '!seen[$0]++')
	nw=$(wc -w <<<"$wls")
	cols=3 rows=$(((nw + 2) / 3))
	{
		echo "set terminal pngcairo size 1350,$((rows * 380)) noenhanced font 'sans,9'"
		echo "set output '$dir/clients.png'"
		echo "set multiplot layout $rows,$cols title 'throughput (tps) against clients, synchronous_commit = off'"
		echo "set logscale x 2; set xrange [0.8:80]; set xtics (1, 4, 16, 64); set grid; set key bottom right; set yrange [0:*]"
		for w in $wls; do
			peer=$(awk -F'\t' -v w="$w" 'NR > 1 && $1 == w && $2 != "bidguard" {print $2; exit}' "$dir/clients.tsv")
			awk -F'\t' -v w="$w" 'NR > 1 && $1 == w && $2 == "bidguard" {print $3, $4}' "$dir/clients.tsv" >"$dat.$w.b"
			awk -F'\t' -v w="$w" -v p="$peer" 'NR > 1 && $1 == w && $2 == p {print $3, $4}' "$dir/clients.tsv" >"$dat.$w.p"
			echo "set title '$w'"
			echo "plot '$dat.$w.b' using 1:2 with linespoints title 'bidguard', '$dat.$w.p' using 1:2 with linespoints title '$peer'"
		done
		echo "unset multiplot"
	} | gnuplot
	rm -f "$dat".*
fi
cat "$md"
