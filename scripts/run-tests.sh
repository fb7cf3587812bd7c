#!/usr/bin/env bash
# scripts/run-tests.sh — build, install and run every bidguard test suite against
# throwaway clusters (what `make test` and CI run).
#
# Usage: scripts/run-tests.sh [--no-deps] [--no-build] [PHASE[:NAME[,NAME...]] | FILE]...
#
#   PHASE   regress    pg_regress       test/sql/*.sql      -> test/expected/*.out
#           isolation  pg_isolation_regress test/specs/*.spec -> test/expected/*.out
#           pgtap      pg_prove         test/pgtap/*.sql    (fresh database per file)
#           tap        prove            test/t/*.pl         (PostgreSQL::Test::Cluster)
#           scaleout   prove            test/scaleout/*.pl  (PL/Proxy and Citus clusters;
#                                       `make test-scaleout`; builds Citus into the cache)
#   No argument runs every phase but scaleout, in that order.  `regress:bids,trades` runs only
#   those files of a phase; a path such as test/specs/bid_race.spec works too.
#
# Steps: scripts/deps.sh -> make -> make install -> start a cluster
# (scripts/cluster.sh: shared_preload_libraries = 'bidguard', as the `postgres` OS
# user when root; plus test/cluster.conf if it exists) -> copy the project (no .git, no build products) into a scratch
# directory the cluster owner writes to, so the source tree stays clean -> the
# phases -> a summary whose last line is exactly `N passed, N failed`.  Exits
# non-zero when anything failed, could not run, or when no test ran at all.
#
# Environment:
#   PG                    the server by major version (make test PG=18): Debian's
#                         package when this release has that major, else a build of
#                         Debian's source package in the cache, made when missing
#                         (scripts/pg-config.sh, scripts/build-postgres.sh)
#   PG_CONFIG             pg_config of the target server (default: pg_config in PATH;
#                         with PG too, it must be of that major)
#   BIDGUARD_UPGRADE_FROM pg_configs (":" between) of the older servers that
#                         test/t/013_pg_upgrade.pl upgrades from (default, when the
#                         server under test is newer than 15: Debian's installed 15
#                         and the oldest other 15 release apt offers, unpacked by
#                         scripts/extract-postgres.sh; bidguard is built and
#                         installed into each first); "none": skip
#   BIDGUARD_REQUIRE_UPGRADE=1   013 fails, rather than skips, without an old server
#   BIDGUARD_REQUIRE_CITUS=1     002_citus fails, rather than skips, without Citus (CI sets it)
#   KEEP_CLUSTER=1        keep the cluster running and its directory (with every
#                         phase's output, regression.diffs and TAP logs) for debugging
#   SKIP_DEPS=1           like --no-deps: do not run scripts/deps.sh
#   SKIP_BUILD=1          like --no-build: neither make nor make install
#   REGRESS_TIMEOUT       seconds for the whole pg_regress phase       (default 1200)
#   ISOLATION_TIMEOUT     seconds for the whole isolation phase        (default 1200)
#   PGTAP_TIMEOUT         seconds per pgTAP file                        (default 300)
#   TAP_TIMEOUT           seconds per TAP file                          (default 900)
#   TEST_BUDGET           seconds for the whole run; every timeout above is capped
#                         by what is left, and files not started in time fail (3600)
#   SAVE_NEW_EXPECTED=1   for a regress test or spec that has no expected file yet,
#                         copy this run's output to test/expected/NAME.out in the
#                         source tree (never overwrites; the test still counts as
#                         failed in that run): review the file before committing it
#   PROVE_FLAGS           extra flags for prove (e.g. --verbose)
#   PG_TEST_NOCLEAN, PG_TEST_TIMEOUT_DEFAULT, PG_TEST_EXTRA, TEMP_CONFIG
#                         passed through to the TAP tests (PostgreSQL::Test::*)
set -euo pipefail

# `make test` runs us from a recipe: drop make's own variables so that the inner
# make calls neither print directories nor look for a parent's jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL GNUMAKEFLAGS MAKEOVERRIDES 2>/dev/null || true

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PG_CONFIG="${PG_CONFIG:-pg_config}"

ALL_PHASES=(regress isolation pgtap tap scaleout)
# What runs when no phase is named: scaleout is `make test-scaleout`'s.
DEFAULT_PHASES=(regress isolation pgtap tap)
declare -A PHASE_DIR=([regress]=test/sql [isolation]=test/specs [pgtap]=test/pgtap [tap]=test/t [scaleout]=test/scaleout)
declare -A PHASE_EXT=([regress]=sql [isolation]=spec [pgtap]=sql [tap]=pl [scaleout]=pl)
declare -A FILTER=()
PHASES=()

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; }

add_phase() { # PHASE [NAMES]
    local p="$1" names="${2:-}"
    case " ${PHASES[*]-} " in *" $p "*) ;; *) PHASES+=("$p") ;; esac
    if [ -n "$names" ]; then
        FILTER[$p]="${FILTER[$p]-} ${names//,/ }"
    else
        FILTER[$p]="${FILTER[$p]-} *"
    fi
}

for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        --no-deps) SKIP_DEPS=1 ;;
        --no-build) SKIP_BUILD=1 ;;
        -*) echo "run-tests.sh: unknown option: $arg (see --help)" >&2; exit 2 ;;
        test/sql/* | ./test/sql/*) add_phase regress "$(basename "$arg" .sql)" ;;
        test/specs/* | ./test/specs/*) add_phase isolation "$(basename "$arg" .spec)" ;;
        test/pgtap/* | ./test/pgtap/*) add_phase pgtap "$(basename "$arg" .sql)" ;;
        test/t/* | ./test/t/*) add_phase tap "$(basename "$arg" .pl)" ;;
        test/scaleout/* | ./test/scaleout/*) add_phase scaleout "$(basename "$arg" .pl)" ;;
        *)
            phase="${arg%%:*}"
            names=""
            [ "$phase" = "$arg" ] || names="${arg#*:}"
            case "$phase" in
                regress | pg_regress | sql) phase=regress ;;
                isolation | iso | specs | spec) phase=isolation ;;
                pgtap | pg_prove) phase=pgtap ;;
                tap | perl | prove | t) phase=tap ;;
                scaleout | scale-out) phase=scaleout ;;
                *) echo "run-tests.sh: unknown phase '$phase' (regress, isolation, pgtap, tap, scaleout)" >&2; exit 2 ;;
            esac
            add_phase "$phase" "$names"
            ;;
    esac
done
if [ "${#PHASES[@]}" -eq 0 ]; then
    for p in "${DEFAULT_PHASES[@]}"; do add_phase "$p"; done
else
    # Run in the canonical order whatever order they were given in.
    sel=("${PHASES[@]}")
    PHASES=()
    for p in "${ALL_PHASES[@]}"; do
        case " ${sel[*]} " in *" $p "*) PHASES+=("$p") ;; esac
    done
fi

# ---------------------------------------------------------------- bookkeeping
TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()
FAILED_NAMES=()
_FINISHED=""
CHILD_PID=""
START_TIME=$SECONDS

# The whole run's time budget (CI stops at 90 minutes, deps and build included):
# every timeout is capped by what is left of it.
TEST_BUDGET="${TEST_BUDGET:-3600}"
budget_left() { echo $((TEST_BUDGET - (SECONDS - START_TIME))); }
budget_cap() { # SECONDS -> min(SECONDS, what is left), at least 1
    local left
    left="$(budget_left)"
    [ "$left" -ge 1 ] || left=1
    if [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}

section() { printf '\n======== %s ========\n' "$*"; }
pg_major_of() { # PG_CONFIG -> its major version, or nothing
    "$1" --version 2>/dev/null | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p' || true
}
note() { echo "run-tests: $*"; }

record() { # PHASE PASS FAIL SECONDS [NOTE]
    TOTAL_PASS=$((TOTAL_PASS + $2))
    TOTAL_FAIL=$((TOTAL_FAIL + $3))
    SUMMARY+=("$(printf '  %-10s %4d ok %4d failed  %5ss  %s' "$1" "$2" "$3" "$4" "${5:-}")")
}

finish() {
    local rc=$?
    [ -z "$_FINISHED" ] || return 0
    _FINISHED=1
    if [ -n "${CLUSTER_CAUGHT_SIGNAL:-}" ]; then
        TOTAL_FAIL=$((TOTAL_FAIL + 1))
        FAILED_NAMES+=("interrupted(SIG$CLUSTER_CAUGHT_SIGNAL)")
    elif [ "$rc" -ne 0 ] && [ "$TOTAL_FAIL" -eq 0 ]; then
        # Stopped by an error or a signal before anything was counted as failed.
        TOTAL_FAIL=$((TOTAL_FAIL + 1))
        FAILED_NAMES+=("harness (exit status $rc)")
    fi
    section "summary ($((SECONDS - START_TIME)) s)"
    local line
    for line in "${SUMMARY[@]}"; do echo "$line"; done
    if [ "${#FAILED_NAMES[@]}" -gt 0 ]; then
        echo "  failed: ${FAILED_NAMES[*]}"
    fi
    if [ $((TOTAL_PASS + TOTAL_FAIL)) -eq 0 ]; then
        echo "  no test ran: that is a failure"
    fi
    echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
    if [ "$TOTAL_FAIL" -gt 0 ] || [ "$TOTAL_PASS" -eq 0 ]; then
        exit 1
    fi
    exit 0
}
trap finish EXIT

setup_failed() { # WHAT
    FAILED_NAMES+=("$1")
    record "$1" 0 1 0 "could not run"
    exit 1
}

# ---------------------------------------------------------------- build
section "dependencies and build"
# PG=MAJOR chooses the server by major; a pg_config that exists is used as given.
if [ -n "${PG:-}" ]; then
    if ! [ -x "$(command -v "$PG_CONFIG" 2>/dev/null || true)" ] ||
        { [ "$PG_CONFIG" = pg_config ] && [ "$(pg_major_of pg_config)" != "$PG" ]; }; then
        PG_CONFIG="$("$ROOT/scripts/pg-config.sh" --build "$PG")" || setup_failed "server(PostgreSQL $PG)"
    fi
    export PG_MAJOR="$PG"
fi
if [ "${SKIP_DEPS:-0}" != 1 ]; then
    "$ROOT/scripts/deps.sh" || setup_failed deps
fi
PG_MAJOR="$(pg_major_of "$PG_CONFIG")"
if [ -n "${PG:-}" ] && [ "$PG_MAJOR" != "$PG" ]; then
    echo "run-tests: PG=$PG, but $PG_CONFIG is PostgreSQL ${PG_MAJOR:-?}" >&2
    setup_failed "server(PostgreSQL $PG)"
fi
BINDIR="$("$PG_CONFIG" --bindir)"
PKGLIBDIR="$("$PG_CONFIG" --pkglibdir)"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
PGXS_DIR="$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")"
PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
PG_ISOLATION_REGRESS="$PGXS_DIR/src/test/isolation/pg_isolation_regress"
PG_PERL_LIB="$PGXS_DIR/src/test/perl"
note "PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}') from $BINDIR; running as $(id -un)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$PG_CONFIG" || setup_failed build
    if [ "$(id -u)" -eq 0 ] || { [ -w "$PKGLIBDIR" ] && [ -w "$EXTDIR" ]; }; then
        make install PG_CONFIG="$PG_CONFIG" || setup_failed install
    else
        # Not allowed to install: go on only if what is installed is what we built.
        stale=""
        cmp -s bidguard.so "$PKGLIBDIR/bidguard.so" || stale="$stale $PKGLIBDIR/bidguard.so"
        for f in bidguard.control sql/bidguard--*.sql; do
            [ -e "$f" ] || continue
            cmp -s "$f" "$EXTDIR/$(basename "$f")" || stale="$stale $EXTDIR/$(basename "$f")"
        done
        if [ -n "$stale" ]; then
            echo "run-tests: cannot install: $PKGLIBDIR or $EXTDIR is not writable by $(id -un)," >&2
            echo "run-tests: and the installed copy differs from this build:$stale" >&2
            echo "run-tests: run 'sudo make install PG_CONFIG=$PG_CONFIG' (or make test as root) first" >&2
            setup_failed install
        fi
        note "not root: using the installed bidguard, which matches this build"
    fi
fi

# ---------------------------------------------------------------- helpers
# The value of a variable of the Makefile, as PGXS ends up with it.
make_var() {
    # shellcheck disable=SC2016  # $($*) is make's, not the shell's
    make -s --no-print-directory PG_CONFIG="$PG_CONFIG" \
        --eval='bidguard-print-var-%: ; @printf "%s\n" "$($*)"' "bidguard-print-var-$1" 2>/dev/null
}

# The tests of a phase, into TESTS: the Makefile's list when it has one (regress,
# isolation), else the files; then only the names asked for on the command line.
# Names asked for that do not exist go into MISSING: they count as failures.
select_tests() { # PHASE
    local p="$1" dir="${PHASE_DIR[$1]}" ext="${PHASE_EXT[$1]}" list="" f want name
    local -  # the option below is restored on return
    TESTS=()
    MISSING=()
    case "$p" in
        regress) list="$(make_var REGRESS || true)" ;;
        isolation) list="$(make_var ISOLATION || true)" ;;
    esac
    if [ -z "$list" ]; then
        for f in "$dir"/*."$ext"; do
            [ -e "$f" ] && list="$list $(basename "$f" ."$ext")"
        done
    fi
    set -f  # filters are patterns, not globs over the current directory
    for name in $list; do
        for want in ${FILTER[$p]}; do
            # shellcheck disable=SC2053
            if [[ "$name" == $want ]]; then
                TESTS+=("$name")
                break
            fi
        done
    done
    for want in ${FILTER[$p]}; do
        [ "$want" != "*" ] || continue
        # shellcheck disable=SC2086,SC2116  # $list on one line, single spaces
        case " $(echo $list) " in
            *" $want "*) ;;
            *)
                MISSING+=("$want")
                FAILED_NAMES+=("$p/$want(no such test)")
                echo "run-tests: $p: no such test: $want"
                ;;
        esac
    done
}

# A phase with nothing to run: skipped, or failed when named tests are missing.
no_tests() { # PHASE
    if [ "${#MISSING[@]}" -gt 0 ]; then
        record "$1" 0 "${#MISSING[@]}" 0 "named tests not found"
    else
        note "$1: no files in ${PHASE_DIR[$1]}: skipped"
        SUMMARY+=("$(printf '  %-10s skipped (no %s/*.%s)' "$1" "${PHASE_DIR[$1]}" "${PHASE_EXT[$1]}")")
    fi
}

# Run CMD as the cluster owner in DIR under a timeout, output to LOG (and, with
# SHOW=1, to the screen as it comes).  Returns CMD's status (124: timed out).
# `timeout` leads its own process group, so the cleanup can stop the whole group.
run_logged() { # LOG DIR SECONDS CMD...
    local log="$1" dir="$2" secs="$3"
    shift 3
    local -a as=()
    if _cluster_switching_user; then as=(runuser -u "$CLUSTER_OWNER" --); fi
    : >"$log"
    (
        trap - INT QUIT TERM
        cd "$dir"
        exec timeout -k 20 "$secs" "${as[@]}" env PATH="$BINDIR:$PATH" "$@"
    ) >>"$log" 2>&1 </dev/null &
    CHILD_PID=$!
    local tail_pid=""
    if [ "${SHOW:-0}" = 1 ]; then
        tail -n +1 -s 0.5 -f --pid="$CHILD_PID" "$log" &
        tail_pid=$!
    fi
    local rc=0
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    [ -z "$tail_pid" ] || wait "$tail_pid" 2>/dev/null || true
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "run-tests: TIMED OUT after ${secs}s: ${*: -1}" | tee -a "$log"
    fi
    return "$rc"
}

kill_child() {
    if [ -n "$CHILD_PID" ]; then
        kill -TERM -- "-$CHILD_PID" 2>/dev/null || kill -TERM "$CHILD_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$CHILD_PID" 2>/dev/null || true
        CHILD_PID=""
    fi
}

print_file() { # FILE [MAXLINES]
    local f="$1" max="${2:-1000}" n
    [ -f "$f" ] || return 0
    n="$(wc -l <"$f")"
    echo "----- $f$([ "$n" -gt "$max" ] && echo " (first $max of $n lines)") -----"
    head -n "$max" "$f"
    echo "----- end of $f -----"
}

# ---------------------------------------------------------------- cluster
section "cluster"
# shellcheck source=scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
# test/cluster.conf, when the tests have one, is appended to the cluster's
# postgresql.conf (after the defaults of scripts/cluster.sh, so it overrides them).
extra_conf=()
if [ -f "$ROOT/test/cluster.conf" ]; then
    mapfile -t extra_conf <"$ROOT/test/cluster.conf"
    note "adding test/cluster.conf to postgresql.conf"
fi
cluster_start "${extra_conf[@]}" || setup_failed cluster
cluster_at_exit kill_child
WORK="$(cluster_mkdir work)"
# A copy of the project the cluster owner can read and write in: the suites'
# results/, regression.diffs and TAP tmp_check go there, never into the tree.
tar -C "$ROOT" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
    --exclude=./results --exclude=./output_iso --exclude=./tmp_check \
    --exclude=./log --exclude=./test/results -cf - . | tar -C "$WORK" -xf -
cluster_chown "$WORK"

# ---------------------------------------------------------------- phases
# pg_regress and pg_isolation_regress: one run over all files; one line per test.
run_pg_regress_phase() { # PHASE DRIVER MAKEVAR_OPTS DEFAULT_DB TIMEOUT
    local p="$1" driver="$2" optvar="$3" db="$4" secs t0=$SECONDS
    secs="$(budget_cap "$5")"
    local -a opts=()
    local n
    select_tests "$p"
    if [ "${#TESTS[@]}" -eq 0 ]; then
        no_tests "$p"
        return 0
    fi
    local -a tests=("${TESTS[@]}")
    local miss="${#MISSING[@]}"
    read -r -a opts <<<"$(make_var "$optvar" || true)"
    [ "${#opts[@]}" -gt 0 ] || opts=(--inputdir=test --load-extension=bidguard)
    case " ${opts[*]} " in *" --dbname="*) ;; *) opts+=("--dbname=$db") ;; esac
    local out="$WORK/out_$p"
    mkdir -p "$out"
    cluster_chown "$out"
    # A test without an expected file would stop pg_regress ("diff command
    # failed") before the tests after it.  Give it an empty one in the copy: it
    # fails, its whole output shows in regression.diffs, and the rest still run.
    local inputdir=. o
    for o in "${opts[@]}"; do
        case "$o" in --inputdir=*) inputdir="${o#--inputdir=}" ;; esac
    done
    local -a noexp=()
    for n in "${tests[@]}"; do
        if ! compgen -G "$inputdir/expected/$n.out" >/dev/null &&
            ! compgen -G "$inputdir/expected/${n}_[0-9].out" >/dev/null; then
            noexp+=("$n")
            mkdir -p "$WORK/$inputdir/expected"
            : >"$WORK/$inputdir/expected/$n.out"
            cluster_chown "$WORK/$inputdir/expected"
        fi
    done
    local log="$WORK/$p.log" rc=0
    note "$p: ${#tests[@]} test(s): $(basename "$driver") ${opts[*]} --outputdir=$out"
    [ "${#noexp[@]}" -eq 0 ] || note "$p: no $inputdir/expected/NAME.out for: ${noexp[*]} (they fail)"
    SHOW=1 run_logged "$log" "$WORK" "$secs" "$driver" --inputdir=. --bindir="$BINDIR" \
        "${opts[@]}" --outputdir="$out" --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
        "${tests[@]}" || rc=$?
    # Two formats.  PG 15: "test NAME ... ok|FAILED|failed (ignored)  N ms", a
    # parallel group indenting the name instead of "test".  PG 16 on (TAP):
    # "ok N - NAME  N ms" and "not ok N - NAME  N ms", "+" for a parallel group.
    local pass fail
    local ok_re='^((test +| +)[^ ]+ +\.\.\. +ok( |$)|ok +[0-9]+ +[-+] +[^ ]+)'
    local fail_re='^((test +| +)[^ ]+ +\.\.\. +(FAILED|failed)|not ok +[0-9]+ +[-+] +[^ ]+)'
    pass="$(grep -cE "$ok_re" "$log" || true)"
    fail="$(grep -cE "$fail_re" "$log" || true)"
    while read -r n; do
        FAILED_NAMES+=("$p/$n")
    done < <(grep -E "$fail_re" "$log" |
        sed -E 's/^(test +| +)([^ ]+) +\.\.\..*/\2/; s/^not ok +[0-9]+ +[-+] +([^ ]+).*/\1/')
    # Tests the driver never reported on (it could not connect, create the
    # database or load the extension, it crashed, it timed out, or it printed a
    # format this script does not know) failed too: never a silent pass.
    local unreported=$(( ${#tests[@]} - pass - fail ))
    if [ "$unreported" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; }; then
        [ "$unreported" -gt 0 ] || unreported=1
        fail=$((fail + unreported))
        FAILED_NAMES+=("$p($unreported not reported; $(basename "$driver") exit $rc)")
        echo "run-tests: $p: $(basename "$driver") exited with status $rc; $unreported test(s) not reported"
        cluster_log_tail 40
    fi
    if [ "$fail" -gt 0 ]; then
        print_file "$out/regression.diffs" 1500
    fi
    for n in "${noexp[@]}"; do
        [ -f "$out/results/$n.out" ] || continue
        if [ "${SAVE_NEW_EXPECTED:-0}" = 1 ] && [ "$rc" -le 1 ] &&
            [ ! -e "$ROOT/$inputdir/expected/$n.out" ]; then
            cp "$out/results/$n.out" "$ROOT/$inputdir/expected/$n.out"
            note "$p: SAVE_NEW_EXPECTED=1: wrote $inputdir/expected/$n.out from this run: review it"
        else
            note "$p: $n has no expected output; SAVE_NEW_EXPECTED=1 would save this run's as $inputdir/expected/$n.out"
        fi
    done
    record "$p" "$pass" $((fail + miss)) $((SECONDS - t0))
}

# pg_prove and prove: one run per file.
run_per_file_phase() { # PHASE
    local p="$1" t0=$SECONDS pass=0 fail=0 skipped=0 skip_why
    select_tests "$p"
    if [ "${#TESTS[@]}" -eq 0 ]; then
        no_tests "$p"
        return 0
    fi
    local -a tests=("${TESTS[@]}")
    local miss="${#MISSING[@]}"
    local out="$WORK/out_$p"
    mkdir -p "$out"
    cluster_chown "$out"
    note "$p: ${#tests[@]} file(s)"
    local name file log rc t1 detail
    for name in "${tests[@]}"; do
        file="${PHASE_DIR[$p]}/$name.${PHASE_EXT[$p]}"
        log="$out/$name.log"
        rc=0
        t1=$SECONDS
        if [ "$(budget_left)" -le 0 ]; then
            fail=$((fail + 1))
            FAILED_NAMES+=("$p/$name(not run: TEST_BUDGET)")
            printf '  FAILED  %-40s not run: the %ss TEST_BUDGET is spent\n' "$file" "$TEST_BUDGET"
            continue
        fi
        case "$p" in
            pgtap) run_pgtap_file "$name" "$file" "$log" || rc=$? ;;
            tap | scaleout) run_tap_file "$name" "$file" "$log" || rc=$? ;;
        esac
        detail="$(grep -E '^Files=[0-9]+, Tests=[0-9]+' "$log" | sed -E 's/^Files=[0-9]+, Tests=([0-9]+).*/\1 subtests/' | tail -n 1 || true)"
        skip_why="$(sed -nE 's/^[^ ]+ \.\. skipped: (.*)$/\1/p' "$log" | head -n 1)"
        if [ "$rc" -eq 0 ] && [ -n "$skip_why" ]; then
            skipped=$((skipped + 1))
            printf '  skipped %-40s %4ss  %s\n' "$file" $((SECONDS - t1)) "$skip_why"
        elif [ "$rc" -eq 0 ]; then
            pass=$((pass + 1))
            printf '  ok      %-40s %4ss  %s\n' "$file" $((SECONDS - t1)) "$detail"
        else
            fail=$((fail + 1))
            FAILED_NAMES+=("$p/$name")
            printf '  FAILED  %-40s %4ss  (exit %s)\n' "$file" $((SECONDS - t1)) "$rc"
            print_file "$log" 1500
            [ "$p" != tap ] && [ "$p" != scaleout ] || print_tap_logs "$name"
        fi
    done
    record "$p" "$pass" $((fail + miss)) $((SECONDS - t0)) \
        "$([ "$skipped" -eq 0 ] || echo "$skipped skipped, with the reason above (not counted)")"
}

PGTAP_DB=bidguard_pgtap
run_pgtap_file() { # NAME FILE LOG
    # A fresh database per file: each file creates the extensions it needs
    # (pgtap, bidguard) and may leave what it likes behind.
    if ! cluster_psql -d postgres -c "DROP DATABASE IF EXISTS $PGTAP_DB WITH (FORCE)" \
        -c "CREATE DATABASE $PGTAP_DB TEMPLATE template0" >"$3" 2>&1; then
        return 1
    fi
    run_logged "$3" "$WORK" "$(budget_cap "${PGTAP_TIMEOUT:-300}")" \
        pg_prove --psql-bin "$BINDIR/psql" --host "$PGHOST" --port "$PGPORT" \
        --username "$PGUSER" --dbname "$PGTAP_DB" --verbose --timer "$2"
}

# The released versions' sources (test/releases.txt), for the package-upgrade
# test: a git archive of each release's commit into $WORK/releases/VERSION,
# made here (the TAP test runs in a copy of the tree without .git, and maybe
# as another user).  A release whose commit is not in the history (a shallow
# clone) is left out, and the test says so and skips.
RELEASES_DONE=""
prepare_releases() {
    [ -z "$RELEASES_DONE" ] || return 0
    RELEASES_DONE=1
    local version commit
    mkdir -p "$WORK/releases"
    while read -r version commit _; do
        case "$version" in '' | '#'*) continue ;; esac
        if git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null; then
            mkdir -p "$WORK/releases/$version"
            git -C "$ROOT" archive "$commit" | tar -x -C "$WORK/releases/$version"
        else
            note "tap: release $version ($commit) is not in this clone's history"
        fi
    done <"$ROOT/test/releases.txt"
    cluster_chown "$WORK/releases"
    BIDGUARD_RELEASES="$WORK/releases"
}

# test/t/013_pg_upgrade.pl's old servers: BIDGUARD_UPGRADE_FROM (pg_configs,
# ":" between them), or, when the server under test is newer than 15, Debian's
# installed PostgreSQL 15 (when its headers are there) and the oldest other 15
# release apt offers, unpacked into the cache (scripts/extract-postgres.sh).
# bidguard is built for each in a scratch copy (the tree's objects stay those
# of the server under test) and installed into it.  Done once, before 013.
UPGRADE_FROM_DONE=""
prepare_upgrade_from() {
    [ -z "$UPGRADE_FROM_DONE" ] || return 0
    UPGRADE_FROM_DONE=1
    local from="${BIDGUARD_UPGRADE_FROM:-}" pgc ready="" n=0 sys extracted
    local -a list=()
    unset BIDGUARD_UPGRADE_FROM
    if [ "$from" = none ]; then
        note "tap: BIDGUARD_UPGRADE_FROM=none: no pg_upgrade test"
        return 0
    fi
    if [ -n "$from" ]; then
        IFS=: read -r -a list <<<"$from"
    elif [ "${PG_MAJOR:-0}" -le 15 ]; then
        note "tap: PostgreSQL $PG_MAJOR is the oldest supported major: nothing to upgrade from"
        return 0
    else
        sys=/usr/lib/postgresql/15/bin/pg_config
        if [ -f "$("$sys" --pgxs 2>/dev/null || true)" ]; then
            list+=("$sys")
        else
            note "tap: Debian's PostgreSQL 15 with its headers is not installed (make test PG=15 installs them)"
        fi
        if extracted="$("$ROOT/scripts/extract-postgres.sh" 15 --oldest | tail -n 1)" &&
            [ "$("$extracted" --version)" != "$("$sys" --version 2>/dev/null || true)" ]; then
            list+=("$extracted")
        fi
    fi
    for pgc in "${list[@]}"; do
        n=$((n + 1))
        local dir="$CLUSTER_DIR/upgrade-from-build-$n"
        mkdir -p "$dir"
        # (not the built install script of the current version: made there)
        tar -C "$ROOT" --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
            --exclude="sql/bidguard--$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$ROOT/bidguard.control").sql" \
            -cf - Makefile bidguard.control sql src | tar -C "$dir" -xf -
        note "tap: building and installing bidguard for $("$pgc" --version) ($pgc), for 013_pg_upgrade"
        if make -C "$dir" -s -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$pgc" >"$dir/build.log" 2>&1 &&
            make -C "$dir" -s PG_CONFIG="$pgc" install >>"$dir/build.log" 2>&1; then
            ready="${ready:+$ready:}$pgc"
        else
            print_file "$dir/build.log" 200
            note "tap: could not build and install bidguard for $pgc"
        fi
    done
    [ -z "$ready" ] || export BIDGUARD_UPGRADE_FROM="$ready"
}

# The scale-out phase's engines: PL/Proxy is Debian's package (scripts/deps.sh
# installs postgresql-MAJOR-plproxy where Debian has it); Citus is built once
# into the cache by scripts/build-citus.sh and installed from there.  A test
# whose engine is missing skips itself, with the reason.
prepare_scaleout() {
    if [ "$(id -u)" -eq 0 ] && [ "${SKIP_CITUS_BUILD:-0}" != 1 ]; then
        local log="$WORK/out_build_citus.log"
        note "scaleout: Citus for $("$PG_CONFIG" --version) (scripts/build-citus.sh)"
        # as root, not as the cluster's owner (run_logged): it installs into
        # the server's directories, and caches in /var/cache/bidguard
        if ! (cd "$ROOT" && exec timeout -k 20 "$(budget_cap 1200)" bash "$ROOT/scripts/build-citus.sh" \
                "$(command -v "$PG_CONFIG")") >"$log" 2>&1 </dev/null; then
            print_file "$log" 60
            note "scaleout: Citus is not available for this server; its test will skip"
        fi
    fi
}

run_tap_file() { # NAME FILE LOG
    local tapdir="$WORK/tmp_tap"
    mkdir -p "$tapdir/portlock"
    cluster_chown "$tapdir"
    local -a flags=()
    read -r -a flags <<<"${PROVE_FLAGS:-}"
    # What PGXS's prove_installcheck sets (TESTDIR, PATH, PG_REGRESS), plus a port
    # lock dir and TMPDIR inside our scratch dir (TAP clusters' sockets go to
    # TMPDIR: keep it short), and the passthroughs of PostgreSQL::Test::Utils.
    local -a envs=(
        -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGDATA
        TESTDIR="$tapdir"
        PG_REGRESS="$PG_REGRESS"
        PG_TEST_PORT_DIR="$tapdir/portlock"
        TMPDIR="$CLUSTER_DIR/tmp"
        PG_CONFIG="$(command -v "$PG_CONFIG")"
        BIDGUARD_SRCDIR="$WORK"
    )
    local v
    if [ "$1" = 013_pg_upgrade ]; then
        prepare_upgrade_from
    fi
    if [ "$1" = 022_package_upgrade ]; then
        prepare_releases
    fi
    for v in PG_TEST_NOCLEAN PG_TEST_TIMEOUT_DEFAULT PG_TEST_EXTRA TEMP_CONFIG \
        BIDGUARD_UPGRADE_FROM BIDGUARD_REQUIRE_UPGRADE BIDGUARD_REQUIRE_CITUS BIDGUARD_RELEASES; do
        [ -z "${!v+x}" ] || envs+=("$v=${!v}")
    done
    run_logged "$3" "$WORK" "$(budget_cap "${TAP_TIMEOUT:-900}")" env "${envs[@]}" \
        prove -I "$PG_PERL_LIB" -I test/t -I . "${flags[@]}" "$2"
}

print_tap_logs() { # NAME
    local logdir="$WORK/tmp_tap/tmp_check/log" f
    [ -d "$logdir" ] || return 0
    print_file_tail "$logdir/regress_log_$1" 200
    for f in "$logdir/$1"_*.log; do
        [ -e "$f" ] && print_file_tail "$f" 60
    done
    return 0
}

print_file_tail() { # FILE N
    [ -f "$1" ] || return 0
    echo "----- last $2 lines of $1 -----"
    tail -n "$2" "$1"
    echo "----- end of $1 -----"
}

# pg_regress and pg_isolation_regress both read test/expected/NAME.out: a spec
# named like a regress test would be compared with the regress test's output.
for f in test/specs/*.spec; do
    [ -e "$f" ] || continue
    n="$(basename "$f" .spec)"
    if [ -e "test/sql/$n.sql" ]; then
        echo "run-tests: WARNING: test/sql/$n.sql and test/specs/$n.spec share test/expected/$n.out; rename one"
    fi
done

for phase in "${PHASES[@]}"; do
    case "$phase" in
        regress)
            section "regress (pg_regress: test/sql -> test/expected)"
            run_pg_regress_phase regress "$PG_REGRESS" REGRESS_OPTS contrib_regression \
                "${REGRESS_TIMEOUT:-1200}"
            ;;
        isolation)
            section "isolation (pg_isolation_regress: test/specs -> test/expected)"
            run_pg_regress_phase isolation "$PG_ISOLATION_REGRESS" ISOLATION_OPTS \
                isolation_regression "${ISOLATION_TIMEOUT:-1200}"
            ;;
        pgtap)
            section "pgtap (pg_prove: test/pgtap)"
            run_per_file_phase pgtap
            ;;
        tap)
            section "tap (prove: test/t, PostgreSQL::Test::Cluster)"
            run_per_file_phase tap
            ;;
        scaleout)
            section "scaleout (prove: test/scaleout, PL/Proxy and Citus clusters)"
            prepare_scaleout
            run_per_file_phase scaleout
            ;;
    esac
done

# finish (the EXIT trap) prints the summary and sets the exit status; the
# cluster's own EXIT handler runs first and removes the cluster.
exit 0
