/*-------------------------------------------------------------------------
 *
 * cooldown.c
 *	  The cooldown guard's row logic: what both cooldown triggers do with
 *	  one row (bidguard_trades' in trades.c, and the one
 *	  bidguard_guard_cooldown() puts on an application's table, in
 *	  guard_trigger.c).
 *
 * bidguard_cooldown_guard_row() is the one implementation of the cooldown
 * trigger's row logic.  What differs between the two triggers (where the
 * cooldown comes from, how a key is locked, the messages) are the hooks of
 * a CooldownGuard (bidguard.h).  A row counts
 * unless its status column (if any) says 'failed'; its effective time is
 * coalesce(fill, time).  A row may be admitted at time t when no other
 * counting row of its key has an effective time within the cooldown of t,
 * on either side.
 *
 * Locking protocol
 * ----------------
 * 1. An INSERT, or an UPDATE that changes the key or the time or makes a
 *    'failed' row count again, takes the key's lock (the lock hook: a
 *    transaction-scoped heavyweight lock of bidguard's class, held to the
 *    end of the transaction) before anything is decided.
 * 2. A fill set or moved takes the same lock: it moves the row's effective
 *    time, so an admission of the key waits for it and then judges by it.
 *    It is not judged itself.
 * 3. A NULL time on INSERT is stamped with the server clock once the lock
 *    is held, so that admissions of one key are ordered by their times.
 * 4. The decision (the decide hook) runs connected to SPI, under the lock,
 *    with the snapshot rules of the hook (READ COMMITTED: the latest
 *    snapshot; REPEATABLE READ and SERIALIZABLE: 40001 when the
 *    transaction's snapshot and the latest one disagree).
 * Nothing here takes a lock of its own beyond the hooks'.
 *
 * src/cooldown.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bidguard.h"

static bool
row_counts(CooldownGuard *g, HeapTuple tuple)
{
	bool		isnull;
	Datum		d;
	text	   *t;

	if (g->status_attnum == 0)
		return true;
	d = heap_getattr(tuple, g->status_attnum, RelationGetDescr(g->rel), &isnull);
	if (isnull)
		return true;			/* NOT NULL will reject it */
	t = DatumGetTextPP(d);
	return !(VARSIZE_ANY_EXHDR(t) == 6 && memcmp(VARDATA_ANY(t), "failed", 6) == 0);
}

static bool
same_value(HeapTuple a, HeapTuple b, int attnum, TupleDesc desc)
{
	bool		na,
				nb;
	Datum		da = heap_getattr(a, attnum, desc, &na);
	Datum		db = heap_getattr(b, attnum, desc, &nb);
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);

	if (na || nb)
		return na == nb;
	return datumIsEqual(da, db, att->attbyval, att->attlen);
}

/*
 * bidguard_fired_before_row_ins_upd
 *		Was the function fired as a cooldown trigger must be: BEFORE INSERT
 *		OR UPDATE, FOR EACH ROW?
 */
bool
bidguard_fired_before_row_ins_upd(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	return CALLED_AS_TRIGGER(fcinfo) &&
		TRIGGER_FIRED_BEFORE(trigdata->tg_event) &&
		TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
		(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		 TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event));
}

/*
 * bidguard_cooldown_guard_row
 *		The cooldown trigger's work for one row (BEFORE INSERT OR UPDATE FOR
 *		EACH ROW); returns the row to store.
 *
 * An INSERT, or an UPDATE that changes the key or the time or makes a
 * 'failed' row count again, takes the key's lock and is judged.  A NULL time
 * on INSERT is stamped with the server clock once the lock is held.  A fill
 * time set or moved must lie in [time, now] (check_fill hook).  When a row
 * was judged and admitted, *admitted_under is the cooldown it was admitted
 * under (allocated in the caller's context), else NULL.
 */
HeapTuple
bidguard_cooldown_guard_row(CooldownGuard *g, TriggerData *trigdata,
							Interval **admitted_under)
{
	TupleDesc	desc = RelationGetDescr(g->rel);
	bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
	HeapTuple	newtuple = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;
	HeapTuple	oldtuple = is_insert ? NULL : trigdata->tg_trigtuple;
	Datum		key;
	bool		isnull;
	Datum		created;
	bool		created_isnull;
	bool		check;
	bool		fill_moved = false;

	*admitted_under = NULL;
	key = heap_getattr(newtuple, g->key_attnum, desc, &isnull);
	if (isnull)
		return newtuple;		/* NOT NULL rejects it, or NULL keys are free */
	created = heap_getattr(newtuple, g->time_attnum, desc, &created_isnull);

	if (is_insert)
		check = row_counts(g, newtuple);
	else
		check = row_counts(g, newtuple) &&
			(!same_value(oldtuple, newtuple, g->key_attnum, desc) ||
			 created_isnull ||
			 !same_value(oldtuple, newtuple, g->time_attnum, desc) ||
			 !row_counts(g, oldtuple));

	/*
	 * A fill time set or moved must lie in [time, now].  It moves the row's
	 * effective time, so it is made under the key's lock: an admission of
	 * the key waits for it and then judges by it.  It is not judged itself
	 * (a fill is a fact reported by the exchange).
	 */
	if (g->fill_attnum != 0 && !created_isnull)
	{
		bool		filled_isnull;
		Datum		filled = heap_getattr(newtuple, g->fill_attnum, desc, &filled_isnull);

		if (!filled_isnull &&
			(is_insert ||
			 !same_value(oldtuple, newtuple, g->fill_attnum, desc) ||
			 !same_value(oldtuple, newtuple, g->time_attnum, desc)))
		{
			g->check_fill(g, newtuple, DatumGetTimestampTz(created),
						  DatumGetTimestampTz(filled), bidguard_now());
			fill_moved = true;
		}
	}

	if (!check && !(is_insert && created_isnull))
	{
		if (fill_moved)
			g->lock(g, key);
		return newtuple;
	}

	g->lock(g, key);

	if (created_isnull && is_insert)
	{
		int			attnum = g->time_attnum;

		created = TimestampTzGetDatum(bidguard_now());
		created_isnull = false;
		newtuple = heap_modify_tuple_by_cols(newtuple, desc, 1, &attnum,
											 &created, &created_isnull);
		if (g->fill_attnum != 0)
		{
			bool		filled_isnull;
			Datum		filled = heap_getattr(newtuple, g->fill_attnum, desc, &filled_isnull);

			if (!filled_isnull)
				g->check_fill(g, newtuple, DatumGetTimestampTz(created),
							  DatumGetTimestampTz(filled), DatumGetTimestampTz(created));
		}
	}

	if (check && !created_isnull)
	{
		MemoryContext callcxt = CurrentMemoryContext;
		TimestampTz at = DatumGetTimestampTz(created);
		TimestampTz fill = 0;
		bool		has_fill = false;
		Interval   *cooldown = NULL;
		Interval   *retry = NULL;

		if (g->fill_attnum != 0)
		{
			bool		filled_isnull;
			Datum		filled = heap_getattr(newtuple, g->fill_attnum, desc, &filled_isnull);

			if (!filled_isnull)
			{
				fill = DatumGetTimestampTz(filled);
				has_fill = true;
			}
		}

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		retry = g->decide(g, key, at, has_fill ? &fill : NULL, oldtuple, &cooldown);
		if (retry != NULL)
		{
			bidguard_count(BG_STAT_TRADES_REJECTED_COOLDOWN);
			g->violation(g, key, at, has_fill ? &fill : NULL, cooldown, retry);
			pg_unreachable();
		}
		*admitted_under = MemoryContextAlloc(callcxt, sizeof(Interval));
		memcpy(*admitted_under, cooldown, sizeof(Interval));
		SPI_finish();
	}

	return newtuple;
}
