/*-------------------------------------------------------------------------
 *
 * trades.c
 *	  The trade guard: two counting trades of one bot are never closer than
 *	  the bot's cooldown, through bidguard_try_trade and plain SQL alike.
 *	  Here: the decision (trade_decide) and the functions; bidguard_trades'
 *	  trigger, which applies the same rule to plain SQL, is trade_trigger.c.
 *
 * A trade counts unless its status is 'failed'.  Its effective time is
 * coalesce(filled_at, created_at), as of a moment: its fill counts from the
 * time it was filled on.  The rule (SPEC 9, and what the audit view
 * bidguard_cooldown_violations checks) judges each trade at its admission
 * time t: no counting trade admitted before it may have an effective time,
 * as of t, within the cooldown before t.  A gap of exactly the cooldown is
 * no conflict.  A trade admitted now (bidguard_try_trade, an INSERT without
 * created_at) has only earlier trades to answer to.  A plain INSERT with a
 * created_at in the past is also an earlier trade of the trades admitted
 * after it, so it answers to both sides (trade_read_conflict):
 *   - a trade q admitted at or before t conflicts when its effective time as
 *     of t (its fill if filled by t, else its admission) is after t - cd;
 *   - a trade r admitted after t conflicts when the new trade's effective
 *     time as of r's admission (its fill if filled by then, else t) is after
 *     r's admission - cd.  What counts there is r's admission, not r's
 *     fill: a trade admitted 10 ms after t and filled a minute later was
 *     still admitted 10 ms after t.
 *
 * Locking protocol
 * ----------------
 * 0. On Citus, every entry point first places itself by its bot_id
 *    (placement.c): it runs only on the node that holds the bot's shard,
 *    and refuses (0A000) before taking any lock anywhere else, so that all
 *    of a bot's locks live in one lock space, beside its rows.
 * 1. The bot's lock (locks.c, class BOT, key bot_id) is held, to the end of
 *    the transaction, by whatever admits a trade or moves one in time:
 *    bidguard_try_trade, the cooldown trigger on INSERT and on UPDATEs that
 *    change bot_id or created_at or make a failed trade count again,
 *    bidguard_fill_trade and bidguard_fail_trade.  Admission therefore sees
 *    every earlier admission, fill and failure of the bot committed, and
 *    "ROLLBACK" after an admission gives the cooldown back.  A cooldown
 *    change (bidguard_set_cooldown) takes only the bots row: an admission
 *    concurrent with an uncommitted change uses the cooldown before it.
 * 2. The time of an admission is read from the server clock after the lock
 *    is held (bidguard_now(); bidguard.test_clock in tests), never from the
 *    client.  A client-supplied created_at on a plain INSERT is checked in
 *    both directions, so back-dating cannot slip a trade past the guard.
 * 3. Lock order: a trade's row lock before its bot's lock.  bidguard_try_trade
 *    and INSERT take no row locks; fill and fail lock the row FOR NO KEY
 *    UPDATE first, as a plain UPDATE does before its trigger runs.
 * 4. bidguard_try_trade with wait = '0' tries the lock once (LockAcquire with
 *    dontWait) and answers 'busy' at once; a positive wait is a bounded wait
 *    in the lock manager (bidguard_try_lock_bot); NULL waits as lock_timeout
 *    allows.  The trigger path always waits as lock_timeout allows and raises
 *    55P03 when it expires.
 *
 * Snapshots: under READ COMMITTED the check runs with a fresh snapshot taken
 * after the lock.  Under REPEATABLE READ and SERIALIZABLE, when the
 * transaction snapshot and the latest snapshot disagree on whether there is
 * a conflict, 40001 is raised: the decision would depend on a trade
 * committed (or failed) after the snapshot.
 *
 * Restores: a trade that pg_restore loads (restore.c) is kept as it was
 * dumped and not judged again against today's cooldown; it waits for its
 * bot when bidguard_bots' data has not been loaded yet.
 *
 * src/trades.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bidguard.h"
#include "trades.h"

/* (trades.h) */
TradeAdmission trade_admission = {false, 0, 0};

/*
 * What trade_decide reads directly: bidguard_bots through its primary key,
 * and the counting trades of a bot through bidguard_trades_cooldown_idx
 * (bot_id, COALESCE(filled_at, created_at)) WHERE status <> 'failed'.
 */
typedef struct TradeRels
{
	Relation	bots;
	Relation	bots_pkey;
	Relation	trades;
	Relation	cooldown_idx;
	AttrNumber	bot_cooldown;	/* bidguard_bots.cooldown */
	AttrNumber	trade_id;
	AttrNumber	created_at;
	AttrNumber	filled_at;
} TradeRels;

/* Open them (AccessShareLock); no catalogue lookups but the first. */
static void
trade_rels_open(Oid nspid, TradeRels *r)
{
	const BidguardTradeRelids ids = bidguard_trade_relids(nspid);

	r->bots = table_open(ids.bots, AccessShareLock);
	r->bots_pkey = index_open(ids.bots_pkey, AccessShareLock);
	r->trades = table_open(ids.trades, AccessShareLock);
	r->cooldown_idx = index_open(ids.cooldown_idx, AccessShareLock);
	r->bot_cooldown = ids.bot_cooldown;
	r->trade_id = ids.trade_id;
	r->created_at = ids.created_at;
	r->filled_at = ids.filled_at;
}

static void
trade_rels_close(TradeRels *r)
{
	index_close(r->cooldown_idx, AccessShareLock);
	table_close(r->trades, AccessShareLock);
	index_close(r->bots_pkey, AccessShareLock);
	table_close(r->bots, AccessShareLock);
}

/* The bot's cooldown as snap sees it; false for an unknown bot. */
static bool
trade_read_cooldown(TradeRels *r, int64 bot_id, Snapshot snap, Interval *cooldown)
{
	ScanKeyData sk;
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(r->bots, NULL);
	bool		found;

	ScanKeyInit(&sk, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(bot_id));
	scan = bidguard_index_beginscan(r->bots, r->bots_pkey, snap, 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		isnull;

		*cooldown = *DatumGetIntervalP(slot_getattr(slot, r->bot_cooldown, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * Does a trade admitted at "at" (filled at *fill, or not filled: NULL)
 * conflict with a counting trade of the bot other than exclude_trade_id, as
 * snap sees them (the rule in this file's header)?  *clear_at is then when
 * the latest conflict would clear: the largest effective time of the
 * conflicting trades, plus the cooldown.
 *
 * Every conflicting trade has coalesce(filled_at, created_at) after at - cd
 * (an earlier one by the rule; a later one because created_at > at), so one
 * range of the cooldown index finds them all.  The range has no upper bound
 * in the index: a later trade answers by its admission, and a trade filled
 * long after it was admitted sits far up the index.  It ends at "now" all
 * the same, since neither created_at nor filled_at is ever in the future
 * (22023), so on the common path (at = now, or a transaction's start) it
 * holds the few trades of the last cooldown; an INSERT back-dated by a day
 * reads the bot's trades of that day.
 */
static bool
trade_read_conflict(TradeRels *r, int64 bot_id, TimestampTz at, const TimestampTz *fill,
					Interval *cd, int64 exclude_trade_id, bool exclude, Snapshot snap,
					TimestampTz *clear_at)
{
	ScanKeyData sk[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(r->trades, NULL);
	TimestampTz lo = bidguard_ts_minus(at, cd);
	bool		found = false;

	ScanKeyInit(&sk[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(bot_id));
	ScanKeyInit(&sk[1], 2, BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(lo));
	scan = bidguard_index_beginscan(r->trades, r->cooldown_idx, snap, 2, 0);
	index_rescan(scan, sk, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull,
					fill_isnull;
		TimestampTz created,
					filled,
					as_of,
					effective;
		bool		conflict;

		if (exclude &&
			DatumGetInt64(slot_getattr(slot, r->trade_id, &isnull)) == exclude_trade_id)
			continue;
		created = DatumGetTimestampTz(slot_getattr(slot, r->created_at, &isnull));
		filled = DatumGetTimestampTz(slot_getattr(slot, r->filled_at, &fill_isnull));
		effective = fill_isnull ? created : filled;
		if (created <= at)
		{
			/* an earlier trade: its effective time as of at */
			as_of = (!fill_isnull && filled <= at) ? filled : created;
			conflict = as_of > lo;
		}
		else
		{
			/* a later one: the new trade's effective time as of its admission */
			as_of = (fill != NULL && *fill <= created) ? *fill : at;
			conflict = as_of > bidguard_ts_minus(created, cd);
		}
		if (conflict && (!found || effective > *clear_at))
		{
			*clear_at = effective;
			found = true;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (found)
		*clear_at = bidguard_ts_plus(*clear_at, cd);
	return found;
}

/* Is time "at" clear (*retry NULL) under snap?  False for an unknown bot. */
static bool
trade_decide_in(TradeRels *r, int64 bot_id, TimestampTz at, const TimestampTz *fill,
				int64 exclude_trade_id, bool exclude, Snapshot snap, Interval *cooldown,
				Interval **retry)
{
	TimestampTz clear_at = 0;

	*retry = NULL;
	if (!trade_read_cooldown(r, bot_id, snap, cooldown))
		return false;
	if (trade_read_conflict(r, bot_id, at, fill, cooldown, exclude_trade_id, exclude, snap,
							&clear_at))
		*retry = DatumGetIntervalP(DirectFunctionCall2(timestamp_mi,
													   TimestampGetDatum(clear_at),
													   TimestampGetDatum(at)));
	return true;
}

/*
 * trade_decide
 *		The bot's cooldown, and how long until time "at" is clear of the
 *		bot's other counting trades (*retry = NULL: it is clear now).  Raises
 *		23503 for an unknown bot.  The caller holds the bot's lock and is
 *		connected to SPI; the results are palloc'd in the caller's (upper)
 *		memory context.
 *
 * It reads bidguard_bots and bidguard_trades_cooldown_idx directly (no SQL,
 * no executor), after CommandCounterIncrement so that this transaction's
 * own earlier trades count, as SPI would.  Under READ COMMITTED it reads a
 * fresh snapshot, which sees every admission, fill, failure and cooldown
 * change committed before the lock was ours.  Under a transaction snapshot
 * the decision must not depend on anything committed after it: it reads
 * with the transaction snapshot and with the latest one, and if they
 * disagree on the bot or on the decision, that is 40001; otherwise the
 * latest values are returned.
 */
void
trade_decide(Oid nspid, int64 bot_id, TimestampTz at, const TimestampTz *fill,
			 int64 exclude_trade_id, bool exclude, Relation rel, Interval **cooldown,
			 Interval **retry)
{
	TradeRels	r;
	Interval	cd;
	Interval   *rt;
	bool		found;

	trade_rels_open(nspid, &r);
	CommandCounterIncrement();
	if (IsolationUsesXactSnapshot())
	{
		Interval	cd_snap;
		Interval   *rt_snap;
		bool		found_snap;

		PushActiveSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		found_snap = trade_decide_in(&r, bot_id, at, fill, exclude_trade_id, exclude,
									 GetActiveSnapshot(), &cd_snap, &rt_snap);
		PopActiveSnapshot();
		PushActiveSnapshot(GetLatestSnapshot());
		found = trade_decide_in(&r, bot_id, at, fill, exclude_trade_id, exclude,
								GetActiveSnapshot(), &cd, &rt);
		PopActiveSnapshot();
		if (found != found_snap || (found && (rt == NULL) != (rt_snap == NULL)))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("Bot %lld or one of its trades was changed after this transaction's snapshot was taken.",
							   (long long) bot_id),
					 errhint("Retry the transaction.")));
	}
	else
	{
		PushActiveSnapshot(GetLatestSnapshot());
		found = trade_decide_in(&r, bot_id, at, fill, exclude_trade_id, exclude,
								GetActiveSnapshot(), &cd, &rt);
		PopActiveSnapshot();
	}
	trade_rels_close(&r);

	if (!found)
		trade_raise_unknown_bot(bot_id, rel);
	*cooldown = SPI_palloc(sizeof(Interval));
	memcpy(*cooldown, &cd, sizeof(Interval));
	*retry = NULL;
	if (rt != NULL)
	{
		*retry = SPI_palloc(sizeof(Interval));
		memcpy(*retry, rt, sizeof(Interval));
	}
}

/*
 * trade_check_privileges
 *		trade_decide reads bidguard_bots and bidguard_trades directly, past
 *		the privilege checks SQL would make: bidguard_try_trade asks for
 *		them first, before any lock is queued, so that a role that may not
 *		read the bots or record trades learns nothing from its answers
 *		(42501).
 */
static void
trade_check_privileges(Oid nspid)
{
	const BidguardTradeRelids ids = bidguard_trade_relids(nspid);
	Oid			user = GetUserId();

	if (pg_class_aclmask(ids.bots, user, ACL_SELECT, ACLMASK_ALL) != ACL_SELECT)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(ids.bots));
	if (pg_class_aclmask(ids.trades, user, ACL_SELECT | ACL_INSERT, ACLMASK_ALL) !=
		(ACL_SELECT | ACL_INSERT))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(ids.trades));
}

/*
 * bidguard_set_cooldown(bot_id bigint, cooldown interval) RETURNS void
 *
 * Registers the bot or changes its cooldown.  Locks: only the bots row (the
 * upsert's).  It does not take the bot's lock: an admission that runs while a
 * change is uncommitted uses the old cooldown, which is the serial order
 * "admission, then change"; and registering many bots in one transaction
 * must not hold one lock per bot.
 */
PG_FUNCTION_INFO_V1(bidguard_set_cooldown);
Datum
bidguard_set_cooldown(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	int64		bot_id;
	Interval   *cooldown;
	Datum		values[2];
	BidguardPlacement saved;

	bidguard_arg_not_null(fcinfo, 0, "bot_id");
	bidguard_arg_not_null(fcinfo, 1, "cooldown");
	bot_id = PG_GETARG_INT64(0);
	cooldown = PG_GETARG_INTERVAL_P(1);
	bidguard_check_cooldown(cooldown, "cooldown");

	bidguard_check_writable("bidguard_set_cooldown()");
	bidguard_place_bot(nspid, bot_id, NULL, &saved);

	values[0] = Int64GetDatum(bot_id);
	values[1] = IntervalPGetDatum(cooldown);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_UPSERT_BOT),
							   values, NULL, false, 0),
			  SPI_OK_INSERT, "registering the bot");
	SPI_finish();
	bidguard_placement_restore(&saved);

	PG_RETURN_VOID();
}

/*
 * bidguard_try_trade(bot_id bigint, trade_data jsonb DEFAULT '{}',
 *					  wait interval DEFAULT '0')
 * RETURNS TABLE (trade_id bigint, executed boolean, reason text,
 *				  retry_after interval, atomic_event_id uuid)
 *
 * Takes the bot's lock (within "wait"), then admits an open trade unless a
 * counting trade of the bot is within the cooldown of now.  reason is
 * 'executed' (retry_after = the cooldown), 'cooldown' (retry_after = time
 * left) or 'busy' (the lock is held by another transaction).  The lock is
 * held to the end of the transaction.
 */
PG_FUNCTION_INFO_V1(bidguard_try_trade);
Datum
bidguard_try_trade(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	int64		bot_id;
	Jsonb	   *trade_data;
	int			wait_ms;
	Interval   *cooldown = NULL;
	Interval   *retry = NULL;
	TimestampTz now = 0;
	int64		trade_id = 0;
	pg_uuid_t  *event_id = NULL;
	const char *reason;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	BidguardPlacement saved;

	bidguard_arg_not_null(fcinfo, 0, "bot_id");
	bot_id = PG_GETARG_INT64(0);
	trade_data = bidguard_arg_object(fcinfo, 1, "trade_data");
	wait_ms = PG_ARGISNULL(2) ? -1 : bidguard_arg_wait_ms(PG_GETARG_INTERVAL_P(2));

	bidguard_check_writable("bidguard_try_trade()");
	bidguard_place_bot(nspid, bot_id, NULL, &saved);
	trade_check_privileges(nspid);

	if (!bidguard_try_lock(BIDGUARD_LOCK_CLASS_BOT, (uint64) bot_id, wait_ms))
	{
		bidguard_count(BG_STAT_TRADES_REJECTED_BUSY);
		reason = "busy";
	}
	else
	{
		MemoryContext callcxt = CurrentMemoryContext;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		now = bidguard_now();
		trade_decide(nspid, bot_id, now, NULL, 0, false, NULL, &cooldown, &retry);
		if (retry != NULL)
		{
			bidguard_count(BG_STAT_TRADES_REJECTED_COOLDOWN);
			reason = "cooldown";
		}
		else if (trade_direct_insert(nspid, bot_id, trade_data, now, cooldown,
									 &trade_id, &event_id))
		{
			pg_uuid_t  *copy = MemoryContextAlloc(callcxt, sizeof(pg_uuid_t));

			memcpy(copy, event_id, sizeof(pg_uuid_t));
			event_id = copy;
			retry = cooldown;
			reason = "executed";
		}
		else
		{
			Datum		ivalues[4];
			bool		isnull;

			ivalues[0] = Int64GetDatum(bot_id);
			ivalues[1] = JsonbPGetDatum(trade_data);
			ivalues[2] = TimestampTzGetDatum(now);
			ivalues[3] = IntervalPGetDatum(cooldown);

			trade_admission.active = true;
			trade_admission.bot_id = bot_id;
			trade_admission.created_at = now;
			PG_TRY();
			{
				bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_INSERT_TRADE),
										   ivalues, NULL, false, 0),
						  SPI_OK_INSERT_RETURNING, "inserting the trade");
			}
			PG_FINALLY();
			{
				trade_admission.active = false;
			}
			PG_END_TRY();

			trade_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
			event_id = MemoryContextAlloc(callcxt, sizeof(pg_uuid_t));
			memcpy(event_id,
				   DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &isnull)),
				   sizeof(pg_uuid_t));
			retry = cooldown;
			reason = "executed";
		}
		SPI_finish();
	}
	bidguard_placement_restore(&saved);

	values[0] = Int64GetDatum(trade_id);
	nulls[0] = (event_id == NULL);
	values[1] = BoolGetDatum(event_id != NULL);
	values[2] = CStringGetTextDatum(reason);
	if (retry != NULL)
		values[3] = IntervalPGetDatum(retry);
	else
		nulls[3] = true;
	if (event_id != NULL)
		values[4] = UUIDPGetDatum(event_id);
	else
		nulls[4] = true;
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

/*
 * trade_check_fill_time
 *		A trade fills between its admission and now.  A fill time outside
 *		that range would move the trade's effective time out of the way of
 *		the cooldown (before its admission, or far ahead of the window), and
 *		free the bot at once.  22023 for the function's argument; for plain
 *		SQL ("rel" given), 23514 with constraint bidguard_trade_fill_time.
 */
void
trade_check_fill_time(int64 trade_id, TimestampTz created_at, TimestampTz filled_at,
				TimestampTz now, Relation rel)
{
	int			code = rel ? ERRCODE_CHECK_VIOLATION : ERRCODE_INVALID_PARAMETER_VALUE;

	if (filled_at < created_at)
		ereport(ERROR,
				(errcode(code),
				 errmsg("filled_at must not be before the trade was admitted"),
				 errdetail("Trade %lld was admitted at %s; the fill time given is %s.",
						   (long long) trade_id, pstrdup(timestamptz_to_str(created_at)),
						   pstrdup(timestamptz_to_str(filled_at))),
				 rel ? errtableconstraint(rel, "bidguard_trade_fill_time") : 0));
	if (filled_at > now)
		ereport(ERROR,
				(errcode(code),
				 errmsg("filled_at must not be in the future"),
				 errdetail("The fill time given is %s; the server clock says %s.",
						   pstrdup(timestamptz_to_str(filled_at)),
						   pstrdup(timestamptz_to_str(now))),
				 errhint("Omit filled_at to record the fill at the server's time."),
				 rel ? errtableconstraint(rel, "bidguard_trade_fill_time") : 0));
}

/*
 * Trade statuses the functions move between: open -> filled | failed.
 */
static void
raise_bad_trade_transition(int64 trade_id, const char *from, const char *to,
						   const char *nspname)
{
	bidguard_count(BG_STAT_TRANSITIONS_REJECTED);
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("trade %lld cannot move from status \"%s\" to \"%s\"",
					(long long) trade_id, from, to),
			 errdetail("Only an \"open\" trade can be filled or failed."),
			 err_generic_string(PG_DIAG_SCHEMA_NAME, nspname),
			 err_generic_string(PG_DIAG_TABLE_NAME, "bidguard_trades"),
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "bidguard_trade_transition")));
}

/*
 * trade_finish
 *		Move an open trade to "to_status" (filled or failed); the body of
 *		bidguard_fill_trade and bidguard_fail_trade.  Locks: the trade's row,
 *		then its bot's lock.
 */
static Datum
trade_finish(FunctionCallInfo fcinfo, const char *to_status, bool fill, int argoff)
{
	Oid			nspid = bidguard_schema(fcinfo);
	int64		trade_id;
	int64		bot_id;
	TimestampTz created_at;
	char	   *status;
	bool		changed = false;
	bool		isnull;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum		result[3];
	bool		rnulls[3] = {false, false, false};
	MemoryContext callcxt = CurrentMemoryContext;
	BidguardPlacement saved;

	bidguard_arg_not_null(fcinfo, argoff, "trade_id");
	trade_id = PG_GETARG_INT64(argoff);

	bidguard_check_writable(fill ? "bidguard_fill_trade()" : "bidguard_fail_trade()");
	if (argoff > 0)
	{
		bidguard_arg_not_null(fcinfo, 0, "bot_id");
		bidguard_place_bot(nspid, PG_GETARG_INT64(0), NULL, &saved);
	}
	else
		bidguard_place_unkeyed(nspid, BG_TABLE_TRADES,
							   fill ? "bidguard_fill_trade(trade_id, filled_at)" :
							   "bidguard_fail_trade(trade_id, reason)",
							   fill ? "bidguard_citus_fill_trade(bot_id, trade_id, filled_at)" :
							   "bidguard_citus_fail_trade(bot_id, trade_id, reason)",
							   &saved);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	values[0] = Int64GetDatum(trade_id);
	bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_LOCK_TRADE),
							   values, NULL, false, 0),
			  SPI_OK_SELECT, "locking the trade");
	if (SPI_processed > 0 && argoff > 0 &&
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) !=
		PG_GETARG_INT64(0))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("trade %lld is not a trade of bot %lld",
						(long long) trade_id, (long long) PG_GETARG_INT64(0))));
	if (SPI_processed == 0)
	{
		/* Under a transaction snapshot, existing but invisible is 40001. */
		if (IsolationUsesXactSnapshot())
		{
			bidguard_spi_check(SPI_execute_snapshot(bidguard_plan(nspid, BG_PLAN_TRADE_EXISTS),
										   values, NULL, GetLatestSnapshot(),
										   InvalidSnapshot, false, false, 0),
					  SPI_OK_SELECT, "looking up the trade");
			if (SPI_processed > 0)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update"),
						 errdetail("Trade %lld was created after this transaction's snapshot was taken.",
								   (long long) trade_id),
						 errhint("Retry the transaction.")));
		}
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("trade %lld does not exist", (long long) trade_id)));
	}
	bot_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 3, &isnull));
	status = MemoryContextStrdup(callcxt,
								 TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
																   SPI_tuptable->tupdesc,
																   2, &isnull)));

	bidguard_lock_bot(bot_id);

	if (strcmp(status, "open") == 0)
	{
		values[1] = CStringGetTextDatum(to_status);
		if (fill)
		{
			TimestampTz now = bidguard_now();

			if (!PG_ARGISNULL(argoff + 1))
				trade_check_fill_time(trade_id, created_at, PG_GETARG_TIMESTAMPTZ(argoff + 1), now, NULL);
			values[2] = PG_ARGISNULL(argoff + 1) ? TimestampTzGetDatum(now) : PG_GETARG_DATUM(argoff + 1);
			nulls[3] = 'n';
		}
		else
		{
			nulls[2] = 'n';
			if (PG_ARGISNULL(argoff + 1))
				nulls[3] = 'n';
			else
				values[3] = PG_GETARG_DATUM(argoff + 1);
		}
		bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_UPDATE_TRADE),
								   values, nulls, false, 0),
				  SPI_OK_UPDATE, "updating the trade");
		status = MemoryContextStrdup(callcxt, to_status);
		changed = true;
	}
	else if (strcmp(status, to_status) != 0)
		raise_bad_trade_transition(trade_id, status, to_status,
								   get_namespace_name(nspid));
	SPI_finish();
	bidguard_placement_restore(&saved);

	result[0] = Int64GetDatum(trade_id);
	result[1] = BoolGetDatum(changed);
	result[2] = CStringGetTextDatum(status);
	bidguard_return_row(fcinfo, result, rnulls);
	return (Datum) 0;
}

/*
 * bidguard_fill_trade(trade_id bigint, filled_at timestamptz DEFAULT NULL)
 * RETURNS TABLE (trade_id bigint, changed boolean, status text)
 *
 * open -> filled, at filled_at (default: now).  Filling a filled trade is a
 * no-op; filling a failed one is 23514.  Locks: the row, then the bot.
 */
PG_FUNCTION_INFO_V1(bidguard_fill_trade);
Datum
bidguard_fill_trade(PG_FUNCTION_ARGS)
{
	return trade_finish(fcinfo, "filled", true, 0);
}

/*
 * bidguard_citus_fill_trade(bot_id bigint, trade_id bigint,
 *							 filled_at timestamptz DEFAULT NULL)
 *
 * bidguard_fill_trade for Citus (scaleout/citus): the trade's bot routes
 * the call to the worker that holds it.
 */
PG_FUNCTION_INFO_V1(bidguard_citus_fill_trade);
Datum
bidguard_citus_fill_trade(PG_FUNCTION_ARGS)
{
	return trade_finish(fcinfo, "filled", true, 1);
}

/*
 * bidguard_fail_trade(trade_id bigint, reason text DEFAULT NULL)
 * RETURNS TABLE (trade_id bigint, changed boolean, status text)
 *
 * open -> failed; a failed trade no longer counts toward the cooldown.
 * Failing a failed trade is a no-op; failing a filled one is 23514.  Locks:
 * the row, then the bot.
 */
PG_FUNCTION_INFO_V1(bidguard_fail_trade);
Datum
bidguard_fail_trade(PG_FUNCTION_ARGS)
{
	return trade_finish(fcinfo, "failed", false, 0);
}

/*
 * bidguard_citus_fail_trade(bot_id bigint, trade_id bigint,
 *							 reason text DEFAULT NULL)
 *
 * bidguard_fail_trade for Citus, routed by the trade's bot.
 */
PG_FUNCTION_INFO_V1(bidguard_citus_fail_trade);
Datum
bidguard_citus_fail_trade(PG_FUNCTION_ARGS)
{
	return trade_finish(fcinfo, "failed", false, 1);
}
