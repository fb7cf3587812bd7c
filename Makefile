# bidguard/Makefile — PGXS build, plus the project's test and demo entry points.
#
#   make && make install     build and install into the server that PG_CONFIG names
#   make test                install what is missing, build, install, and run every suite
#                            against a throwaway cluster (scripts/run-tests.sh)
#   make demo                the same set-up, then the races with and without bidguard
#   make bench               bidguard against the alternatives, on this machine, with
#                            results in bench/results/ (bench/run.sh; BENCH_* settings)

PG_CONFIG ?= pg_config

EXTENSION = bidguard
EXTVERSION = 1.0

MODULE_big = bidguard
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))

# The install script is built from sql/bidguard.sql; upgrade scripts
# (sql/bidguard--A--B.sql) are installed as they are.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard sql/$(EXTENSION)--*--*.sql)
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
PG_BUILD_ID := $(shell $(PG_CONFIG) --version 2>/dev/null) $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)
$(PG_BUILD_STAMP): FORCE
	@echo '$(PG_BUILD_ID)' | cmp -s - $@ || echo '$(PG_BUILD_ID)' >$@
$(OBJS): $(PG_BUILD_STAMP)
.PHONY: FORCE
FORCE:

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql
	cp $< $@

.PHONY: test demo deps bench

# make test TEST_ARGS="regress isolation" runs a subset; see scripts/run-tests.sh.
deps:
	@bash scripts/deps.sh

test:
	@bash scripts/run-tests.sh $(TEST_ARGS)

demo:
	@bash scripts/demo.sh $(DEMO_ARGS)

bench:
	@bash bench/run.sh
