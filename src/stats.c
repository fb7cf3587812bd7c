/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Shared-memory statistics: what the guards did, and how long bidguard's
 *	  locks made callers wait.
 *
 * With shared_preload_libraries = 'bidguard' the counters live in one
 * shared struct of 64-bit atomics, reserved through shmem_request_hook and
 * set up in shmem_startup_hook (the previous hooks are chained, as in
 * pg_stat_statements).  Counting is one atomic add on the path that made
 * the decision: no lock of any kind, no per-backend state, nothing to flush.
 * The maximum wait is kept with a compare-and-swap loop.  The counters
 * count attempts, committed or not, since the last reset or server start;
 * they are not crash-safe and are not written to disk.
 *
 * Without preloading, the pointer stays NULL, counting does nothing, and the
 * SQL functions that read the counters raise 55000 with a hint.
 *
 * Locks: none.
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "bidguard.h"

/* Upper bounds, in milliseconds, of the lock-wait histogram's buckets. */
static const double wait_bounds_ms[BG_WAIT_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

typedef struct BidguardSharedStats
{
	pg_atomic_uint64 counters[BG_NUM_STATS];
	pg_atomic_uint64 wait_total_us;
	pg_atomic_uint64 wait_max_us;
	pg_atomic_uint64 wait_buckets[BG_WAIT_BUCKETS + 1];	/* + the +Inf bucket */
	pg_atomic_uint64 reset_at;	/* TimestampTz */
} BidguardSharedStats;

static BidguardSharedStats *shared_stats = NULL;

/* bidguard.track_stats: count, or not (for measuring the cost of counting) */
bool		bidguard_track_stats = true;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
stats_reset_all(BidguardSharedStats *s)
{
	int			i;

	for (i = 0; i < BG_NUM_STATS; i++)
		pg_atomic_write_u64(&s->counters[i], 0);
	pg_atomic_write_u64(&s->wait_total_us, 0);
	pg_atomic_write_u64(&s->wait_max_us, 0);
	for (i = 0; i <= BG_WAIT_BUCKETS; i++)
		pg_atomic_write_u64(&s->wait_buckets[i], 0);
	pg_atomic_write_u64(&s->reset_at, (uint64) GetCurrentTimestamp());
}

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BidguardSharedStats)));
}

static void
stats_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_stats = ShmemInitStruct("bidguard statistics",
								   sizeof(BidguardSharedStats), &found);
	if (!found)
	{
		for (i = 0; i < BG_NUM_STATS; i++)
			pg_atomic_init_u64(&shared_stats->counters[i], 0);
		pg_atomic_init_u64(&shared_stats->wait_total_us, 0);
		pg_atomic_init_u64(&shared_stats->wait_max_us, 0);
		for (i = 0; i <= BG_WAIT_BUCKETS; i++)
			pg_atomic_init_u64(&shared_stats->wait_buckets[i], 0);
		pg_atomic_init_u64(&shared_stats->reset_at, (uint64) GetCurrentTimestamp());
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * bidguard_stats_init
 *		Called by _PG_init while shared_preload_libraries is being processed.
 */
void
bidguard_stats_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

void
bidguard_count(BidguardStat stat)
{
	if (shared_stats != NULL && bidguard_track_stats)
		pg_atomic_fetch_add_u64(&shared_stats->counters[stat], 1);
}

/*
 * bidguard_count_wait
 *		A wait for one of bidguard's locks, of "us" microseconds, that did or
 *		did not end with the lock.
 */
void
bidguard_count_wait(int64 us, bool obtained)
{
	uint64		max;
	int			b;

	if (shared_stats == NULL || !bidguard_track_stats)
		return;
	if (us < 0)
		us = 0;
	pg_atomic_fetch_add_u64(&shared_stats->counters[BG_STAT_LOCK_WAITED], 1);
	if (!obtained)
		pg_atomic_fetch_add_u64(&shared_stats->counters[BG_STAT_LOCK_TIMEOUTS], 1);
	pg_atomic_fetch_add_u64(&shared_stats->wait_total_us, (uint64) us);
	max = pg_atomic_read_u64(&shared_stats->wait_max_us);
	while ((uint64) us > max &&
		   !pg_atomic_compare_exchange_u64(&shared_stats->wait_max_us, &max, (uint64) us))
		;
	for (b = 0; b < BG_WAIT_BUCKETS; b++)
		if ((double) us <= wait_bounds_ms[b] * 1000.0)
			break;
	pg_atomic_fetch_add_u64(&shared_stats->wait_buckets[b], 1);
}

static void
require_shared_stats(void)
{
	if (shared_stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bidguard statistics are not available"),
				 errhint("Add bidguard to shared_preload_libraries and restart the server.")));
}

/*
 * The counters each version's bidguard_stats() returns: 1.0 has the first
 * ten (bids, trades, locks); 1.1 added the rate-limit and slot counters.
 * Counters are only ever appended to the enum, so each version's columns are
 * a prefix of it.
 */
#define BG_NUM_STATS_1_0	(BG_STAT_LOCK_TIMEOUTS + 1)

/*
 * One row: the first ncounters counters, the total and maximum lock wait in
 * milliseconds, and when they were last reset.
 */
static Datum
stats_row(FunctionCallInfo fcinfo, int ncounters)
{
	TupleDesc	tupdesc;
	Datum		values[BG_NUM_STATS + 3];
	bool		nulls[BG_NUM_STATS + 3];
	int			i,
				n = 0;

	require_shared_stats();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncounters + 3)
		elog(ERROR, "bidguard_stats: expected %d result columns, got %d",
			 ncounters + 3, tupdesc->natts);

	memset(nulls, 0, sizeof(nulls));
	for (i = 0; i < ncounters; i++)
		values[n++] = Int64GetDatum((int64) pg_atomic_read_u64(&shared_stats->counters[i]));
	values[n++] = Float8GetDatum(pg_atomic_read_u64(&shared_stats->wait_total_us) / 1000.0);
	values[n++] = Float8GetDatum(pg_atomic_read_u64(&shared_stats->wait_max_us) / 1000.0);
	values[n++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&shared_stats->reset_at));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * bidguard_stats() RETURNS record, as 1.1 declares it (C symbol
 * bidguard_stats_1_1)
 *
 * The counters, the total and maximum lock wait in milliseconds, and when
 * they were last reset.  55000 without preloading.  Locks: none.
 */
PG_FUNCTION_INFO_V1(bidguard_stats_1_1);
Datum
bidguard_stats_1_1(PG_FUNCTION_ARGS)
{
	return stats_row(fcinfo, BG_NUM_STATS);
}

/*
 * bidguard_stats() RETURNS record, as 1.0 declared it (C symbol
 * bidguard_stats): the 1.0 counters only.  Kept so that a database still at
 * 1.0 works against this library until ALTER EXTENSION bidguard UPDATE (the
 * way pg_stat_statements keeps its older symbols).  Locks: none.
 */
PG_FUNCTION_INFO_V1(bidguard_stats);
Datum
bidguard_stats(PG_FUNCTION_ARGS)
{
	return stats_row(fcinfo, BG_NUM_STATS_1_0);
}

/*
 * bidguard_lock_wait_histogram() RETURNS TABLE (le_ms double precision,
 *												 count bigint)
 *
 * Lock waits by upper bound, cumulative as Prometheus histograms are: each
 * row counts the waits of at most le_ms milliseconds; the last bound is
 * Infinity.  55000 without preloading.  Locks: none.
 */
PG_FUNCTION_INFO_V1(bidguard_lock_wait_histogram);
Datum
bidguard_lock_wait_histogram(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		cumulative = 0;
	int			b;

	require_shared_stats();
	bidguard_init_srf(fcinfo);
	for (b = 0; b <= BG_WAIT_BUCKETS; b++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		cumulative += pg_atomic_read_u64(&shared_stats->wait_buckets[b]);
		values[0] = Float8GetDatum(b < BG_WAIT_BUCKETS ? wait_bounds_ms[b]
								   : get_float8_infinity());
		values[1] = Int64GetDatum((int64) cumulative);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * bidguard_stats_reset() RETURNS void
 *
 * Zeroes the counters and the histogram.  55000 without preloading.
 * Readers may see a reset half done; counters are statistics, not
 * accounts.  Locks: none.
 */
PG_FUNCTION_INFO_V1(bidguard_stats_reset);
Datum
bidguard_stats_reset(PG_FUNCTION_ARGS)
{
	require_shared_stats();
	stats_reset_all(shared_stats);
	PG_RETURN_VOID();
}
