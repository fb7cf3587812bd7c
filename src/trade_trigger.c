/*-------------------------------------------------------------------------
 *
 * trade_trigger.c
 *	  bidguard_trades' BEFORE trigger: the trade guard for plain SQL.  An
 *	  INSERT, or an UPDATE that could break the rule, is judged by the same
 *	  decision as bidguard_try_trade (trades.c), through the cooldown row
 *	  logic the guards of application tables use too (cooldown.c).
 *
 * Locking protocol
 * ----------------
 * The row logic takes the bot's lock (locks.c, class BOT, key bot_id) for an
 * INSERT and for an UPDATE that changes bot_id or created_at or makes a
 * failed trade count again, waiting as lock_timeout allows (55P03), and
 * holds it to the end of the transaction; a fill set or moved takes it too.
 * bidguard_try_trade's own INSERT, judged already under that lock, passes
 * through.  A restored trade (restore.c) takes no lock and is not judged.
 *
 * src/trade_trigger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "bidguard.h"
#include "trades.h"

/*
 * check_admission_time
 *		The created_at an INSERT gives, or an UPDATE sets, must not be later
 *		than the server clock (a trade admitted tomorrow would hold the
 *		bot's cooldown from today): 23514, constraint
 *		bidguard_trade_admission_time.  (Restores never get here.)
 */
static void
check_admission_time(TriggerData *trigdata, int attnum, Relation rel)
{
	bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
	HeapTuple	tuple = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;
	bool		isnull,
				old_isnull;
	TimestampTz created_at = DatumGetTimestampTz(heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull));
	TimestampTz now;

	if (isnull)
		return;
	if (!is_insert &&
		DatumGetTimestampTz(heap_getattr(trigdata->tg_trigtuple, attnum, RelationGetDescr(rel),
										 &old_isnull)) == created_at && !old_isnull)
		return;
	now = bidguard_now();
	if (created_at > now)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("created_at must not be in the future"),
				 errdetail("The admission time given is %s; the server clock says %s.",
						   pstrdup(timestamptz_to_str(created_at)),
						   pstrdup(timestamptz_to_str(now))),
				 errhint("Omit created_at to admit the trade at the server's time."),
				 errtableconstraint(rel, "bidguard_trade_admission_time")));
}

/*
 * Column numbers of bidguard_trades the cooldown trigger reads, and whether
 * the trigger's relation is a Citus shard of it (another name) rather than
 * the table itself; per call site, that is per relation.
 */
typedef struct TradeColumns
{
	bool		in_shard;
	int			trade_id;
	int			bot_id;
	int			status;
	int			atomic_event_id;
	int			created_at;
	int			filled_at;
	int			cooldown;
} TradeColumns;

/*
 * The hooks of bidguard_trades' cooldown guard (cooldown.c has the row logic):
 * the key is bot_id, its lock the bot's lock, its cooldown the bot's in
 * bidguard_bots, and failed trades do not count.
 */
typedef struct TradesGuard
{
	Oid			nspid;
	TradeColumns *cols;
	int64		trade_id;		/* the row's, excluded from its own check */
	bool		has_trade_id;
} TradesGuard;

static pg_noreturn void trades_guard_violation(CooldownGuard *g, Datum key, TimestampTz at,
								   const TimestampTz *fill, Interval *cooldown, Interval *retry);

static void
trades_guard_lock(CooldownGuard *g, Datum key)
{
	(void) g;
	bidguard_lock_bot(DatumGetInt64(key));
}

static Interval *
trades_guard_decide(CooldownGuard *g, Datum key, TimestampTz at, const TimestampTz *fill,
					HeapTuple self, Interval **cooldown)
{
	TradesGuard *tg = g->arg;
	Interval   *retry;

	(void) self;				/* excluded by trade_id */
	trade_decide(tg->nspid, DatumGetInt64(key), at, fill, tg->trade_id, tg->has_trade_id,
				 g->rel, cooldown, &retry);
	return retry;
}

static void
trades_guard_violation(CooldownGuard *g, Datum key, TimestampTz at, const TimestampTz *fill,
					   Interval *cooldown, Interval *retry)
{
	int64		bot_id = DatumGetInt64(key);

	(void) fill;				/* a trade is named by its admission time */

	ereport(ERROR,
			(errcode(ERRCODE_EXCLUSION_VIOLATION),
			 errmsg("trade of bot %lld is inside its cooldown", (long long) bot_id),
			 errdetail("Bot %lld has a cooldown of %s and traded within it; a trade at %s must wait %s more.",
					   (long long) bot_id, bidguard_interval_text(cooldown),
					   timestamptz_to_str(at), bidguard_interval_text(retry)),
			 errhint("bidguard_try_trade() admits trades without raising errors and says how long to wait. ON CONFLICT cannot absorb this error: the cooldown is checked by a trigger, not by an index."),
			 errtableconstraint(g->rel, "bidguard_trade_cooldown")));
}

static void
trades_guard_check_fill(CooldownGuard *g, HeapTuple tuple, TimestampTz created_at,
						TimestampTz filled_at, TimestampTz now)
{
	TradesGuard *tg = g->arg;

	(void) tuple;
	trade_check_fill_time(tg->trade_id, created_at, filled_at, now, g->rel);
}

/*
 * bidguard_trades_cooldown_trigger()
 *
 * BEFORE INSERT OR UPDATE FOR EACH ROW on bidguard_trades.  For an INSERT,
 * and for an UPDATE that changes bot_id or created_at or makes a failed
 * trade count again, it takes the bot's lock (waiting as lock_timeout
 * allows: 55P03), stamps a missing created_at with the server clock, and
 * rejects a counting trade within the cooldown of another, either side
 * (23P01, constraint bidguard_trade_cooldown).  Unknown bot: 23503.  The row
 * logic is cooldown.c's, the same as on a table guarded with
 * bidguard_guard_cooldown(); an admitted row records the cooldown it was
 * admitted under.
 */
PG_FUNCTION_INFO_V1(bidguard_trades_cooldown_trigger);
Datum
bidguard_trades_cooldown_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	BidguardCallState *state;
	TradeColumns *cols;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	newtuple;
	bool		isnull;
	CooldownGuard g;
	TradesGuard tg;
	Interval   *admitted_under;
	BidguardPlacement saved;

	if (!bidguard_fired_before_row_ins_upd(fcinfo))
		bidguard_trigger_misuse("bidguard_trades_cooldown_trigger",
								"BEFORE INSERT OR UPDATE FOR EACH ROW");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	state = bidguard_call_state(fcinfo);
	cols = (TradeColumns *) state->columns;
	if (cols == NULL)
	{
		cols = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TradeColumns));
		cols->trade_id = bidguard_column(rel, "trade_id");
		cols->bot_id = bidguard_column(rel, "bot_id");
		cols->status = bidguard_column(rel, "status");
		cols->atomic_event_id = bidguard_column(rel, "atomic_event_id");
		cols->created_at = bidguard_column(rel, "created_at");
		cols->filled_at = bidguard_column(rel, "filled_at");
		cols->cooldown = bidguard_column(rel, "cooldown");
		cols->in_shard = RelationGetRelid(rel) !=
			get_relname_relid("bidguard_trades", state->nspid);
		state->columns = cols;
	}

	newtuple = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ?
		trigdata->tg_trigtuple : trigdata->tg_newtuple;

	/* bidguard_try_trade's own insert, judged already */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && trade_admission.active)
	{
		Datum		bot = heap_getattr(newtuple, cols->bot_id, desc, &isnull);
		bool		created_isnull;
		Datum		created = heap_getattr(newtuple, cols->created_at, desc, &created_isnull);

		if (!isnull && DatumGetInt64(bot) == trade_admission.bot_id && !created_isnull &&
			DatumGetTimestampTz(created) == trade_admission.created_at)
			return PointerGetDatum(newtuple);
	}

	/*
	 * On Citus: the bot's shards of bidguard_bots and bidguard_trades, the
	 * latter the very shard this row goes into, or 23514 (placement.c).
	 */
	{
		Datum		bot = heap_getattr(newtuple, cols->bot_id, desc, &isnull);

		saved = bidguard_placement;
		if (!isnull)
			bidguard_place_bot(state->nspid, DatumGetInt64(bot), rel, &saved);
	}

	tg.nspid = state->nspid;
	tg.cols = cols;
	tg.trade_id = DatumGetInt64(heap_getattr(newtuple, cols->trade_id, desc, &isnull));
	tg.has_trade_id = !isnull;

	/* A restored trade is kept as it was dumped, once its bot is there. */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && bidguard_restoring(rel))
	{
		Datum		bot = heap_getattr(newtuple, cols->bot_id, desc, &isnull);

		/*
		 * Not in a Citus shard: Citus copies a table's rows into its new
		 * shards over other connections than its bots' (which this one
		 * cannot see until they commit), with the foreign key not there
		 * yet, and moves shards with their triggers created after the copy.
		 */
		if (!isnull && !cols->in_shard)
			bidguard_restore_wait_for_bot(state->nspid, DatumGetInt64(bot), tg.trade_id);
		bidguard_placement_restore(&saved);
		return PointerGetDatum(newtuple);
	}

	/* An admission time set by plain SQL is never in the future. */
	check_admission_time(trigdata, cols->created_at, rel);

	memset(&g, 0, sizeof(g));
	g.rel = rel;
	g.key_attnum = cols->bot_id;
	g.key_type = INT8OID;
	g.time_attnum = cols->created_at;
	g.fill_attnum = cols->filled_at;
	g.status_attnum = cols->status;
	g.lock = trades_guard_lock;
	g.decide = trades_guard_decide;
	g.violation = trades_guard_violation;
	g.check_fill = trades_guard_check_fill;
	g.arg = &tg;

	newtuple = bidguard_cooldown_guard_row(&g, trigdata, &admitted_under);

	/* Admitted: record the cooldown it was admitted under. */
	if (admitted_under != NULL)
	{
		int			attnum = cols->cooldown;
		Datum		d = IntervalPGetDatum(admitted_under);
		bool		n = false;

		newtuple = heap_modify_tuple_by_cols(newtuple, desc, 1, &attnum, &d, &n);
	}

	bidguard_placement_restore(&saved);
	return PointerGetDatum(newtuple);
}
