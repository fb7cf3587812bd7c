/*-------------------------------------------------------------------------
 *
 * trade_write.c
 *	  bidguard_try_trade's insert of an admitted trade without SQL (direct.c):
 *	  the trade row, its trade_executed event, and the foreign key to its
 *	  bot kept the way its trigger keeps it.  trades.c uses it when
 *	  bidguard_direct_open allows, else its SPI statement.
 *
 * Locking protocol
 * ----------------
 * The caller holds the bot's lock (trades.c, protocol 1) and has judged the
 * admission under it.  Here: bidguard_bots with RowShareLock and the bot's
 * row FOR KEY SHARE -- what the foreign key's trigger takes, so that the bot
 * cannot be deleted (or its bot_id changed) before this transaction ends --
 * then bidguard_trades with RowExclusiveLock, as an INSERT takes.  Under
 * REPEATABLE READ and SERIALIZABLE a bot row changed since the snapshot is
 * 40001, as the foreign key check gives.
 *
 * src/trade_write.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "nodes/lockoptions.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "bidguard.h"
#include "trades.h"


/*
 * trade_raise_unknown_bot
 *		23503 for a bot that bidguard_bots does not have, as its foreign key
 *		says it (with the constraint's name when the table is at hand).
 *		Here, below trades.c, which raises it too.
 */
void
trade_raise_unknown_bot(int64 bot_id, Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("bot %lld is not registered", (long long) bot_id),
			 errhint("Register it with bidguard_set_cooldown(bot_id, cooldown)."),
			 rel ? errtableconstraint(rel, "bidguard_trades_bot_id_fkey") : 0));
}

/* bidguard_trades' columns, in the order of the values below */
enum
{
	TC_TRADE_ID,
	TC_BOT_ID,
	TC_STATUS,
	TC_TRADE_DATA,
	TC_STATUS_REASON,
	TC_ATOMIC_EVENT_ID,
	TC_CREATED_AT,
	TC_FILLED_AT,
	TC_COOLDOWN,
	TC_NCOLS
};

static const char *const trade_columns[] = {
	"trade_id", "bot_id", "status", "trade_data", "status_reason",
	"atomic_event_id", "created_at", "filled_at", "cooldown", NULL
};
static const BidguardDirectSpec trade_spec = {
	trade_columns, "trade_id", NULL, "bidguard_trades_bot_id_fkey", true
};

/*
 * The bot's row FOR KEY SHARE, its latest version; 23503 when it is gone,
 * 40001 under a transaction snapshot when it changed.
 */
static void
trade_lock_bot_row(const BidguardTradeRelids *ids, int64 bot_id)
{
	Relation	bots = table_open(ids->bots, RowShareLock);
	Relation	pkey = index_open(ids->bots_pkey, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(bots, NULL);
	Snapshot	snap = GetLatestSnapshot();
	ScanKeyData sk;
	IndexScanDesc scan;
	bool		found;
	TM_Result	res = TM_Ok;
	TM_FailureData tmfd;

	ScanKeyInit(&sk, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(bot_id));
	PushActiveSnapshot(snap);
	scan = bidguard_index_beginscan(bots, pkey, snap, 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	if (found)
		res = table_tuple_lock(bots, &slot->tts_tid, snap, slot,
							   GetCurrentCommandId(false), LockTupleKeyShare,
							   LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(bots, NoLock);

	if (found && res == TM_Ok)
		return;
	if (found && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	trade_raise_unknown_bot(bot_id, NULL);
}

/*
 * trade_direct_insert
 *		Insert the admitted trade (open, created at "now", admitted under
 *		"cooldown") and its event without SQL; false, having done nothing,
 *		when the direct path is not SQL's (direct.c).  *trade_id and
 *		*event_id are the new row's; *event_id is palloc'd.
 */
bool
trade_direct_insert(Oid nspid, int64 bot_id, Jsonb *trade_data, TimestampTz now,
					Interval *cooldown, int64 *trade_id, pg_uuid_t **event_id)
{
	const BidguardTradeRelids ids = bidguard_trade_relids(nspid);
	BidguardDirect *d;
	Datum		values[TC_NCOLS];
	bool		nulls[TC_NCOLS] = {false, false, false, false, true, false, false, true, false};

	/* (trade_check_privileges asked for SELECT, INSERT before the lock) */
	d = bidguard_direct_open(nspid, ids.trades, &trade_spec, 0);
	if (d == NULL)
		return false;
	trade_lock_bot_row(&ids, bot_id);

	*trade_id = bidguard_direct_next_id(d);
	*event_id = bidguard_new_uuid_v7();
	values[TC_TRADE_ID] = Int64GetDatum(*trade_id);
	values[TC_BOT_ID] = Int64GetDatum(bot_id);
	values[TC_STATUS] = CStringGetTextDatum("open");
	values[TC_TRADE_DATA] = JsonbPGetDatum(trade_data);
	values[TC_STATUS_REASON] = (Datum) 0;
	values[TC_ATOMIC_EVENT_ID] = UUIDPGetDatum(*event_id);
	values[TC_CREATED_AT] = TimestampTzGetDatum(now);
	values[TC_FILLED_AT] = (Datum) 0;
	values[TC_COOLDOWN] = IntervalPGetDatum(cooldown);
	bidguard_direct_insert(d, values, nulls, false, NULL);
	bidguard_direct_close(d);

	bidguard_event_trade_executed(nspid, *trade_id, bot_id, *event_id, now);
	return true;
}
