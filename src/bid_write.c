/*-------------------------------------------------------------------------
 *
 * bid_write.c
 *	  The bid functions' reads and writes of bidguard_bids without SQL: the
 *	  active-bid probe through bidguard_bids_one_active and the insert of a
 *	  new pending bid with its creation event (direct.c).  bids.c uses them
 *	  when bidguard_direct_open allows, else its SPI statements; both give
 *	  the same answers and raise the same errors.
 *
 * Locking protocol
 * ----------------
 * The caller holds the posting lock (bids.c, protocol 1).  Here: bidguard_bids
 * with RowExclusiveLock (held to the end of the transaction), its indexes
 * while a call runs, and the btree's and heap's own page and tuple locks.
 * The insert is ON CONFLICT DO NOTHING on bidguard_bids_one_active, so that a
 * plain INSERT racing the posting's lock holder makes it return the winner
 * (bids.c, protocol 3).
 *
 * Snapshots are those of the SPI path (bids.c): the probe reads after
 * CommandCounterIncrement, with the latest snapshot under READ COMMITTED;
 * under REPEATABLE READ and SERIALIZABLE with the transaction snapshot and
 * the latest one, 40001 when they disagree.  Index and heap fetches take
 * SSI's predicate locks themselves, as the executor's do.
 *
 * src/bid_write.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "bidguard.h"
#include "bid_write.h"

/* bidguard_bids' columns, in the order of the values bid_direct_insert gives */
enum
{
	BC_BID_ID,
	BC_MARKETPLACE_ID,
	BC_POSTING_ID,
	BC_STATUS,
	BC_BID_DATA,
	BC_STATUS_REASON,
	BC_ATOMIC_EVENT_ID,
	BC_CREATED_AT,
	BC_UPDATED_AT,
	BC_NCOLS
};

static const char *const bid_columns[] = {
	"bid_id", "marketplace_id", "posting_id", "status", "bid_data",
	"status_reason", "atomic_event_id", "created_at", "updated_at", NULL
};
static const BidguardDirectSpec bid_spec = {
	bid_columns, "bid_id", "bidguard_bids_one_active", NULL, true
};

/*
 * bid_direct_open
 *		bidguard_bids for the direct path, or NULL for SQL: see direct.c,
 *		and the active-bid index must be (marketplace_id, posting_id) as
 *		bidguard made it.  The privileges are SQL's: SELECT (the probe,
 *		RETURNING) and INSERT.
 */
BidguardDirect *
bid_direct_open(Oid nspid)
{
	Oid			relid;
	BidguardDirect *d;
	Relation	index;

	relid = bidguard_placed_relid(nspid, "bidguard_bids",
								  bidguard_placed_shard(nspid, BG_TABLE_BIDS));
	d = bidguard_direct_open(nspid, relid, &bid_spec, ACL_SELECT | ACL_INSERT);
	if (d == NULL)
		return NULL;
	index = bidguard_direct_arbiter(d);
	if (index->rd_index->indnkeyatts != 2 ||
		index->rd_index->indkey.values[0] != bidguard_direct_attnum(d, BC_MARKETPLACE_ID) ||
		index->rd_index->indkey.values[1] != bidguard_direct_attnum(d, BC_POSTING_ID))
	{
		bidguard_direct_close(d);
		return NULL;
	}
	return d;
}

/* The posting's active bids under snap: how many (0, 1; more is a bug). */
static int
bid_probe(BidguardDirect *d, text *marketplace_id, text *posting_id, Snapshot snap,
		  BidRow *bid)
{
	Relation	heap = bidguard_direct_relation(d);
	Relation	index = bidguard_direct_arbiter(d);
	ScanKeyData sk[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	int			n = 0;

	ScanKeyEntryInitialize(&sk[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(marketplace_id));
	ScanKeyEntryInitialize(&sk[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ,
						   PointerGetDatum(posting_id));
	scan = bidguard_index_beginscan(heap, index, snap, 2, 0);
	index_rescan(scan, sk, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		if (n++ == 0)
		{
			bool		isnull;

			bid->bid_id = DatumGetInt64(slot_getattr(slot, bidguard_direct_attnum(d, BC_BID_ID),
													 &isnull));
			bid->status = bid_status_from_datum(slot_getattr(slot,
															 bidguard_direct_attnum(d, BC_STATUS),
															 &isnull));
			memcpy(&bid->atomic_event_id,
				   DatumGetUUIDP(slot_getattr(slot,
											  bidguard_direct_attnum(d, BC_ATOMIC_EVENT_ID),
											  &isnull)),
				   sizeof(pg_uuid_t));
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (n > 1)
		elog(ERROR, "bidguard: posting has %d active bids", n);
	return n;
}

/* 40001: the posting's active bid changed after the snapshot (bids.c too). */
void
bid_raise_posting_serialization_failure(text *marketplace_id, text *posting_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 errdetail("The active bid of posting \"%s\" of marketplace \"%s\" changed after this transaction's snapshot was taken.",
					   text_to_cstring(posting_id),
					   text_to_cstring(marketplace_id)),
			 errhint("Retry the transaction.")));
}

/*
 * bid_direct_find_active
 *		bid_find_active (bids.c) without SQL.
 */
bool
bid_direct_find_active(BidguardDirect *d, text *marketplace_id, text *posting_id,
					   BidRow *bid)
{
	bool		found;

	CommandCounterIncrement();
	if (IsolationUsesXactSnapshot())
	{
		BidRow		now;
		bool		found_now;

		PushActiveSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		found = bid_probe(d, marketplace_id, posting_id, GetActiveSnapshot(), bid) == 1;
		PopActiveSnapshot();
		found_now = bid_probe(d, marketplace_id, posting_id, GetLatestSnapshot(), &now) == 1;
		if (found != found_now || (found && bid->bid_id != now.bid_id))
			bid_raise_posting_serialization_failure(marketplace_id, posting_id);
		return found;
	}
	return bid_probe(d, marketplace_id, posting_id, GetLatestSnapshot(), bid) == 1;
}

/*
 * bid_direct_insert
 *		bid_insert (bids.c) without SQL: a pending bid with the server's
 *		times and a new atomic_event_id, and its bid_created event; false
 *		when a concurrent plain INSERT won the active-bid index.
 */
bool
bid_direct_insert(Oid nspid, BidguardDirect *d, text *marketplace_id, text *posting_id,
				  Jsonb *bid_data, BidRow *bid)
{
	Datum		values[BC_NCOLS];
	bool		nulls[BC_NCOLS] = {false, false, false, false, false, true, false, false, false};
	pg_uuid_t  *event_id = bidguard_new_uuid_v7();
	TimestampTz now = GetCurrentTimestamp();
	int64		bid_id = bidguard_direct_next_id(d);

	values[BC_BID_ID] = Int64GetDatum(bid_id);
	values[BC_MARKETPLACE_ID] = PointerGetDatum(marketplace_id);
	values[BC_POSTING_ID] = PointerGetDatum(posting_id);
	values[BC_STATUS] = CStringGetTextDatum(bid_status_names[BID_PENDING]);
	values[BC_BID_DATA] = JsonbPGetDatum(bid_data);
	values[BC_STATUS_REASON] = (Datum) 0;
	values[BC_ATOMIC_EVENT_ID] = UUIDPGetDatum(event_id);
	values[BC_CREATED_AT] = TimestampTzGetDatum(now);
	values[BC_UPDATED_AT] = TimestampTzGetDatum(now);
	if (!bidguard_direct_insert(d, values, nulls, true, NULL))
		return false;

	bidguard_event_bid_created(nspid, bid_id, marketplace_id, posting_id, event_id, now);
	bid->bid_id = bid_id;
	bid->status = BID_PENDING;
	memcpy(&bid->atomic_event_id, event_id, sizeof(pg_uuid_t));
	return true;
}
