#!/usr/bin/env bash
# bench/report.sh DIR — turn DIR/results.tsv (bench/run.sh) and, when present,
# DIR/scale.tsv (bench/scale.sh) into DIR/results.md, with issue 7's targets
# met or not, and DIR/results.png, a chart of bidguard's throughput divided by
# each alternative's (gnuplot).  Prints results.md.
set -euo pipefail
dir=${1:?usage: bench/report.sh DIR}
tsv=$dir/results.tsv
[ -f "$tsv" ] || { echo "report: no $tsv" >&2; exit 1; }
md=$dir/results.md

ratio() { # SYNC WORKLOAD ALTERNATIVE: bidguard's throughput / the alternative's
	awk -F'\t' -v s="$1" -v w="$2" -v a="$3" '$1 == s && $2 == w && $3 == a {print $7}' "$tsv"
}

verdict() { # VALUE OP TARGET
	[ -n "$1" ] || { echo "not measured"; return; }
	awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "**not met**" }'
}

{
	echo "# bidguard benchmarks"
	echo
	echo "Produced by \`make bench\` (bench/run.sh, bench/report.sh) on $(date -u '+%Y-%m-%d %H:%M UTC');"
	echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo);"
	echo "PostgreSQL $(pg_config --version | awk '{print $2}'). Ratios are bidguard's median throughput divided by the"
	echo "alternative's, measured in the same run, interleaved; latencies are pooled over the rounds."
	for sync in $(cut -f1 "$tsv" | tail -n +2 | awk '!seen[$0]++'); do
		echo
		echo "## synchronous_commit = $sync"
		echo
		echo "| workload | alternative | median tps (min–max) | bidguard ÷ this | p50 ms | p99 ms |"
		echo "|---|---|---|---|---|---|"
		awk -F'\t' -v s="$sync" 'NR > 1 && $1 == s {
			printf "| %s | %s | %\047d (%\047d–%\047d) | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$tsv"
	done
	echo
	echo "## Targets (synchronous_commit = off)"
	echo
	echo "| target | measured | |"
	echo "|---|---|---|"
	for w in bids_hot bids_cold; do
		r=$(ratio off "$w" on_conflict); echo "| create_bid ≥ 1.0× ON CONFLICT ($w) | ${r:-–}× | $(verdict "$r" ">=" 1.0) |"
		r=$(ratio off "$w" plpgsql); echo "| create_bid ≥ 1.25× PL/pgSQL ($w) | ${r:-–}× | $(verdict "$r" ">=" 1.25) |"
	done
	for w in trades_10 trades_10k; do
		r=$(ratio off "$w" exclusion); echo "| try_trade ≥ 1.0× exclusion constraint ($w) | ${r:-–}× | $(verdict "$r" ">=" 1.0) |"
		r=$(ratio off "$w" plpgsql); echo "| try_trade ≥ 1.25× PL/pgSQL ($w) | ${r:-–}× | $(verdict "$r" ">=" 1.25) |"
	done
	for w in bids_hot bids_cold trades_10 trades_10k; do
		r=$(ratio off "$w" redis_lock); echo "| ≥ 3× the Redis lock ($w) | ${r:-–}× | $(verdict "$r" ">=" 3) |"
	done
	r=$(ratio off guarded_insert unguarded)
	echo "| guarded plain INSERT ≥ 0.85× unguarded | ${r:-–}× | $(verdict "$r" ">=" 0.85) |"
	if [ -f "$dir/scale.tsv" ]; then
		for w in $(awk -F'\t' 'NR > 1 {print $2}' "$dir/scale.tsv" | awk '!seen[$0]++'); do
			r=$(awk -F'\t' -v w="$w" 'NR > 1 && $2 == w {
					if (min == "" || $1 < min) { min = $1; a = $3 } if ($1 > max) { max = $1; b = $3 } }
				END { if (a > 0) printf "%.2f", b / a }' "$dir/scale.tsv")
			echo "| $w at the largest size ≥ 0.8× at the smallest (bench/scale.sh) | ${r:-–}× | $(verdict "$r" ">=" 0.8) |"
		done
	else
		echo "| throughput at 10M rows ≥ 0.8× at 10k | – | not measured (run bench/scale.sh) |"
	fi
	echo
	echo "The targets' PL/pgSQL peers (\`plpgsql\`) write one row and nothing else. For"
	echo "reference, \`plpgsql_audited\` is PL/pgSQL that also keeps what bidguard keeps"
	echo "besides the guard: the same CHECKs, keys and foreign keys, and an audit event"
	echo "per change in the same transaction (bench/peers.sql (c)); it is not a target."
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
cat "$md"
