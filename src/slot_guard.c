/*-------------------------------------------------------------------------
 *
 * slot_guard.c
 *	  The concurrency guard on an application's table: at most max_slots
 *	  transactions at once insert rows of the same key.  The trigger
 *	  bidguard_slot_guard_trigger() and the SQL functions
 *	  bidguard_guard_slots() and bidguard_unguard_slots().
 *
 * The guard is an ordinary trigger, as the other guards are:
 *     bidguard_slot_guard BEFORE INSERT OR UPDATE OF key
 *     FOR EACH ROW EXECUTE FUNCTION
 *         bidguard_slot_guard_trigger('<max_slots>', '<wait>', '<prefix>')
 * The key column is the trigger's UPDATE OF column, so the guard follows
 * renames and the column cannot be dropped under it; UPDATEs take no slot.
 * A row's slot key is the prefix (by default the table's name when guarded)
 * followed by the key column's text, so bidguard_acquire_slot() callers of
 * the same key share the slots.
 *
 * Locking protocol
 * ----------------
 * An INSERT of a row with a non-NULL key takes one slot of its key (slots.c:
 * lock class SLOT, to the end of the transaction) unless the transaction
 * holds one already: a transaction inserting many rows of a key holds one
 * slot for them all.  Waiting is slots.c's, within the guard's wait; when no
 * slot is had in time the row is 55P03 (lock_not_available), as for a
 * lock_timeout.  NULL keys are not guarded; restored rows (restore.c) take
 * no slot.  Guarding and unguarding lock the table in
 * ShareRowExclusiveLock (CREATE TRIGGER's), owner only (42501).
 *
 * src/slot_guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "bidguard.h"
#include "guards.h"

static void
slot_guard_misuse(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("function \"bidguard_slot_guard_trigger\" must be attached by bidguard_guard_slots()"),
			 errdetail("It fires BEFORE INSERT OR UPDATE OF key FOR EACH ROW, with max_slots, wait and the key prefix as its arguments.")));
}

/*
 * bidguard_slot_guard_trigger()
 *
 * The trigger bidguard_guard_slots() puts on a table.  55P03 when every slot
 * of the row's key stayed held by other transactions for the guard's wait.
 */
PG_FUNCTION_INFO_V1(bidguard_slot_guard_trigger);
Datum
bidguard_slot_guard_trigger(PG_FUNCTION_ARGS)
{
	Relation	rel = ((TriggerData *) fcinfo->context)->tg_relation;
	GuardKeyArgs *args;
	text	   *key;
	int32		max_slots;
	Interval   *wait;

	key = guard_inserted_key(fcinfo, slot_guard_misuse, &args);
	if (key == NULL)
		return guard_pass_row(fcinfo);
	max_slots = args->count;
	if (max_slots < 1 || max_slots > BIDGUARD_MAX_SLOTS)
		slot_guard_misuse();
	/* one slot per transaction and key, however many rows it inserts */
	if (bidguard_slot_held(key, max_slots) != 0)
		return guard_pass_row(fcinfo);
	wait = &args->span;
	if (bidguard_slot_acquire(key, max_slots, bidguard_arg_wait_ms(wait), false) == 0)
	{
		bidguard_count(BG_STAT_SLOTS_BUSY);
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not obtain a slot of key \"%s\"", text_to_cstring(key)),
				 errdetail("Table \"%s\" lets %d transaction(s) at once insert rows of one key; none of the slots was freed within %s.",
						   RelationGetRelationName(rel), max_slots, bidguard_interval_text(wait)),
				 errhint("Retry the transaction later.")));
	}
	bidguard_count(BG_STAT_SLOTS_ACQUIRED);
	return guard_pass_row(fcinfo);
}

/*
 * bidguard_guard_slots(tbl regclass, key_column name, max_slots integer,
 *						wait interval DEFAULT '0', key_prefix text DEFAULT NULL)
 * RETURNS text
 *
 * Guards tbl (replacing its slot guard, if any) and returns the key prefix
 * (NULL: the table's qualified name and ':').  22004 for NULL arguments
 * other than key_prefix, 22023 for max_slots outside 1..10000 or a negative
 * or infinite wait; owner only (42501); 42710 for a trigger of the guard's
 * name that is not bidguard's.
 */
PG_FUNCTION_INFO_V1(bidguard_guard_slots);
Datum
bidguard_guard_slots(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	Oid			relid;
	Name		key_column;
	int32		max_slots;
	Interval   *wait;
	char	   *prefix;
	char	   *qrel;
	Oid			owner;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	bidguard_arg_not_null(fcinfo, 1, "key_column");
	bidguard_arg_not_null(fcinfo, 2, "max_slots");
	bidguard_arg_not_null(fcinfo, 3, "wait");
	relid = PG_GETARG_OID(0);
	key_column = PG_GETARG_NAME(1);
	max_slots = PG_GETARG_INT32(2);
	wait = PG_GETARG_INTERVAL_P(3);
	if (max_slots < 1 || max_slots > BIDGUARD_MAX_SLOTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_slots must be between 1 and %d", BIDGUARD_MAX_SLOTS),
				 errdetail("The max_slots given is %d.", max_slots)));
	(void) bidguard_arg_wait_ms(wait);
	bidguard_check_writable("bidguard_guard_slots()");

	guard_key_table(relid, nspid, key_column, PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4),
					&qrel, &prefix, &owner);

	guard_create_trigger(relid, nspid, owner, qrel, SLOT_TRIGGER_NAME,
						 "bidguard_slot_guard_trigger", NameStr(*key_column),
						 psprintf("%s, %s, %s",
								  quote_literal_cstr(psprintf("%d", max_slots)),
								  quote_literal_cstr(bidguard_interval_text(wait)),
								  quote_literal_cstr(prefix)));
	PG_RETURN_TEXT_P(cstring_to_text(prefix));
}

/*
 * bidguard_unguard_slots(tbl regclass) RETURNS void
 *
 * Drops the slot guard; 42704 when the table has none.  Owner only.
 */
PG_FUNCTION_INFO_V1(bidguard_unguard_slots);
Datum
bidguard_unguard_slots(PG_FUNCTION_ARGS)
{
	bidguard_check_writable("bidguard_unguard_slots()");
	guard_drop_trigger(PG_GETARG_OID(0), bidguard_schema(fcinfo), SLOT_TRIGGER_NAME,
					   "bidguard_slot_guard_trigger", "slot guard");
	PG_RETURN_VOID();
}
