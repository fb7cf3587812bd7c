/*-------------------------------------------------------------------------
 *
 * bids.c
 *	  The bid guard: at most one active bid per posting, through bidguard's
 *	  functions (bidguard_create_bid, bidguard_set_bid_status,
 *	  bidguard_withdraw_bid, bidguard_withdraw_posting) and through plain SQL
 *	  alike.  The statuses, their transitions and bidguard_bids' trigger are
 *	  in bid_status.c.
 *
 * Locking protocol
 * ----------------
 * 0. On Citus, every entry point first places itself by its posting_id
 *    (placement.c): it runs only on the node that holds the posting's shard,
 *    and refuses (0A000) before taking any lock anywhere else, so that all
 *    of a posting's locks live in one lock space, beside its rows.
 * 1. The posting lock (locks.c, class BID, key bidguard_lock_key(marketplace,
 *    posting)) is taken by every bidguard function that looks at or changes
 *    a posting's bids, before it reads anything, and held to the end of the
 *    transaction.  Creation, withdrawal and status changes of one posting
 *    therefore run one after another; the deadlock detector and lock_timeout
 *    apply as to any heavyweight lock.
 * 2. A bid row is then locked FOR NO KEY UPDATE (the lock its UPDATE needs
 *    anyway) before its status is read for a transition.  The lock order is
 *    always posting lock, then row lock: when the row turns out to have been
 *    moved to another posting while we waited for it, that posting's lock is
 *    taken only if it is free, else 40001 (see bid_lock_row).  A plain UPDATE
 *    takes only the row lock.  So a single plain UPDATE can only make a function wait.  A
 *    transaction that holds a bid's row through a plain UPDATE and then calls
 *    a function for the same posting can deadlock with a function call of
 *    another session (posting lock held, waiting for the row); the deadlock
 *    detector ends one of them with 40P01.
 * 3. The partial unique index bidguard_bids_one_active is the last line of
 *    defence for plain INSERT/UPDATE (23505); bidguard_create_bid inserts
 *    with ON CONFLICT DO NOTHING so that a plain INSERT racing it makes it
 *    return the winner's bid instead of failing.
 * 4. The transition rule is a BEFORE UPDATE trigger (bid_status.c), so
 *    plain UPDATEs obey it too.  Under READ COMMITTED an UPDATE that waited
 *    for a concurrent one re-reads the newest row version, so the trigger
 *    always judges the current status: no bid leaves a terminal status.
 *
 * Snapshots: after the posting lock is held, a READ COMMITTED caller reads
 * with a fresh snapshot and sees everything the previous holder committed.
 * Under REPEATABLE READ and SERIALIZABLE the transaction snapshot may be
 * older than the lock; whenever the answer under the transaction snapshot
 * differs from the answer under the latest snapshot (what is true now, and
 * stable while we hold the lock), we raise serialization_failure (40001)
 * rather than act on a stale view, as ri_triggers.c does for foreign keys.
 *
 * src/bids.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bidguard.h"
#include "bid_status.h"
#include "bid_write.h"
#include "bids.h"

static void
bid_row_from_tuple(int row, BidRow *bid)
{
	HeapTuple	tuple = SPI_tuptable->vals[row];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	bid->bid_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	bid->status = bid_status_from_datum(SPI_getbinval(tuple, desc, 2, &isnull));
	memcpy(&bid->atomic_event_id,
		   DatumGetUUIDP(SPI_getbinval(tuple, desc, 3, &isnull)),
		   sizeof(pg_uuid_t));
}

/*
 * bid_find_active
 *		Look up the posting's active bid.  The caller holds the posting lock
 *		and is connected to SPI.
 *
 * Under READ COMMITTED the statement's fresh snapshot sees all that the
 * previous lock holders committed.  Under REPEATABLE READ or SERIALIZABLE
 * the answer must also be the one the latest snapshot gives, or we raise
 * 40001.
 */
static bool
bid_find_active(Oid nspid, text *marketplace_id, text *posting_id, BidRow *bid)
{
	SPIPlanPtr	plan = bidguard_plan(nspid, BG_PLAN_FIND_ACTIVE_BID);
	Datum		values[2];
	bool		found;

	values[0] = PointerGetDatum(marketplace_id);
	values[1] = PointerGetDatum(posting_id);

	bidguard_spi_check(SPI_execute_plan(plan, values, NULL, false, 0),
			  SPI_OK_SELECT, "looking up the active bid");
	if (SPI_processed > 1)
		elog(ERROR, "bidguard: posting has %llu active bids",
			 (unsigned long long) SPI_processed);
	found = (SPI_processed == 1);
	if (found)
		bid_row_from_tuple(0, bid);

	if (IsolationUsesXactSnapshot())
	{
		bool		found_now;
		int64		bid_id_now = 0;

		bidguard_spi_check(SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
									   InvalidSnapshot, false, false, 0),
				  SPI_OK_SELECT, "looking up the active bid");
		found_now = (SPI_processed == 1);
		if (found_now)
		{
			bool		isnull;

			bid_id_now = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc,
													 1, &isnull));
		}
		if (found != found_now || (found && bid->bid_id != bid_id_now))
			bid_raise_posting_serialization_failure(marketplace_id, posting_id);
	}
	return found;
}

/*
 * bid_insert
 *		Insert a pending bid; false when a concurrent plain INSERT won the
 *		race for the unique index (ON CONFLICT DO NOTHING).
 *
 * Under REPEATABLE READ and SERIALIZABLE the executor itself raises 40001
 * when the conflicting row is invisible to the transaction snapshot.
 */
static bool
bid_insert(Oid nspid, text *marketplace_id, text *posting_id, Jsonb *bid_data,
		   BidRow *bid)
{
	SPIPlanPtr	plan = bidguard_plan(nspid, BG_PLAN_INSERT_BID);
	Datum		values[3];

	values[0] = PointerGetDatum(marketplace_id);
	values[1] = PointerGetDatum(posting_id);
	values[2] = JsonbPGetDatum(bid_data);

	bid_creating = true;
	PG_TRY();
	{
		bidguard_spi_check(SPI_execute_plan(plan, values, NULL, false, 0),
				  SPI_OK_INSERT_RETURNING, "inserting the bid");
	}
	PG_FINALLY();
	{
		bid_creating = false;
	}
	PG_END_TRY();
	if (SPI_processed == 0)
		return false;
	bid_row_from_tuple(0, bid);
	return true;
}

static void
raise_no_such_bid(int64 bid_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("bid %lld does not exist", (long long) bid_id)));
}

static void
raise_bid_serialization_failure(int64 bid_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 errdetail("Bid %lld was created, changed or deleted after this transaction's snapshot was taken.",
					   (long long) bid_id),
			 errhint("Retry the transaction.")));
}

/*
 * bid_lock_row
 *		Lock a bid's row FOR NO KEY UPDATE and read its status and posting
 *		key.  The caller is connected to SPI, and either holds the lock of
 *		*posting_key or passes 0 to have the bid's own posting locked first.
 *
 * Returns false if the bid does not exist now.  The lock order is posting,
 * then row, so when the locked row turns out to belong to another posting
 * (a plain UPDATE moved it meanwhile) we must not wait for that posting's
 * lock while holding the row: with "follow", we take it only if it is free
 * and otherwise raise 40001 (retry); without, we return at once and the
 * caller sees the other key in *posting_key.
 */
static bool
bid_lock_row(Oid nspid, int64 bid_id, bool follow, BidStatus *status,
			 uint64 *posting_key)
{
	Datum		values[1];
	uint64		locked_key = *posting_key;
	bool		isnull;

	values[0] = Int64GetDatum(bid_id);

	for (;;)
	{
		HeapTuple	tuple;
		TupleDesc	desc;
		uint64		key;

		CHECK_FOR_INTERRUPTS();

		if (locked_key == 0)
		{
			/* Where is the bid now?  Latest snapshot: we lock nothing yet. */
			bidguard_spi_check(SPI_execute_snapshot(bidguard_plan(nspid, BG_PLAN_BID_POSTING),
										   values, NULL, GetLatestSnapshot(),
										   InvalidSnapshot, false, false, 0),
					  SPI_OK_SELECT, "looking up the bid");
			if (SPI_processed == 0)
			{
				/* Gone.  Under a transaction snapshot, visible but gone is 40001. */
				if (IsolationUsesXactSnapshot())
				{
					bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_BID_POSTING),
											   values, NULL, false, 0),
							  SPI_OK_SELECT, "looking up the bid");
					if (SPI_processed > 0)
						raise_bid_serialization_failure(bid_id);
				}
				return false;
			}
			tuple = SPI_tuptable->vals[0];
			desc = SPI_tuptable->tupdesc;
			locked_key = bidguard_posting_key(DatumGetTextPP(SPI_getbinval(tuple, desc, 1, &isnull)),
											  DatumGetTextPP(SPI_getbinval(tuple, desc, 2, &isnull)));
			bidguard_lock_posting(locked_key);
		}

		bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_LOCK_BID),
								   values, NULL, false, 0),
				  SPI_OK_SELECT, "locking the bid");
		if (SPI_processed == 0)
		{
			/*
			 * Invisible to our snapshot.  Under READ COMMITTED it was deleted
			 * meanwhile: look again (and report it missing).  Under a
			 * transaction snapshot, it exists now but not for us: 40001.
			 */
			if (IsolationUsesXactSnapshot())
				raise_bid_serialization_failure(bid_id);
			locked_key = 0;
			continue;
		}
		tuple = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		key = bidguard_posting_key(DatumGetTextPP(SPI_getbinval(tuple, desc, 1, &isnull)),
								   DatumGetTextPP(SPI_getbinval(tuple, desc, 2, &isnull)));
		if (key != locked_key)
		{
			/* Moved to another posting while we waited for the row. */
			if (!follow)
			{
				*posting_key = key;
				return true;
			}
			if (!bidguard_try_lock_posting(key))
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update"),
						 errdetail("Bid %lld was moved to another posting, whose lock is held by another transaction.",
								   (long long) bid_id),
						 errhint("Retry the transaction.")));
			locked_key = key;
			continue;			/* read it again under both locks */
		}
		*status = bid_status_from_datum(SPI_getbinval(tuple, desc, 3, &isnull));
		if (*status == BID_UNKNOWN)		/* the table's CHECK prevents it */
			elog(ERROR, "bidguard: bid %lld has an unknown status", (long long) bid_id);
		*posting_key = locked_key;
		return true;
	}
}

/*
 * bid_update_status
 *		Set a locked bid's status; the transition trigger judges it.
 */
static void
bid_update_status(Oid nspid, int64 bid_id, BidStatus status, text *reason)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(bid_id);
	values[1] = CStringGetTextDatum(bid_status_names[status]);
	values[2] = reason ? PointerGetDatum(reason) : (Datum) 0;
	if (reason == NULL)
		nulls[2] = 'n';

	bidguard_spi_check(SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_UPDATE_BID_STATUS),
							   values, nulls, false, 0),
			  SPI_OK_UPDATE, "updating the bid");
	if (SPI_processed != 1)
		elog(ERROR, "bidguard: bid %lld vanished while locked", (long long) bid_id);
}

static BidStatus
arg_bid_status(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	text	   *t;
	BidStatus	s;

	bidguard_arg_not_null(fcinfo, argno, argname);
	t = PG_GETARG_TEXT_PP(argno);
	s = bid_status_from_bytes(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (s == BID_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown bid status \"%s\"", text_to_cstring(t)),
				 errhint("A bid status is one of \"pending\", \"submitted\", \"won\", \"lost\", \"withdrawn\", \"expired\" or \"failed\".")));
	return s;
}

static Datum
status_datum(BidStatus s)
{
	return CStringGetTextDatum(bid_status_names[s]);
}

/*
 * bid_create
 *		The posting's active bid, or a new pending one (true): the body of
 *		bidguard_create_bid and of each element of bidguard_create_bids.
 *		The caller holds the posting lock.  Without SQL when bidguard_bids
 *		allows it (bid_write.c), else through SPI.
 */
bool
bid_create(Oid nspid, text *marketplace_id, text *posting_id, Jsonb *bid_data, BidRow *bid)
{
	BidguardDirect *d = bid_direct_open(nspid);
	bool		created = false;

	if (d != NULL)
	{
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			if (bid_direct_find_active(d, marketplace_id, posting_id, bid))
				break;
			if (bid_direct_insert(nspid, d, marketplace_id, posting_id, bid_data, bid))
			{
				created = true;
				break;
			}
			/* A plain INSERT committed an active bid meanwhile: return it. */
		}
		bidguard_direct_close(d);
		return created;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (bid_find_active(nspid, marketplace_id, posting_id, bid))
			break;
		if (bid_insert(nspid, marketplace_id, posting_id, bid_data, bid))
		{
			created = true;
			break;
		}
		/* A plain INSERT committed an active bid meanwhile: return it. */
	}
	SPI_finish();
	return created;
}

/*
 * bidguard_create_bid(marketplace_id text, posting_id text,
 *					   bid_data jsonb DEFAULT '{}')
 * RETURNS TABLE (bid_id bigint, created boolean, status text,
 *				  atomic_event_id uuid)
 *
 * Returns the posting's active bid (created = false), or inserts a pending
 * one (created = true).  Locks: the posting lock, held to the end of the
 * transaction; a concurrent caller for the same posting waits for it, then
 * finds the bid this one created (or, if this transaction rolls back,
 * creates its own).
 */
PG_FUNCTION_INFO_V1(bidguard_create_bid);
Datum
bidguard_create_bid(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	text	   *marketplace_id = bidguard_arg_id(fcinfo, 0, "marketplace_id");
	text	   *posting_id = bidguard_arg_id(fcinfo, 1, "posting_id");
	Jsonb	   *bid_data = bidguard_arg_object(fcinfo, 2, "bid_data");
	BidRow		bid;
	bool		created = false;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	pg_uuid_t  *uuid;
	BidguardPlacement saved;

	bidguard_check_writable("bidguard_create_bid()");
	bidguard_place_posting(nspid, posting_id, NULL, &saved);
	bidguard_lock_posting(bidguard_posting_key(marketplace_id, posting_id));
	created = bid_create(nspid, marketplace_id, posting_id, bid_data, &bid);
	bidguard_placement_restore(&saved);
	if (!created)
		bidguard_count(BG_STAT_BIDS_DEDUPLICATED);

	uuid = palloc(sizeof(pg_uuid_t));
	memcpy(uuid, &bid.atomic_event_id, sizeof(pg_uuid_t));
	values[0] = Int64GetDatum(bid.bid_id);
	values[1] = BoolGetDatum(created);
	values[2] = status_datum(bid.status);
	values[3] = UUIDPGetDatum(uuid);
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

/*
 * bid_change_status
 *		Lock bid "bid_id" (its posting, then its row) and move it to
 *		"target", for bidguard_set_bid_status and bidguard_withdraw_bid.
 *		Returns whether it changed, and its status before in *old.  The same
 *		status again is a no-op; a disallowed transition is 23514, unless
 *		"terminal_ok" and the bid is in a terminal status, which is then left
 *		as it is.
 */
static bool
bid_change_status(Oid nspid, int64 bid_id, BidStatus target, text *reason,
				  bool terminal_ok, BidStatus *old)
{
	uint64		posting_key = 0;
	bool		changed = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!bid_lock_row(nspid, bid_id, true, old, &posting_key))
		raise_no_such_bid(bid_id);
	if (*old != target &&
		!(terminal_ok && bid_status_is_terminal(*old)))
	{
		if (!bid_transition_allowed(*old, target))
			bid_raise_bad_transition(bid_id, *old, target,
									 get_namespace_name(nspid), "bidguard_bids");
		bid_update_status(nspid, bid_id, target, reason);
		changed = true;
	}
	SPI_finish();
	return changed;
}

/*
 * On Citus, a bid is found through its posting (the distribution column):
 * the keyed variants (bidguard_citus_*) take the posting first and pass
 * "argoff" 1; the plain ones are refused there (placement.c).
 */
static void
bid_place(FunctionCallInfo fcinfo, Oid nspid, int argoff, const char *function,
		  const char *keyed, BidguardPlacement *saved)
{
	if (argoff > 0)
		bidguard_place_posting(nspid, bidguard_arg_id(fcinfo, 0, "posting_id"), NULL, saved);
	else
		bidguard_place_unkeyed(nspid, BG_TABLE_BIDS, function, keyed, saved);
}

/*
 * bidguard_set_bid_status(bid_id bigint, new_status text,
 *						   reason text DEFAULT NULL)
 * RETURNS TABLE (bid_id bigint, changed boolean, old_status text,
 *				  status text)
 *
 * Moves a bid along an allowed transition (23514 otherwise); the same status
 * again is a no-op.  Locks: the bid's posting lock, then its row FOR NO KEY
 * UPDATE.
 */
static Datum
set_bid_status_body(FunctionCallInfo fcinfo, int argoff)
{
	Oid			nspid = bidguard_schema(fcinfo);
	int64		bid_id;
	BidStatus	new_status;
	BidStatus	old_status;
	bool		changed;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	BidguardPlacement saved;

	bidguard_arg_not_null(fcinfo, argoff, "bid_id");
	bid_id = PG_GETARG_INT64(argoff);
	new_status = arg_bid_status(fcinfo, argoff + 1, "new_status");
	bidguard_check_writable("bidguard_set_bid_status()");
	bid_place(fcinfo, nspid, argoff, "bidguard_set_bid_status(bid_id, new_status, reason)",
			  "bidguard_citus_set_bid_status(posting_id, bid_id, new_status, reason)",
			  &saved);

	changed = bid_change_status(nspid, bid_id, new_status,
								PG_ARGISNULL(argoff + 2) ? NULL : PG_GETARG_TEXT_PP(argoff + 2),
								false, &old_status);
	bidguard_placement_restore(&saved);

	values[0] = Int64GetDatum(bid_id);
	values[1] = BoolGetDatum(changed);
	values[2] = status_datum(old_status);
	values[3] = status_datum(new_status);
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(bidguard_set_bid_status);
Datum
bidguard_set_bid_status(PG_FUNCTION_ARGS)
{
	return set_bid_status_body(fcinfo, 0);
}

/*
 * bidguard_citus_set_bid_status(posting_id text, bid_id bigint,
 *								 new_status text, reason text DEFAULT NULL)
 *
 * bidguard_set_bid_status for Citus (scaleout/citus): the bid's posting
 * routes the call to the worker that holds it.
 */
PG_FUNCTION_INFO_V1(bidguard_citus_set_bid_status);
Datum
bidguard_citus_set_bid_status(PG_FUNCTION_ARGS)
{
	return set_bid_status_body(fcinfo, 1);
}

/*
 * bidguard_withdraw_bid(bid_id bigint, reason text DEFAULT NULL)
 * RETURNS TABLE (bid_id bigint, withdrawn boolean, status text)
 *
 * Withdraws an active bid.  A bid already withdrawn or otherwise terminal is
 * left alone (withdrawn = false, its status).  Locks: as
 * bidguard_set_bid_status.
 */
static Datum
withdraw_bid_body(FunctionCallInfo fcinfo, int argoff)
{
	Oid			nspid = bidguard_schema(fcinfo);
	int64		bid_id;
	BidStatus	old_status;
	bool		withdrawn;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	BidguardPlacement saved;

	bidguard_arg_not_null(fcinfo, argoff, "bid_id");
	bid_id = PG_GETARG_INT64(argoff);
	bidguard_check_writable("bidguard_withdraw_bid()");
	bid_place(fcinfo, nspid, argoff, "bidguard_withdraw_bid(bid_id, reason)",
			  "bidguard_citus_withdraw_bid(posting_id, bid_id, reason)", &saved);

	withdrawn = bid_change_status(nspid, bid_id, BID_WITHDRAWN,
								  PG_ARGISNULL(argoff + 1) ? NULL : PG_GETARG_TEXT_PP(argoff + 1),
								  true, &old_status);
	bidguard_placement_restore(&saved);

	values[0] = Int64GetDatum(bid_id);
	values[1] = BoolGetDatum(withdrawn);
	values[2] = status_datum(withdrawn ? BID_WITHDRAWN : old_status);
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(bidguard_withdraw_bid);
Datum
bidguard_withdraw_bid(PG_FUNCTION_ARGS)
{
	return withdraw_bid_body(fcinfo, 0);
}

/*
 * bidguard_citus_withdraw_bid(posting_id text, bid_id bigint,
 *							   reason text DEFAULT NULL)
 *
 * bidguard_withdraw_bid for Citus, routed by the bid's posting.
 */
PG_FUNCTION_INFO_V1(bidguard_citus_withdraw_bid);
Datum
bidguard_citus_withdraw_bid(PG_FUNCTION_ARGS)
{
	return withdraw_bid_body(fcinfo, 1);
}

/*
 * bidguard_withdraw_posting(marketplace_id text, posting_id text,
 *							 reason text DEFAULT NULL)
 * RETURNS TABLE (bid_id bigint, withdrawn boolean, status text)
 *
 * Withdraws the posting's active bid; with none, returns withdrawn = false
 * and NULLs.  Locks: the posting lock, then the bid's row.
 */
PG_FUNCTION_INFO_V1(bidguard_withdraw_posting);
Datum
bidguard_withdraw_posting(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	text	   *marketplace_id = bidguard_arg_id(fcinfo, 0, "marketplace_id");
	text	   *posting_id = bidguard_arg_id(fcinfo, 1, "posting_id");
	text	   *reason = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	uint64		key = bidguard_posting_key(marketplace_id, posting_id);
	BidRow		bid;
	bool		found = false;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	BidguardPlacement saved;

	bidguard_check_writable("bidguard_withdraw_posting()");
	bidguard_place_posting(nspid, posting_id, NULL, &saved);
	bidguard_lock_posting(key);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (;;)
	{
		BidStatus	status;
		uint64		locked_key = key;

		CHECK_FOR_INTERRUPTS();
		if (!bid_find_active(nspid, marketplace_id, posting_id, &bid))
			break;
		if (!bid_lock_row(nspid, bid.bid_id, false, &status, &locked_key))
			continue;			/* deleted meanwhile by plain SQL */
		if (locked_key != key || !BID_IS_ACTIVE(status))
			continue;			/* plain SQL moved or ended it meanwhile */
		bid_update_status(nspid, bid.bid_id, BID_WITHDRAWN, reason);
		found = true;
		break;
	}
	SPI_finish();
	bidguard_placement_restore(&saved);

	if (found)
	{
		values[0] = Int64GetDatum(bid.bid_id);
		values[1] = BoolGetDatum(true);
		values[2] = status_datum(BID_WITHDRAWN);
	}
	else
	{
		nulls[0] = true;
		values[1] = BoolGetDatum(false);
		nulls[2] = true;
	}
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}
