/*-------------------------------------------------------------------------
 *
 * slots.c
 *	  Concurrency slots: at most max_slots holders of a key at once.  The SQL
 *	  functions bidguard_acquire_slot(), bidguard_acquire_session_slot(),
 *	  bidguard_release_slot() and bidguard_slot_holders(), and what the
 *	  setting bidguard.pool_mode (module.c) allows.
 *
 * Locking protocol
 * ----------------
 * Slot n (1..max_slots) of a key is a lock of bidguard's class SLOT (25094)
 * with key bidguard_lock_key(key, n::text), in ExclusiveLock mode, in the
 * regular lock manager: so a slot is freed by the lock manager when its
 * holder's transaction (or, for a session slot, its session) ends, however
 * it ends, killed backends included; pg_locks, bidguard_locks and
 * pg_blocking_pids() show holders and waiters.
 *
 * Acquiring tries every slot without waiting, starting at a slot chosen by
 * the backend's pid (so that callers spread over the slots rather than all
 * queueing on slot 1); a slot this backend holds already is skipped, so one
 * transaction can hold several slots of a key (each acquire is one more
 * holder).  When all are taken and the caller may wait:
 *   - max_slots = 1: it waits for the one slot in the lock manager, as long
 *     as "wait" (capped by lock_timeout) allows.  Exact, first come first
 *     served, and the deadlock detector sees the wait.
 *   - max_slots > 1: there is no "wait for any of these locks" in the lock
 *     manager, so it waits on one slot at a time for a slice (10 ms at
 *     first, doubling up to 200 ms, never past the deadline), trying every
 *     slot again between slices.  A slot freed while the waiter sleeps on
 *     another is therefore taken within one slice, and the deadlock
 *     detector (deadlock_timeout, 1 s by default) does not see these short
 *     waits: a transaction that holds a slot of A and waits for one of B,
 *     while another does the opposite, waits out its bound.
 * Every wait is in the lock manager, so cancellation, statement_timeout and
 * lock_timeout work as for any lock.
 *
 * Session slots are session-level locks of the same tags; behind a
 * transaction pooler (PgBouncer pool_mode = transaction) a session is
 * shared by clients, so they are refused when bidguard.pool_mode says so
 * (55000).  DISCARD ALL and pg_advisory_unlock_all() release them too, as
 * they release every session-level advisory lock.
 *
 * src/slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "bidguard.h"

/* bidguard.pool_mode (defined by module.c): what sits between clients and this server */
const struct config_enum_entry bidguard_pool_mode_options[] = {
	{"session", BIDGUARD_POOL_MODE_SESSION, false},
	{"transaction", BIDGUARD_POOL_MODE_TRANSACTION, false},
	{"statement", BIDGUARD_POOL_MODE_STATEMENT, false},
	{NULL, 0, false}
};

int			bidguard_pool_mode = BIDGUARD_POOL_MODE_SESSION;

static void
slot_tag(LOCKTAG *tag, text *key, int slot)
{
	char		buf[16];
	int			n = snprintf(buf, sizeof(buf), "%d", slot);
	uint64		h = bidguard_hash_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), buf, n);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 BIDGUARD_LOCK_CLASS_SLOT);
}

/*
 * slot_try_all
 *		Take a free slot without waiting: its number, or 0.  held[n - 1] is
 *		set for the slots this backend holds already (skipped); *nheld counts
 *		them.
 */
static int
slot_try_all(text *key, int max_slots, bool session, bool *held, int *nheld)
{
	int			start = MyProcPid % max_slots;

	*nheld = 0;
	for (int i = 0; i < max_slots; i++)
	{
		int			n = (start + i) % max_slots + 1;
		LOCKTAG		tag;
		LockAcquireResult r;

		if (held[n - 1])
		{
			(*nheld)++;
			continue;
		}
		slot_tag(&tag, key, n);
		r = LockAcquire(&tag, ExclusiveLock, session, true);
		if (r == LOCKACQUIRE_NOT_AVAIL)
			continue;
		if (r != LOCKACQUIRE_OK)
		{
			/* ours already: give back the count just added, and skip it */
			LockRelease(&tag, ExclusiveLock, session);
			held[n - 1] = true;
			(*nheld)++;
			continue;
		}
		return n;
	}
	return 0;
}

/*
 * bidguard_slot_acquire
 *		Take one of max_slots slots of key, waiting at most wait_ms (0: not
 *		at all; -1: as lock_timeout allows, forever when it is 0).  The slot's
 *		number, or 0 when none was had in time.
 */
int
bidguard_slot_acquire(text *key, int max_slots, int wait_ms, bool session)
{
	bool	   *held = palloc0(sizeof(bool) * max_slots);
	int			nheld;
	int			n;
	int			next = MyProcPid % max_slots;
	int			slice_ms = 10;
	bool		waited_for_it = false;
	TimestampTz start;
	TimestampTz deadline = 0;

	n = slot_try_all(key, max_slots, session, held, &nheld);
	if (n != 0 || wait_ms == 0 || nheld == max_slots)
		return n;

	if (wait_ms < 0 && LockTimeout > 0)
		wait_ms = LockTimeout;
	else if (wait_ms > 0 && LockTimeout > 0 && LockTimeout < wait_ms)
		wait_ms = LockTimeout;
	bidguard_count(BG_STAT_SLOT_WAITS);
	start = GetCurrentTimestamp();
	if (wait_ms > 0)
		deadline = TimestampTzPlusMilliseconds(start, wait_ms);

	while (n == 0)
	{
		LOCKTAG		tag;
		int			timeout_ms;

		/* the next slot, round robin, that is not ours already */
		do
			next = next % max_slots + 1;
		while (held[next - 1]);
		slot_tag(&tag, key, next);

		if (max_slots == 1 && wait_ms < 0)
		{
			(void) LockAcquire(&tag, ExclusiveLock, false, false);
			n = next;
			waited_for_it = true;
			break;
		}
		if (max_slots == 1)
			timeout_ms = wait_ms;
		else
			timeout_ms = slice_ms;
		if (wait_ms > 0)
		{
			long		secs;
			int			usecs;
			int			left_ms;

			TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
			left_ms = (int) Min((int64) secs * 1000 + (usecs + 999) / 1000, INT_MAX);
			if (left_ms <= 0)
				break;
			timeout_ms = Min(timeout_ms, left_ms);
		}
		if (bidguard_lock_within(&tag, timeout_ms))
		{
			n = next;
			waited_for_it = true;
			break;
		}
		if (max_slots == 1)
			break;
		slice_ms = Min(slice_ms * 2, 200);
		n = slot_try_all(key, max_slots, session, held, &nheld);
		if (nheld == max_slots)
			break;
	}

	/*
	 * A wait takes the slot as the transaction's lock (whose release, should
	 * the timeout fire as it is granted, the subtransaction's abort sees to);
	 * a session slot is then held by the session instead: one more hold, of
	 * the session, granted at once since this backend has the lock, and the
	 * transaction's hold given back.
	 */
	if (n != 0 && session && waited_for_it)
	{
		LOCKTAG		tag;

		slot_tag(&tag, key, n);
		(void) LockAcquire(&tag, ExclusiveLock, true, true);
		LockRelease(&tag, ExclusiveLock, false);
	}
	bidguard_count_wait(GetCurrentTimestamp() - start, n != 0);
	return n;
}

/*
 * bidguard_slot_held
 *		The number of a slot of key this backend holds (in any way), or 0.
 */
int
bidguard_slot_held(text *key, int max_slots)
{
	for (int n = 1; n <= max_slots; n++)
	{
		LOCKTAG		tag;

		slot_tag(&tag, key, n);
		if (bidguard_lock_held_by_me(&tag, ExclusiveLock))
			return n;
	}
	return 0;
}

static Datum
slot_call(FunctionCallInfo fcinfo, bool session)
{
	text	   *key = bidguard_arg_id(fcinfo, 0, "key");
	int32		max_slots;
	int			wait_ms;
	int			n;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	bidguard_arg_not_null(fcinfo, 1, "max_slots");
	max_slots = PG_GETARG_INT32(1);
	if (max_slots < 1 || max_slots > BIDGUARD_MAX_SLOTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_slots must be between 1 and %d", BIDGUARD_MAX_SLOTS),
				 errdetail("The max_slots given is %d.", max_slots)));
	wait_ms = PG_ARGISNULL(2) ? -1 : bidguard_arg_wait_ms(PG_GETARG_INTERVAL_P(2));
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot acquire a bidguard slot during a parallel operation")));
	if (session && bidguard_pool_mode != BIDGUARD_POOL_MODE_SESSION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("session-scoped slots cannot be used behind a %s pooler",
						bidguard_pool_mode == BIDGUARD_POOL_MODE_TRANSACTION ? "transaction" : "statement"),
				 errdetail("bidguard.pool_mode is \"%s\": the next client given this server session would hold the slot.",
						   bidguard_pool_mode == BIDGUARD_POOL_MODE_TRANSACTION ? "transaction" : "statement"),
				 errhint("Use bidguard_acquire_slot(), which holds the slot until the end of the transaction.")));

	n = bidguard_slot_acquire(key, max_slots, wait_ms, session);
	bidguard_count(n != 0 ? BG_STAT_SLOTS_ACQUIRED : BG_STAT_SLOTS_BUSY);
	values[0] = BoolGetDatum(n != 0);
	values[1] = Int32GetDatum(n);
	nulls[1] = n == 0;
	values[2] = CStringGetTextDatum(n != 0 ? "acquired" : "busy");
	bidguard_return_row(fcinfo, values, nulls);
	return (Datum) 0;
}

/*
 * bidguard_acquire_slot(key text, max_slots integer, wait interval DEFAULT '0')
 * RETURNS TABLE (acquired boolean, slot integer, reason text)
 *
 * One of max_slots slots of key, held to the end of the transaction:
 * (true, n, 'acquired'), or (false, NULL, 'busy') when none was free within
 * wait ('0': try once; NULL: as lock_timeout allows).  A transaction that
 * holds every slot of the key gets 'busy' at once.  22004 for a NULL key or
 * max_slots, 22023 for a key of 0 or more than 256 characters or
 * max_slots outside 1..10000; 40P01 and 57014 as for any lock wait.
 * Allowed in read-only transactions and on standbys.
 */
PG_FUNCTION_INFO_V1(bidguard_acquire_slot);
Datum
bidguard_acquire_slot(PG_FUNCTION_ARGS)
{
	return slot_call(fcinfo, false);
}

/*
 * bidguard_acquire_session_slot(key, max_slots, wait DEFAULT '0')
 *
 * As bidguard_acquire_slot, held until bidguard_release_slot(key, slot) or
 * the end of the session.  55000 unless bidguard.pool_mode is session.
 */
PG_FUNCTION_INFO_V1(bidguard_acquire_session_slot);
Datum
bidguard_acquire_session_slot(PG_FUNCTION_ARGS)
{
	return slot_call(fcinfo, true);
}

/*
 * bidguard_release_slot(key text, slot integer) RETURNS boolean
 *
 * Releases session slot "slot" of key: true when this session held it,
 * false (and the lock manager's WARNING) when it did not hold it as a
 * session slot.  A transaction's slots are released only by its end.
 */
PG_FUNCTION_INFO_V1(bidguard_release_slot);
Datum
bidguard_release_slot(PG_FUNCTION_ARGS)
{
	text	   *key = bidguard_arg_id(fcinfo, 0, "key");
	int32		slot;
	LOCKTAG		tag;

	bidguard_arg_not_null(fcinfo, 1, "slot");
	slot = PG_GETARG_INT32(1);
	if (slot < 1 || slot > BIDGUARD_MAX_SLOTS)
		PG_RETURN_BOOL(false);
	slot_tag(&tag, key, slot);
	if (!bidguard_lock_held_by_me(&tag, ExclusiveLock))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(LockRelease(&tag, ExclusiveLock, true));
}

/*
 * bidguard_slot_holders(key text, max_slots integer)
 * RETURNS TABLE (slot integer, pid integer, granted boolean,
 *				  wait_start timestamptz)
 *
 * Who holds (granted) or awaits each slot of the key now, from pg_locks,
 * in this database.  Locks: none.
 */
PG_FUNCTION_INFO_V1(bidguard_slot_holders);
Datum
bidguard_slot_holders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *key = bidguard_check_id(PG_GETARG_TEXT_PP(0), "key");
	int32		max_slots = PG_GETARG_INT32(1);
	Datum	   *slots;
	Datum	   *his;
	Datum	   *los;
	Datum		values[3];
	MemoryContext callcxt = CurrentMemoryContext;

	if (max_slots < 1 || max_slots > BIDGUARD_MAX_SLOTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_slots must be between 1 and %d", BIDGUARD_MAX_SLOTS),
				 errdetail("The max_slots given is %d.", max_slots)));
	bidguard_init_srf(fcinfo);
	slots = palloc(sizeof(Datum) * max_slots);
	his = palloc(sizeof(Datum) * max_slots);
	los = palloc(sizeof(Datum) * max_slots);
	for (int n = 1; n <= max_slots; n++)
	{
		LOCKTAG		tag;

		slot_tag(&tag, key, n);
		slots[n - 1] = Int32GetDatum(n);
		his[n - 1] = ObjectIdGetDatum(tag.locktag_field2);
		los[n - 1] = ObjectIdGetDatum(tag.locktag_field3);
	}
	values[0] = PointerGetDatum(construct_array(slots, max_slots, INT4OID, 4, true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(his, max_slots, OIDOID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(los, max_slots, OIDOID, 4, true, TYPALIGN_INT));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	bidguard_spi_check(SPI_execute_with_args(
											 "SELECT s.slot, l.pid, l.granted, l.waitstart"
											 " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS s(slot, hi, lo)"
											 " JOIN pg_catalog.pg_locks AS l"
											 " ON l.locktype OPERATOR(pg_catalog.=) 'advisory'"
											 " AND l.database OPERATOR(pg_catalog.=) $4"
											 " AND l.classid OPERATOR(pg_catalog.=) s.hi"
											 " AND l.objid OPERATOR(pg_catalog.=) s.lo"
											 " AND l.objsubid OPERATOR(pg_catalog.=) 25094"
											 " ORDER BY s.slot, l.granted DESC, l.waitstart, l.pid",
											 4, (Oid[]) {INT4ARRAYOID, OIDARRAYOID, OIDARRAYOID, OIDOID},
											 (Datum[]) {values[0], values[1], values[2],
														ObjectIdGetDatum(MyDatabaseId)},
											 NULL, true, 0),
					   SPI_OK_SELECT, "reading pg_locks");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		row[4];
		bool		nulls[4];
		MemoryContext old;

		for (int c = 0; c < 4; c++)
			row[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1,
								   &nulls[c]);
		old = MemoryContextSwitchTo(callcxt);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return (Datum) 0;
}
