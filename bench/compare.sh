#!/usr/bin/env bash
# bench/compare.sh — run pgbench scripts side by side, interleaved (A B C A B C …),
# on the server libpq's environment names (PGHOST, PGPORT, PGDATABASE), and print
# each one's median throughput, its spread (min–max) and its ratio to the first.
#
#   bench/compare.sh [-c clients] [-T seconds] [-r rounds] [-R reset.sql]
#                    [-D var=value ...] label=script.pgbench ...
#
# -R runs a SQL file before every run (e.g. to empty the tables), so that each
# run starts from the same state.  Every -D is passed to pgbench.
set -euo pipefail

clients=16 seconds=10 rounds=3 reset= defs=()
while getopts "c:T:r:R:D:" opt; do
    case $opt in
        c) clients=$OPTARG ;;
        T) seconds=$OPTARG ;;
        r) rounds=$OPTARG ;;
        R) reset=$OPTARG ;;
        D) defs+=(-D "$OPTARG") ;;
        *) echo "usage: see the header of $0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "compare.sh: name at least one label=script" >&2; exit 2; }
threads=$(( clients < 2 ? 1 : 2 ))

declare -A tps
for ((r = 1; r <= rounds; r++)); do
    for pair in "$@"; do
        label=${pair%%=*} script=${pair#*=}
        [ -z "$reset" ] || psql -X -q -v ON_ERROR_STOP=1 -f "$reset" >/dev/null
        out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" \
                      "${defs[@]}" -f "$script" 2>&1) || { echo "$out" >&2; exit 1; }
        t=$(awk '/^tps = /{print $3}' <<<"$out")
        failed=$(awk '/number of failed transactions/{print $5}' <<<"$out")
        tps[$label]+="$t "
        printf '  round %d  %-28s %9.0f tps%s\n' "$r" "$label" "$t" \
            "$([ "${failed:-0}" = 0 ] || echo "  ($failed failed)")"
    done
done

first=
for pair in "$@"; do
    label=${pair%%=*}
    read -r med lo hi < <(tr ' ' '\n' <<<"${tps[$label]}" | grep . | sort -g |
        awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; print m, a[1], a[NR]}')
    [ -n "$first" ] || first=$med
    printf '  %-28s median %9.0f tps  (min %.0f, max %.0f)  ratio to %s %.2f\n' \
        "$label" "$med" "$lo" "$hi" "${1%%=*}" "$(awk -v a="$med" -v b="$first" 'BEGIN{print a/b}')"
done
