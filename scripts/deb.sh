#!/usr/bin/env bash
# scripts/deb.sh — the Debian package postgresql-15-bidguard, built from the
# working tree with pg_buildext (debian/), installed and tested: what `make deb`
# and `make deb-check` run (CI runs `make deb-check`; .ci/run).
#
# Usage: scripts/deb.sh [--build-only]
#
#   (no option)   make deb-check: build, install, check, test (below); the last
#                 line is exactly `deb: N passed, M failed` (N and M count the
#                 pg_regress and isolation tests; a step that fails before the
#                 tests counts as one failure).  Exits non-zero on any failure.
#   --build-only  make deb: build the .deb and print where it is; no install.
#
# Steps, as root (apt-get and dpkg need it):
#  1. copy the working tree, as git sees it (`git ls-files -co --exclude-standard`:
#     tracked and new files, no .git, nothing .gitignore lists, i.e. no build
#     products), into a fresh mktemp directory under ${TMPDIR:-/tmp}, outside
#     the clone: a clean clone and a developer's tree give the same package, and
#     the tree is left as it was.
#  2. install what is missing: dpkg-dev, debhelper, postgresql-server-dev-all,
#     PostgreSQL MAJOR's server, client and headers (apt-get update first, only
#     when something is missing), then whatever `dpkg-checkbuilddeps` still finds
#     missing from debian/control's Build-Depends (`apt-get build-dep`).
#  3. `dpkg-buildpackage -b -us -uc` with the nocheck build profile and option:
#     pg_buildext builds and installs into debian/PKG once per major in
#     debian/pgversions (15: Debian 12 has no postgresql-18 package, see there).
#     The build-time tests are skipped because step 6 runs them against the
#     installed package (BIDGUARD_DEB_BUILD_CHECK=1 runs them at build time too,
#     on pg_virtualenv's cluster).  The .debs (and the -dbgsym one) are copied to
#     BIDGUARD_DEB_DIR.
#  4. `dpkg -i` the package (over any installed version, same version included),
#     then check that `dpkg -S` names postgresql-MAJOR-bidguard as the owner of
#     $(pg_config --pkglibdir)/bidguard.so, bidguard.control and every script the
#     Makefile installs (DATA, DATA_built: sql/bidguard--*.sql and the scale-out
#     kits' control and sql files), and that `dpkg --verify` finds them intact.
#  5. a throwaway PostgreSQL MAJOR cluster (scripts/cluster.sh, as the postgres
#     user; shared_preload_libraries = 'bidguard', max_prepared_transactions =
#     10), which must offer bidguard at bidguard.control's default_version.
#  6. `make installcheck` in another copy of the tree, as the cluster's owner,
#     once with ISOLATION= (the pg_regress suite, REGRESS) and once with REGRESS=
#     (the isolation suite, ISOLATION), so that a failure in the first does not
#     hide the second.  PGXS's installcheck runs only pg_regress and
#     pg_isolation_regress from the pgxs directory against PGHOST/PGPORT: it
#     neither builds nor installs anything, so the server uses the packaged
#     files; the script checks that no build product appeared in the copy and
#     that `dpkg --verify` still passes afterwards.
# The cluster is stopped and removed on exit (also on failure or a signal), and
# so is the build directory.  The package stays installed: CI installs it on the
# machine.  A later `make install` from a tree simply overwrites the same files
# under /usr/lib/postgresql/15 and /usr/share/postgresql/15 (dpkg --verify then
# reports them as changed); `apt-get remove postgresql-15-bidguard` deletes them.
#
# Environment (all optional):
#   BIDGUARD_DEB_DIR          where the .debs are left (default $BIDGUARD_CACHE/deb,
#                             i.e. /var/cache/bidguard/deb as root; scripts/cache.sh)
#   BIDGUARD_DEB_BUILD_CHECK  1 = also run the build-time tests (dh_pgxs_test)
#   INSTALLCHECK_TIMEOUT      seconds per suite (default 900)
#   KEEP_BUILD=1              keep the build directory (its path is printed)
#   KEEP_CLUSTER=1            keep the cluster (scripts/cluster.sh)
set -euo pipefail

# `make deb-check` runs us from a recipe: the inner makes are not its children.
unset MAKEFLAGS MFLAGS MAKELEVEL GNUMAKEFLAGS MAKEOVERRIDES 2>/dev/null || true

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
build_only=0
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deb.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

PASSED=0
FAILED=0
BUILD_DIR=""

say() { echo "deb: $*"; }

# The last line: `deb: N passed, M failed` (make deb-check), after the cluster's
# own cleanup (scripts/cluster.sh keeps this EXIT handler and runs it last).
# shellcheck disable=SC2317  # called by the EXIT trap
on_exit() {
    local rc=$?
    if [ -n "$BUILD_DIR" ] && [ -d "$BUILD_DIR" ]; then
        if [ "${KEEP_BUILD:-0}" = 1 ]; then
            say "KEEP_BUILD=1: build directory left in $BUILD_DIR"
        else
            rm -rf "$BUILD_DIR"
        fi
    fi
    if [ "$build_only" = 0 ]; then
        if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
            FAILED=1
        fi
        echo "deb: $PASSED passed, $FAILED failed"
    fi
    # The exit status stays the script's.  (Returning it from here, when a
    # function called exit, makes bash complain "pop_var_context".)
    return 0
}
trap on_exit EXIT

die() {
    echo "deb: ERROR: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root: it installs build dependencies and the package (apt-get, dpkg -i)"
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "this needs a Debian system (apt-get, dpkg)"
fi

# ---------------------------------------------------------------- what to build
if [ ! -f "$ROOT/debian/changelog" ] || [ ! -f "$ROOT/debian/pgversions" ]; then
    die "no debian/changelog or debian/pgversions in $ROOT"
fi
VERSION="$(sed -nE '1s/^bidguard \(([^)]+)\).*/\1/p' "$ROOT/debian/changelog")"
[ -n "$VERSION" ] || die "cannot read the version from the first line of debian/changelog"
# The package's upstream version is the distribution's (META.json "version").
if [ -x /usr/bin/python3 ]; then
    meta_version="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
        "$ROOT/META.json")" || die "cannot read META.json's version"
    [ "${VERSION%-*}" = "$meta_version" ] ||
        die "debian/changelog says $VERSION, META.json says $meta_version: add a debian/changelog entry (dch -v $meta_version)"
fi
# The majors pg_buildext builds for: the lines of debian/pgversions that are
# plain major numbers (this script installs and tests each).
mapfile -t MAJORS < <(sed -nE 's/^([0-9]+)[[:space:]]*$/\1/p' "$ROOT/debian/pgversions")
[ "${#MAJORS[@]}" -gt 0 ] || die "debian/pgversions names no major version"
PKGS="$(printf 'postgresql-%s-bidguard ' "${MAJORS[@]}")"
PKGS="${PKGS% }"
ARCH="$(dpkg --print-architecture)"
DEB_DIR="${BIDGUARD_DEB_DIR:-}"
if [ -z "$DEB_DIR" ]; then
    # shellcheck source=scripts/cache.sh
    . "$ROOT/scripts/cache.sh"
    DEB_DIR="$BIDGUARD_CACHE/deb"
fi

# ---------------------------------------------------------------- 1. copy
# copy_tree DEST: the working tree's files as git sees them (tracked, and new
# files that are not ignored; deleted ones skipped), else (no git) everything
# but .git, cleaned with `make clean`.
copy_tree() {
    local dest="$1"
    mkdir -p "$dest"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -z -co --exclude-standard |
            while IFS= read -r -d '' f; do
                if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
            done | tar --null -T - -cf -) | tar -C "$dest" -xf -
    else
        tar -C "$ROOT" --exclude=./.git -cf - . | tar -C "$dest" -xf -
        make -s -C "$dest" clean >/dev/null 2>&1 || true
    fi
}

BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/bidguard-deb.XXXXXX")"
SRC="$BUILD_DIR/bidguard-$VERSION"
copy_tree "$SRC"
say "building $PKGS $VERSION from $ROOT in $SRC"

# ---------------------------------------------------------------- 2. dependencies
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600)
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        "${APT[@]}" update || die "apt-get update failed"
        apt_updated=1
    fi
}
installed() { # PKG: is it installed?
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}
need=(dpkg-dev debhelper postgresql-server-dev-all)
for m in "${MAJORS[@]}"; do
    need+=("postgresql-$m" "postgresql-client-$m" "postgresql-server-dev-$m")
done
missing=()
for p in "${need[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt_update_once
    "${APT[@]}" install --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
profiles=(-Pnocheck)
build_opts="nocheck"
if [ "${BIDGUARD_DEB_BUILD_CHECK:-0}" = 1 ]; then
    profiles=()
    build_opts=""
fi
if ! (cd "$SRC" && dpkg-checkbuilddeps "${profiles[@]}" >/dev/null 2>&1); then
    say "installing the build dependencies dpkg-checkbuilddeps finds missing"
    (cd "$SRC" && dpkg-checkbuilddeps "${profiles[@]}") || true
    apt_update_once
    "${APT[@]}" build-dep "${profiles[@]}" "$SRC" || die "apt-get build-dep failed"
fi

# ---------------------------------------------------------------- 3. build
build_log="$BUILD_DIR/build.log"
t0=$SECONDS
if ! (cd "$SRC" && DEB_BUILD_OPTIONS="${build_opts}${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}" \
        dpkg-buildpackage -b -us -uc "${profiles[@]}") >"$build_log" 2>&1 </dev/null; then
    echo "----- last 80 lines of $build_log -----"
    tail -n 80 "$build_log"
    echo "-----"
    die "dpkg-buildpackage failed"
fi
grep -E '^dpkg-deb: building package' "$build_log" | sed 's/^/deb: /' || true
mkdir -p "$DEB_DIR"
DEBS=()
for m in "${MAJORS[@]}"; do
    f="postgresql-$m-bidguard_${VERSION}_$ARCH.deb"
    [ -f "$BUILD_DIR/$f" ] || die "dpkg-buildpackage made no $f (see $build_log; KEEP_BUILD=1 keeps it)"
    DEBS+=("$DEB_DIR/$f")
done
cp "$BUILD_DIR"/*.deb "$DEB_DIR/"
say "built in $((SECONDS - t0)) s; packages in $DEB_DIR:"
for f in "$BUILD_DIR"/*.deb; do
    echo "  $DEB_DIR/$(basename "$f")"
done
if [ "$build_only" = 1 ]; then
    say "install with: dpkg -i ${DEBS[*]}"
    exit 0
fi

# ---------------------------------------------------------------- 4. install, check
say "dpkg -i ${DEBS[*]}"
dpkg -i "${DEBS[@]}" || die "dpkg -i failed (dependencies: ${need[*]})"

# verify_package PKG: are its installed files as dpkg installed them?  (dpkg
# --verify prints one line per changed file, but exits 0 for those.)
verify_package() {
    local out
    out="$(dpkg --verify "$1" 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }
    [ -z "$out" ] || { printf '%s\n' "$out" >&2; return 1; }
}

make_var() { # DIR PG_CONFIG VAR: a Makefile variable's value
    # shellcheck disable=SC2016  # $($*) is make's, not the shell's
    make -s --no-print-directory -C "$1" PG_CONFIG="$2" \
        --eval='bidguard-print-var-%: ; @printf "%s\n" "$($*)"' "bidguard-print-var-$3"
}

for m in "${MAJORS[@]}"; do
    pkg="postgresql-$m-bidguard"
    pgc="/usr/lib/postgresql/$m/bin/pg_config"
    [ -x "$pgc" ] || die "$pgc is missing (postgresql-server-dev-$m)"
    pkglibdir="$("$pgc" --pkglibdir)"
    extdir="$("$pgc" --sharedir)/extension"
    files=("$pkglibdir/bidguard.so" "$extdir/bidguard.control")
    for f in $(make_var "$SRC" "$pgc" DATA) $(make_var "$SRC" "$pgc" DATA_built); do
        files+=("$extdir/$(basename "$f")")
    done
    bad=0
    for f in "${files[@]}"; do
        owner="$(dpkg -S "$f" 2>/dev/null | sed -nE 's/^([^:]+): .*/\1/p' | head -n 1)"
        if [ "$owner" != "$pkg" ]; then
            echo "deb: $f belongs to ${owner:-no package}, not $pkg" >&2
            bad=1
        fi
    done
    [ "$bad" = 0 ] || die "$pkg does not own what the Makefile installs"
    verify_package "$pkg" || die "dpkg --verify $pkg: installed files differ from the package"
    say "$pkg $(dpkg-query -W -f='${Version}' "$pkg") installed; dpkg -S: it owns ${#files[@]} files" \
        "(bidguard.so, bidguard.control, $((${#files[@]} - 2)) scripts)"
done

# ---------------------------------------------------------------- 5., 6. test
# installcheck_suite NAME MAKE_ARGS...: one suite; adds to PASSED and FAILED.
installcheck_suite() {
    local name="$1" want="$2" diffs="$3"
    shift 3
    local log="$CLUSTER_DIR/installcheck-$name.log" rc=0
    say "$name: make installcheck $* ($want tests)"
    cluster_run_in "$CHECK" timeout -k 20 "${INSTALLCHECK_TIMEOUT:-900}" \
        env PG_REGRESS_DIFF_OPTS=-U3 make --no-print-directory installcheck \
        PG_CONFIG="$PGC" "$@" </dev/null 2>&1 | tee "$log" || rc=$?
    # PG 15: "test NAME ... ok|FAILED|failed (ignored)  N ms" (a parallel group
    # indents the name instead); PG 16 on (TAP): "ok N - NAME" / "not ok N - NAME".
    local ok_re='^((test +| +)[^ ]+ +\.\.\. +ok( |$)|ok +[0-9]+ +[-+] +[^ ]+)'
    local fail_re='^((test +| +)[^ ]+ +\.\.\. +(FAILED|failed)|not ok +[0-9]+ +[-+] +[^ ]+)'
    local pass fail
    pass="$(grep -cE "$ok_re" "$log" || true)"
    fail="$(grep -cE "$fail_re" "$log" || true)"
    # Tests never reported on (no connection, a crash, a timeout) failed too.
    local unreported=$((want - pass - fail))
    if [ "$unreported" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; }; then
        [ "$unreported" -gt 0 ] || unreported=1
        echo "deb: $name: make installcheck exited with status $rc; $unreported test(s) not reported"
        fail=$((fail + unreported))
        cluster_log_tail 40
    fi
    if [ "$fail" -gt 0 ] && [ -f "$diffs" ]; then
        echo "----- $diffs (first 1500 lines) -----"
        head -n 1500 "$diffs"
        echo "-----"
    fi
    say "$name: $pass passed, $fail failed"
    PASSED=$((PASSED + pass))
    FAILED=$((FAILED + fail))
}

for m in "${MAJORS[@]}"; do
    PGC="/usr/lib/postgresql/$m/bin/pg_config"
    export PG_CONFIG="$PGC"
    # shellcheck source=scripts/cluster.sh
    . "$ROOT/scripts/cluster.sh"
    cluster_start "shared_preload_libraries = 'bidguard'" "max_prepared_transactions = 10" ||
        die "the PostgreSQL $m cluster did not start"
    want_version="$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$SRC/bidguard.control")"
    got_version="$(cluster_psql -At -c "SELECT default_version FROM pg_available_extensions WHERE name = 'bidguard'")" ||
        die "cannot ask the server for bidguard"
    [ "$got_version" = "$want_version" ] ||
        die "the server offers bidguard '${got_version:-(none)}', bidguard.control says '$want_version'"
    say "PostgreSQL $m preloads bidguard and offers version $got_version"

    CHECK="$(cluster_mkdir check)"
    copy_tree "$CHECK"
    cluster_chown "$CHECK"
    n_regress="$(make_var "$CHECK" "$PGC" REGRESS | wc -w)"
    n_isolation="$(make_var "$CHECK" "$PGC" ISOLATION | wc -w)"
    installcheck_suite regress "$n_regress" "$CHECK/regression.diffs" ISOLATION=
    installcheck_suite isolation "$n_isolation" "$CHECK/output_iso/regression.diffs" REGRESS=

    # installcheck ran the suites only: nothing built in the copy, and the
    # installed files are still the package's.
    built="$(cd "$CHECK" && find . \( -name '*.o' -o -name '*.so' -o -name '*.bc' -o -name .pg-build-stamp \) -print | head -n 5)"
    if [ -n "$built" ] || [ -f "$CHECK/sql/bidguard--$want_version.sql" ]; then
        echo "deb: make installcheck built files in the tree copy: $built" >&2
        FAILED=$((FAILED + 1))
    fi
    if ! verify_package "postgresql-$m-bidguard"; then
        echo "deb: after installcheck, dpkg --verify postgresql-$m-bidguard fails: something" \
            "(a \`make install\`?) overwrote the packaged files while the suites ran" >&2
        FAILED=$((FAILED + 1))
    fi
    cluster_cleanup
    unset CLUSTER_DIR
done

say "$PKGS $VERSION stays installed (${DEBS[*]})"
# on_exit prints the last line, `deb: N passed, M failed`.
[ "$FAILED" -eq 0 ] || exit 1
exit 0
