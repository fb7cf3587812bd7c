# bidguard/Makefile — PGXS build, plus the project's test and demo entry points.
#
#   make && make install     build and install into the server that PG_CONFIG names
#                            (PG=18: the server of that major, see below)
#   make test                install what is missing, build, install, and run every suite
#                            against a throwaway cluster (scripts/run-tests.sh); with
#                            PG=18, on PostgreSQL 18, built from Debian's source package
#                            into a cache outside the clone when this machine lacks it
#   make test-matrix         make test on every major CI tests (PG_MATRIX, "15 18")
#   make test-scaleout       bidguard across nodes: PL/Proxy (proxy + 2 shards) and
#                            Citus (coordinator + 2 workers), race tests and a node
#                            stopped mid-run (test/scaleout; Citus built into the cache)
#   make demo                the same set-up, then the races with and without bidguard
#   make bench               bidguard against the alternatives, on this machine, with
#                            results in bench/results/ (bench/run.sh; BENCH_* settings)
#   make bench-scale         throughput at 10k, 1M and 10M rows, 1M bots (bench/scale.sh; long)
#   make bench-memory        one backend's memory after a million calls (bench/memory.sh)
#   make soak                a million contended operations at three isolation levels,
#                            with backend memory sampled (scripts/soak.sh; not in CI)
#   make deb                 the Debian package postgresql-15-bidguard, built from the
#                            working tree with pg_buildext (debian/) outside the clone,
#                            left in /var/cache/bidguard/deb (scripts/deb.sh; root)
#   make deb-check           make deb, then dpkg -i it, check that it owns the files, and
#                            run `make installcheck` against a throwaway cluster that
#                            uses the packaged files (in CI; the package stays installed)
#   make dist                the PGXN zip, NAME-VERSION.zip from META.json, of the
#                            committed HEAD (git archive; DIST_DIR, DIST_WORKTREE=1)
#   make dist-check          make dist, then check it: PGXN Meta Spec, layout, versions,
#                            a build from the zip (scripts/check-dist.py; in CI)

# PG=MAJOR chooses the server by major version (scripts/pg-config.sh): Debian's
# package where this Debian release has that major, else the build
# scripts/build-postgres.sh makes.  PG_CONFIG=/path/to/pg_config, when given
# too, wins.
ifdef PG
PG_CONFIG := $(shell bash $(dir $(lastword $(MAKEFILE_LIST)))scripts/pg-config.sh $(PG))
endif
PG_CONFIG ?= pg_config
PG_MATRIX ?= 15 18

EXTENSION = bidguard
# The version CREATE EXTENSION installs; bidguard.control's default_version and
# META.json say the same (test/t/000_versions.pl checks it).
EXTVERSION = 1.1

MODULE_big = bidguard
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))

# The install script of the current version is built from sql/bidguard.sql.
# Upgrade scripts (sql/bidguard--A--B.sql) are installed as they are, and so
# are the install scripts of released versions, frozen in sql/bidguard--X.Y.sql
# (CREATE EXTENSION bidguard VERSION 'X.Y'; the upgrade test starts from them).
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql)) $(SCALEOUT_DATA)
# The scale-out kits, installed with bidguard: scaleout/plproxy (bidguard_shard
# on each shard, bidguard_proxy on the proxy) and scaleout/citus (bidguard_citus).
SCALEOUT_DATA = $(wildcard scaleout/plproxy/*.control scaleout/plproxy/*--*.sql \
	scaleout/citus/*.control scaleout/citus/*--*.sql)
EXTRA_CLEAN = $(DATA_built) $(PG_BUILD_STAMP)

# pg_regress and isolation suites are discovered by wildcard (pgvector's way).
# They are run by scripts/run-tests.sh against a throwaway cluster, so that
# the same files serve installcheck on a developer's own server too.
TESTS = $(sort $(wildcard test/sql/*.sql))
REGRESS = $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=$(EXTENSION)

# The server's headers are read as system headers (-isystem wins over
# PGXS's -I for the same directory), so that -Wextra judges our code only:
# some of core's inline functions have parameters they do not use.
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS = -Wall -Wextra -Werror

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(wildcard src/*.h)

# The objects belong to the server they were compiled for.  The stamp names
# it, and changes when PG_CONFIG names another one, so that switching servers
# rebuilds them instead of linking one major's objects into another's module.
PG_BUILD_STAMP = .pg-build-stamp
# Its recipe also refuses an unsupported major before anything is compiled
# (src/compat.h has the same range in an #error for other build systems).
PG_SUPPORTED_MAJORS = 15 16 17 18
PG_BUILD_ID := $(shell $(PG_CONFIG) --version 2>/dev/null) $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)
PG_MAJOR := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
$(PG_BUILD_STAMP): FORCE
	@if [ -z "$(filter $(PG_SUPPORTED_MAJORS),$(PG_MAJOR))" ]; then \
		echo "bidguard supports PostgreSQL 15, 16, 17 and 18; $(PG_CONFIG) is $(or $(shell $(PG_CONFIG) --version 2>/dev/null),not found)" >&2; \
		echo "choose another server with PG_CONFIG=/path/to/pg_config (see doc/operations.md, Supported versions)" >&2; \
		exit 1; \
	fi
	@echo '$(PG_BUILD_ID)' | cmp -s - $@ || echo '$(PG_BUILD_ID)' >$@
$(OBJS): $(PG_BUILD_STAMP)
.PHONY: FORCE
FORCE:

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql
	cp $< $@

.PHONY: test test-matrix test-scaleout demo deps bench bench-scale bench-memory bench-scaleout soak

# make test TEST_ARGS="regress isolation" runs a subset; see scripts/run-tests.sh.
deps:
	@bash scripts/deps.sh

test:
	@$(if $(PG),PG='$(PG)' )PG_CONFIG='$(PG_CONFIG)' bash scripts/run-tests.sh $(TEST_ARGS)

# The scale-out suites (test/scaleout): a PL/Proxy proxy with two shards and a
# Citus coordinator with two workers, built and started as throwaway nodes.
test-scaleout:
	@$(if $(PG),PG='$(PG)' )PG_CONFIG='$(PG_CONFIG)' bash scripts/run-tests.sh scaleout $(TEST_ARGS)

test-matrix:
	@bash scripts/test-matrix.sh $(PG_MATRIX)

demo:
	@PG_CONFIG='$(PG_CONFIG)' bash scripts/demo.sh $(DEMO_ARGS)

bench:
	@bash bench/run.sh

bench-scale:
	@bash bench/scale.sh

bench-memory:
	@bash bench/memory.sh

# Through a PL/Proxy proxy (2 shards) and a Citus coordinator (2 workers) against
# one server (bench/scaleout.sh).
bench-scaleout:
	@PG_CONFIG='$(PG_CONFIG)' bash bench/scaleout.sh

soak:
	@PG_CONFIG='$(PG_CONFIG)' bash scripts/soak.sh

# The Debian package (debian/, scripts/deb.sh).  pg_buildext builds it with
# `dh --with pgxs_loop`: `make`, `make install` and `make clean` in the top
# directory, as a developer runs them, rather than a VPATH build per major in
# build-MAJOR/ (`--with pgxs`).  Every file list above is a wildcard relative to
# the top directory (src/*.c, sql/, scaleout/, test/), the rules that build
# sql/ and src/ files expect their directories to exist, and scripts read these
# variables (scripts/run-tests.sh): a VPATH build would need $(srcdir)/ on each
# of them and directories made in the build tree, for no gain here, where one
# major (15) is built in a copy of the tree made outside the clone anyway.
.PHONY: deb deb-check dist dist-check

deb:
	@bash scripts/deb.sh --build-only

deb-check:
	@bash scripts/deb.sh

# The PGXN distribution: $(DIST_NAME).zip (name and version from META.json) in
# DIST_DIR (default: the top directory), made by `git archive` (pgvector's way),
# so it holds the committed tree of DIST_REF (default HEAD), never uncommitted
# changes: commit first.  DIST_WORKTREE=1 zips the working tree's files instead
# (tracked and new, not ignored: git ls-files -co --exclude-standard), to check
# work before it is committed.  make dist-check checks the zip (and
# scripts/check-dist.py's own self-test); its last line is `dist: N passed, M failed`.
DIST_PYTHON = /usr/bin/python3
DIST_META = $(shell $(DIST_PYTHON) -c 'import json,sys; m = json.load(open(sys.argv[1])); print(m["name"] + "-" + m["version"])' META.json)
DIST_NAME = $(DIST_META)
DIST_DIR ?= .
DIST_REF ?= HEAD
DIST_ZIP = $(DIST_DIR)/$(DIST_NAME).zip

dist:
	@test -n '$(DIST_NAME)' || { echo 'dist: cannot read name and version from META.json' >&2; exit 1; }
	@mkdir -p '$(DIST_DIR)'
ifeq ($(DIST_WORKTREE),1)
	@$(DIST_PYTHON) scripts/check-dist.py --make-zip '$(DIST_ZIP)' --prefix '$(DIST_NAME)/'
else
	git archive --format zip --prefix='$(DIST_NAME)/' --output='$(DIST_ZIP)' $(DIST_REF)
	@if [ -n "$$(git status --porcelain 2>/dev/null)" ]; then \
		echo 'dist: note: uncommitted changes are not in the zip (it holds $(DIST_REF)); DIST_WORKTREE=1 zips the working tree'; \
	fi
	@echo 'dist: $(DIST_ZIP) ($(DIST_REF) $(shell git rev-parse --short $(DIST_REF) 2>/dev/null))'
endif

dist-check: dist
	@$(DIST_PYTHON) scripts/check-dist.py --self-test --build --pg-config '$(PG_CONFIG)' '$(DIST_ZIP)'
