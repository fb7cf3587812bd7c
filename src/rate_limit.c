/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *	  Rate limits: "at most max_count units of a key within any window of
 *	  length per", decided in the caller's transaction.  The SQL functions
 *	  bidguard_rate_limit(key, max_count, per, cost),
 *	  bidguard_rate_limit(key, cost) (the configured limit) and
 *	  bidguard_prune_rate_events(), and the decision the rate-limit guard
 *	  (rate_guard.c) makes for each row.
 *
 * The algorithm is a sliding window log.  Every admitted call is one row
 * (key, at, cost, expires_at = at + per) of bidguard_rate_events; a call of
 * cost c is admitted when the units of the key's rows in (now - per, now]
 * plus c are at most max_count.  Why a log and not GCRA or a windowed
 * counter: it is exact for the rule as users state it (GCRA admits up to
 * 2 * max_count - 1 in some window of length per; a fixed window twice the
 * limit across its boundary), the rows are ordinary rows of the caller's
 * transaction (a rollback removes them, so the quota comes back, and an
 * abort can never leak units), and what was admitted can be audited with a
 * query.  The price is one index row per admitted call, pruned by the
 * key's next admitted call and by bidguard_prune_rate_events().
 *
 * Locking protocol
 * ----------------
 * 1. The key's lock: a transaction-scoped exclusive lock of class RATE
 *    (25093), key bidguard_lock_key('rate', key), waiting as lock_timeout
 *    allows (55P03).  Every decision on a key happens under it, so two
 *    callers at the last unit decide one after the other.  It is held to the
 *    end of the transaction: the next caller sees the units this one took,
 *    or, after a rollback, sees them gone.
 * 2. Then the window is read (index range scan on (key, at)).  READ
 *    COMMITTED reads it with a fresh snapshot; REPEATABLE READ and
 *    SERIALIZABLE read it with the transaction snapshot and the latest one,
 *    and a difference (units committed after the snapshot was taken) is
 *    40001, as for trades.
 * 3. An admitted call inserts its row and deletes the key's rows whose
 *    window has passed.  The SQL runs as the owner of bidguard_rate_events,
 *    security-restricted, search_path pinned; callers need INSERT on it
 *    (checked first, 42501), not DELETE, so nobody can take back units
 *    through the functions.
 *
 * Times are bidguard_now() (bidguard.test_clock in tests), read once the
 * key's lock is held; windows are computed on the UTC wall clock, as the
 * cooldowns are.
 *
 * src/rate_limit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bidguard.h"
#include "guards.h"
#include "rate_limit.h"

static Interval *
zero_interval(void)
{
	return palloc0(sizeof(Interval));
}

/* a - b, or 0 when a is not later */
static Interval *
ts_diff(TimestampTz a, TimestampTz b)
{
	if (a <= b)
		return zero_interval();
	return DatumGetIntervalP(DirectFunctionCall2(timestamp_mi,
												 TimestampGetDatum(a),
												 TimestampGetDatum(b)));
}

/*
 * bidguard_check_rate_limit
 *		max_count > 0 and per a positive, finite interval (22023).
 */
void
bidguard_check_rate_limit(int32 max_count, Interval *per)
{
	static const Interval zero = {0, 0, 0};

	if (max_count <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be positive"),
				 errdetail("The max_count given is %d.", max_count)));
	if (INTERVAL_NOT_FINITE(per) ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(per),
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per must be a positive, finite interval"),
				 errdetail("The per given is %s.", bidguard_interval_text(per))));
}

/*
 * The window's units and rows, and its latest row's time (*last, when there
 * is one), read with snap (or the active snapshot).
 */
static void
rate_read_window(SPIPlanPtr plan, Datum *values, Snapshot snap, int64 *units, int64 *rows,
				 TimestampTz *last)
{
	bool		isnull;

	if (snap == InvalidSnapshot)
		bidguard_spi_check(SPI_execute_plan(plan, values, NULL, false, 1),
						   SPI_OK_SELECT, "reading a rate window");
	else
		bidguard_spi_check(SPI_execute_snapshot(plan, values, NULL, snap,
												InvalidSnapshot, false, false, 1),
						   SPI_OK_SELECT, "reading a rate window");
	*units = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull));
	*rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										2, &isnull));
	*last = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											  3, &isnull));
	if (isnull)
		*last = 0;
}

/*
 * rate_time_until_freed
 *		How long until "need" (> 0) units of the window (now - per, now] have
 *		left it: walking the rows from the oldest, the row at which the units
 *		so far reach need leaves at its at + per.  Every row has at least one
 *		unit, so it is among the first "need" rows: no more are read.
 */
static Interval *
rate_time_until_freed(Oid nspid, Datum *values, int64 need, Interval *per, TimestampTz now)
{
	SPIPlanPtr	plan = bidguard_plan(nspid, BG_PLAN_RATE_UNITS);
	int64		acc = 0;

	bidguard_spi_check(SPI_execute_plan(plan, values, NULL, false, need),
					   SPI_OK_SELECT, "reading a rate window");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		TimestampTz at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc,
														   1, &isnull));

		acc += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										   2, &isnull));
		if (acc >= need)
			return ts_diff(bidguard_ts_plus(at, per), now);
	}
	elog(ERROR, "bidguard: a rate window holds fewer units than it counted");
	pg_unreachable();
}

/*
 * bidguard_rate_events_relid
 *		bidguard_rate_events of the extension in nspid (42P01 when it is
 *		gone); with check_acl, 42501 unless the caller may INSERT into it.
 *		Looked up once per call, before any lock is queued.
 */
Oid
bidguard_rate_events_relid(Oid nspid, bool check_acl)
{
	Oid			relid = get_relname_relid("bidguard_rate_events", nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.bidguard_rate_events\" does not exist",
						get_namespace_name(nspid))));
	if (check_acl && pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table bidguard_rate_events"),
				 errdetail("bidguard_rate_limit() records the units it admits there."),
				 errhint("The extension's owner can GRANT INSERT ON bidguard_rate_events to the workers' role.")));
	return relid;
}

/*
 * bidguard_rate_decide
 *		Take the key's lock, then admit "cost" units of key under (max_count,
 *		per) or not; fill *out.  cost 0 asks without taking anything.  The
 *		caller has checked the arguments and looked up events_relid
 *		(bidguard_rate_events_relid).
 */
void
bidguard_rate_decide(Oid nspid, Oid events_relid, text *key, int32 max_count,
					 Interval *per, int32 cost, RateDecision *out)
{
	GuardAsOwner save;
	SPIPlanPtr	plan;
	Datum		values[4];
	TimestampTz now;
	TimestampTz window_start;
	TimestampTz last;
	int64		units;
	int64		rows;

	if (cost > max_count)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost %d exceeds max_count %d", cost, max_count),
				 errdetail("A call of this cost could never be admitted.")));

	bidguard_lock_class(BIDGUARD_LOCK_CLASS_RATE,
						bidguard_hash_key("rate", 4, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	guard_as_owner_begin(bidguard_rel_owner(events_relid), &save);

	now = bidguard_now();
	window_start = bidguard_ts_minus(now, per);
	values[0] = PointerGetDatum(key);
	values[1] = TimestampTzGetDatum(window_start);
	plan = bidguard_plan(nspid, BG_PLAN_RATE_WINDOW);
	if (IsolationUsesXactSnapshot())
	{
		int64		units_then;
		int64		rows_then;

		TimestampTz last_then;

		rate_read_window(plan, values, InvalidSnapshot, &units_then, &rows_then, &last_then);
		rate_read_window(plan, values, GetLatestSnapshot(), &units, &rows, &last);
		if (units != units_then || rows != rows_then)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("The rate window of key \"%s\" was changed after this transaction's snapshot was taken.",
							   text_to_cstring(key)),
					 errhint("Retry the transaction.")));
	}
	else
		rate_read_window(plan, values, InvalidSnapshot, &units, &rows, &last);

	out->allowed = units + cost <= max_count;
	if (out->allowed && cost > 0)
	{
		values[1] = TimestampTzGetDatum(now);
		values[2] = Int32GetDatum(cost);
		values[3] = TimestampTzGetDatum(bidguard_ts_plus(now, per));
		bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_RATE_INSERT),
											values, NULL, false, 0),
						   SPI_OK_INSERT, "recording a rate event");
		values[1] = TimestampTzGetDatum(window_start);
		values[2] = TimestampTzGetDatum(now);
		bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_RATE_PRUNE_KEY),
											values, NULL, false, 0),
						   SPI_OK_DELETE, "pruning rate events");
		units += cost;
		rows++;
		last = now;
		values[1] = TimestampTzGetDatum(window_start);
	}

	/*
	 * remaining: units left now.  retry_after: when admitted, how long until
	 * another call of this cost would be (0: now); when not, how long until
	 * this one would be.  reset_after: until the window is empty.
	 */
	out->remaining = (int32) Max(0, max_count - units);
	if (rows == 0)
	{
		out->retry_after = zero_interval();
		out->reset_after = zero_interval();
	}
	else
	{
		int64		need = units + Max(cost, 1) - max_count;

		out->retry_after = need <= 0 ? zero_interval() :
			rate_time_until_freed(nspid, values, need, per, now);
		out->reset_after = ts_diff(bidguard_ts_plus(last, per), now);
	}
	guard_as_owner_end(&save);
	/* the intervals are in the caller's context: SPI_finish would free them */
	out->retry_after = (Interval *) SPI_datumTransfer(IntervalPGetDatum(out->retry_after),
													  false, sizeof(Interval));
	out->reset_after = (Interval *) SPI_datumTransfer(IntervalPGetDatum(out->reset_after),
													  false, sizeof(Interval));
	SPI_finish();

	bidguard_count(out->allowed ? BG_STAT_RATE_ALLOWED : BG_STAT_RATE_LIMITED);
}

/*
 * bidguard_rate_configured
 *		The limit of bidguard_rate_limits whose key_prefix is the longest one
 *		key starts with; false when none.  Read as the table's owner.
 */
bool
bidguard_rate_configured(Oid nspid, text *key, int32 *max_count, Interval **per)
{
	GuardAsOwner save;
	Datum		values[1];
	bool		found;
	Oid			relid = get_relname_relid("bidguard_rate_limits", nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.bidguard_rate_limits\" does not exist",
						get_namespace_name(nspid))));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	guard_as_owner_begin(bidguard_rel_owner(relid), &save);
	values[0] = PointerGetDatum(key);
	bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_RATE_CONFIG),
										values, NULL, false, 1),
					   SPI_OK_SELECT, "reading bidguard_rate_limits");
	found = SPI_processed == 1;
	if (found)
	{
		bool		isnull;

		*max_count = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		*per = (Interval *) SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc,
															2, &isnull),
											  false, sizeof(Interval));
	}
	guard_as_owner_end(&save);
	SPI_finish();
	return found;
}

static int32
rate_arg_cost(FunctionCallInfo fcinfo, int argno)
{
	int32		cost;

	bidguard_arg_not_null(fcinfo, argno, "cost");
	cost = PG_GETARG_INT32(argno);
	if (cost < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must not be negative"),
				 errdetail("The cost given is %d.", cost)));
	return cost;
}

static Datum
rate_return(FunctionCallInfo fcinfo, RateDecision *d)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = BoolGetDatum(d->allowed);
	values[1] = Int32GetDatum(d->remaining);
	values[2] = IntervalPGetDatum(d->retry_after);
	values[3] = IntervalPGetDatum(d->reset_after);
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

static void
rate_check_callable(void)
{
	bidguard_check_writable("bidguard_rate_limit()");
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot apply a rate limit during a parallel operation")));
}

/*
 * bidguard_rate_limit(key text, max_count integer, per interval,
 *					   cost integer DEFAULT 1)
 * RETURNS TABLE (allowed boolean, remaining integer, retry_after interval,
 *				  reset_after interval)
 *
 * Admits cost units of key unless the window would then hold more than
 * max_count.  22004 for a NULL, 22023 for a key of 0 or more than 256
 * characters, max_count <= 0, per not positive and finite, cost < 0 or
 * cost > max_count; 42501 without INSERT on bidguard_rate_events; 40001
 * under a transaction snapshot the window changed after; 55P03 when
 * lock_timeout expires.  Locks: the key's RATE lock, to the end of the
 * transaction.
 */
PG_FUNCTION_INFO_V1(bidguard_rate_limit);
Datum
bidguard_rate_limit(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	text	   *key = bidguard_arg_id(fcinfo, 0, "key");
	int32		max_count;
	Interval   *per;
	int32		cost;
	Oid			events;
	RateDecision d;

	bidguard_arg_not_null(fcinfo, 1, "max_count");
	bidguard_arg_not_null(fcinfo, 2, "per");
	max_count = PG_GETARG_INT32(1);
	per = PG_GETARG_INTERVAL_P(2);
	cost = rate_arg_cost(fcinfo, 3);
	bidguard_check_rate_limit(max_count, per);
	rate_check_callable();
	events = bidguard_rate_events_relid(nspid, true);

	bidguard_rate_decide(nspid, events, key, max_count, per, cost, &d);
	return rate_return(fcinfo, &d);
}

/*
 * bidguard_rate_limit(key text, cost integer DEFAULT 1)
 *
 * The same under the configured limit (bidguard_rate_limits, longest
 * key_prefix); 42704 when no prefix matches.
 */
PG_FUNCTION_INFO_V1(bidguard_rate_limit_configured);
Datum
bidguard_rate_limit_configured(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	text	   *key = bidguard_arg_id(fcinfo, 0, "key");
	int32		cost = rate_arg_cost(fcinfo, 1);
	int32		max_count;
	Interval   *per;
	Oid			events;
	RateDecision d;

	rate_check_callable();
	events = bidguard_rate_events_relid(nspid, true);
	if (!bidguard_rate_configured(nspid, key, &max_count, &per))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no rate limit is configured for key \"%s\"", text_to_cstring(key)),
				 errhint("Add a row to bidguard_rate_limits whose key_prefix the key starts with ('' matches every key), or pass max_count and per.")));
	bidguard_rate_decide(nspid, events, key, max_count, per, cost, &d);
	return rate_return(fcinfo, &d);
}

/*
 * bidguard_prune_rate_events() RETURNS bigint
 *
 * Deletes the rows of bidguard_rate_events whose window has passed
 * (expires_at <= now), as the caller: it needs DELETE on the table.
 * Maintenance for keys not called again (a key's admitted calls prune its
 * own rows).  Locks: the rows it deletes.
 */
PG_FUNCTION_INFO_V1(bidguard_prune_rate_events);
Datum
bidguard_prune_rate_events(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	Datum		values[1];
	uint64		n;

	bidguard_check_writable("bidguard_prune_rate_events()");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = TimestampTzGetDatum(bidguard_now());
	bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_RATE_PRUNE),
										values, NULL, false, 0),
					   SPI_OK_DELETE, "pruning rate events");
	n = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}
