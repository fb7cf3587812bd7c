/*-------------------------------------------------------------------------
 *
 * rate_guard.c
 *	  The rate-limit guard on an application's table: plain INSERTs limited
 *	  to max_count rows per key within any window of length per.  The
 *	  trigger bidguard_rate_limit_guard_trigger() and the SQL functions
 *	  bidguard_guard_rate_limit() and bidguard_unguard_rate_limit().
 *
 * The guard is an ordinary trigger, so pg_dump carries it with the table:
 *     bidguard_rate_limit_guard BEFORE INSERT OR UPDATE OF key
 *     FOR EACH ROW EXECUTE FUNCTION
 *         bidguard_rate_limit_guard_trigger('<max_count>', '<per>', '<prefix>')
 * The key column is the trigger's UPDATE OF column (pg_trigger.tgattr), so
 * the guard follows renames and the column cannot be dropped under it; an
 * UPDATE takes no units (only INSERTs are actions).  With max_count and per
 * empty, the limit is the configured one of bidguard_rate_limits for the
 * row's rate key, read at each INSERT.  The rate key of a row is the prefix
 * (by default the table's name when guarded, e.g. 'public.orders:')
 * followed by the key column's text, so the quota survives renames, dumps
 * and restores, and can be shared with bidguard_rate_limit() callers.
 *
 * Locking protocol
 * ----------------
 * Each guarded INSERT of a non-NULL key makes rate_limit.c's decision: the
 * key's RATE lock (class 25093) to the end of the transaction, then the
 * window; a refused row is 23P01 (constraint bidguard_rate_limit_guard),
 * with retry_after in the DETAIL.  NULL keys are not limited, as UNIQUE
 * does not guard NULLs.  Rows being restored (restore.c) take no units.
 * Guarding and unguarding lock the table in
 * ShareRowExclusiveLock (CREATE TRIGGER's), owner only (42501).
 *
 * src/rate_guard.c
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
#include "rate_limit.h"

static void
rate_guard_misuse(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("function \"bidguard_rate_limit_guard_trigger\" must be attached by bidguard_guard_rate_limit()"),
			 errdetail("It fires BEFORE INSERT OR UPDATE OF key FOR EACH ROW, with max_count, per and the key prefix as its arguments.")));
}

/*
 * bidguard_rate_limit_guard_trigger()
 *
 * The trigger bidguard_guard_rate_limit() puts on a table.  23P01 when the
 * row's key has no unit left in the window; 42704 when the guard uses the
 * configured limit and none matches; 55P03 when lock_timeout expires.
 */
PG_FUNCTION_INFO_V1(bidguard_rate_limit_guard_trigger);
Datum
bidguard_rate_limit_guard_trigger(PG_FUNCTION_ARGS)
{
	Relation	rel = ((TriggerData *) fcinfo->context)->tg_relation;
	GuardKeyArgs *args;
	text	   *key;
	int32		max_count;
	Interval   *per;
	RateDecision d;

	key = guard_inserted_key(fcinfo, rate_guard_misuse, &args);
	if (key == NULL)
		return guard_pass_row(fcinfo);

	if (!args->given)
	{
		if (!bidguard_rate_configured(bidguard_schema(fcinfo), key, &max_count, &per))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no rate limit is configured for key \"%s\"", text_to_cstring(key)),
					 errdetail("Table \"%s\" is guarded with the configured limit of key prefix \"%s\".",
							   RelationGetRelationName(rel),
							   ((TriggerData *) fcinfo->context)->tg_trigger->tgargs[2]),
					 errhint("Add a row to bidguard_rate_limits whose key_prefix the key starts with.")));
	}
	else
	{
		max_count = args->count;
		per = &args->span;
		bidguard_check_rate_limit(max_count, per);
	}

	bidguard_rate_decide(bidguard_schema(fcinfo),
						 bidguard_rate_events_relid(bidguard_schema(fcinfo), false),
						 key, max_count, per, 1, &d);
	if (!d.allowed)
		ereport(ERROR,
				(errcode(ERRCODE_EXCLUSION_VIOLATION),
				 errmsg("row of table \"%s\" exceeds the rate limit of key \"%s\"",
						RelationGetRelationName(rel), text_to_cstring(key)),
				 errdetail("Key \"%s\" may have %d rows within %s; the next one is admitted in %s.",
						   text_to_cstring(key), max_count, bidguard_interval_text(per),
						   bidguard_interval_text(d.retry_after)),
				 errhint("ON CONFLICT cannot absorb this error: the limit is checked by the trigger %s, not by an index.",
						 RATE_TRIGGER_NAME),
				 errtableconstraint(rel, RATE_TRIGGER_NAME)));
	return guard_pass_row(fcinfo);
}

/*
 * bidguard_guard_rate_limit(tbl regclass, key_column name,
 *							 max_count integer DEFAULT NULL,
 *							 per interval DEFAULT NULL,
 *							 key_prefix text DEFAULT NULL)
 * RETURNS text
 *
 * Guards tbl (replacing its rate-limit guard, if any) and returns the key
 * prefix.  max_count and per both NULL: the configured limit of the rate
 * keys; one of them NULL: 22004.  key_prefix NULL: the table's qualified
 * name and ':'.  Owner only (42501); the owner needs INSERT on
 * bidguard_rate_events (42501), as the guard's decisions are recorded
 * there for it.  42710 for a trigger of the guard's name that is not
 * bidguard's.
 */
PG_FUNCTION_INFO_V1(bidguard_guard_rate_limit);
Datum
bidguard_guard_rate_limit(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	Oid			relid;
	Name		key_column;
	char	   *prefix;
	char	   *qrel;
	char	   *max_text = "";
	char	   *per_text = "";
	Oid			owner;
	Oid			events;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	bidguard_arg_not_null(fcinfo, 1, "key_column");
	relid = PG_GETARG_OID(0);
	key_column = PG_GETARG_NAME(1);
	if (PG_ARGISNULL(2) != PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_count and per must both be given, or both be NULL"),
				 errhint("Both NULL: the limit configured in bidguard_rate_limits for the key prefix.")));
	if (!PG_ARGISNULL(2))
	{
		bidguard_check_rate_limit(PG_GETARG_INT32(2), PG_GETARG_INTERVAL_P(3));
		max_text = psprintf("%d", PG_GETARG_INT32(2));
		per_text = bidguard_interval_text(PG_GETARG_INTERVAL_P(3));
	}
	bidguard_check_writable("bidguard_guard_rate_limit()");

	guard_key_table(relid, nspid, key_column, PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4),
					&qrel, &prefix, &owner);

	events = get_relname_relid("bidguard_rate_events", nspid);
	if (OidIsValid(events) && pg_class_aclcheck(events, owner, ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner of table \"%s\" may not insert into bidguard_rate_events",
						get_rel_name(relid)),
				 errdetail("The guard records the rows it admits there."),
				 errhint("The extension's owner can GRANT INSERT ON bidguard_rate_events to the table's owner.")));

	guard_create_trigger(relid, nspid, owner, qrel, RATE_TRIGGER_NAME,
						 "bidguard_rate_limit_guard_trigger", NameStr(*key_column),
						 psprintf("%s, %s, %s", quote_literal_cstr(max_text),
								  quote_literal_cstr(per_text), quote_literal_cstr(prefix)));
	PG_RETURN_TEXT_P(cstring_to_text(prefix));
}

/*
 * bidguard_unguard_rate_limit(tbl regclass) RETURNS void
 *
 * Drops the rate-limit guard; 42704 when the table has none.  Owner only.
 * The rate events stay (they expire, or bidguard_prune_rate_events()).
 */
PG_FUNCTION_INFO_V1(bidguard_unguard_rate_limit);
Datum
bidguard_unguard_rate_limit(PG_FUNCTION_ARGS)
{
	bidguard_check_writable("bidguard_unguard_rate_limit()");
	guard_drop_trigger(PG_GETARG_OID(0), bidguard_schema(fcinfo), RATE_TRIGGER_NAME,
					   "bidguard_rate_limit_guard_trigger", "rate-limit guard");
	PG_RETURN_VOID();
}
