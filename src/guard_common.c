/*-------------------------------------------------------------------------
 *
 * guard_common.c
 *	  What the guards on application tables share: running SQL on the
 *	  table as its owner, quoted names, the key type's equality operator,
 *	  the time column's type check.
 *
 * SQL that bidguard runs on an application's table runs as the table's
 * owner, in a security-restricted operation, with search_path pinned to
 * pg_catalog, pg_temp (contrib/amcheck's way); every name in it is quoted
 * and schema-qualified, down to the operators.  Guarding a table is for its
 * owner only (guard_open_table).
 *
 * Locks: guard_open_table checks ownership first, then opens the table in
 * the mode its caller names and keeps that lock to the end of the
 * transaction.  Adding or removing a guard's trigger (guard_create_trigger,
 * guard_drop_trigger) takes ShareRowExclusiveLock on the table, the lock
 * CREATE TRIGGER takes, so that a guard never appears or vanishes in the
 * middle of another transaction's insert; reading a guarded row's key takes
 * nothing.  No lock of bidguard's own class is taken here.
 *
 * src/guard_common.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/timestamp.h"

#include "bidguard.h"
#include "guards.h"

/*
 * guard_as_owner_begin / guard_as_owner_end
 *		Become the table's owner in a security-restricted operation, with
 *		search_path pinned to pg_catalog, pg_temp (amcheck's way).  On error
 *		the transaction's abort restores both.
 */
void
guard_as_owner_begin(Oid owner, GuardAsOwner *save)
{
	GetUserIdAndSecContext(&save->save_userid, &save->save_sec_context);
	SetUserIdAndSecContext(owner, save->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION |
						   SECURITY_NOFORCE_RLS);
	save->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
guard_as_owner_end(GuardAsOwner *save)
{
	AtEOXact_GUC(false, save->save_nestlevel);
	SetUserIdAndSecContext(save->save_userid, save->save_sec_context);
}

/* the owner of a relation */
Oid
bidguard_rel_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/* "schema"."table" */
char *
guard_qualified_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/* OPERATOR("schema".=) for a type's default equality operator */
char *
guard_equality_operator(Oid typid, const char *column)
{
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_EQ_OPR |
										   TYPECACHE_HASH_EXTENDED_PROC);
	HeapTuple	tup;
	Form_pg_operator op;
	char	   *result;

	if (!OidIsValid(tc->eq_opr) || !OidIsValid(tc->hash_extended_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("column \"%s\" has type %s, which has no hash operator class",
						column, format_type_be(typid)),
				 errhint("The key of a cooldown guard is locked by its hash: use a key of a type with a default hash operator class.")));
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(tc->eq_opr));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", tc->eq_opr);
	op = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tup);
	return result;
}

void
guard_check_time_column(TupleDesc desc, int attnum, const char *role)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);

	if (att->atttypid != TIMESTAMPTZOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s column \"%s\" must be of type timestamp with time zone, not %s",
						role, NameStr(att->attname), format_type_be(att->atttypid)),
				 errhint("A timestamp without time zone means another instant in every session time zone. Convert it: ALTER TABLE ... ALTER COLUMN %s TYPE timestamptz USING %s AT TIME ZONE 'UTC'.",
						 quote_identifier(NameStr(att->attname)),
						 quote_identifier(NameStr(att->attname)))));
}

/*
 * guard_open_table
 *		Open a table the caller owns, for guarding; 42501 when the caller is
 *		not its owner, 42809 when it is no ordinary table.
 */
Relation
guard_open_table(Oid relid, LOCKMODE mode, const char *action)
{
	Relation	rel;

	/* Who may: decided before any lock is queued, as core's commands do. */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	rel = table_open(relid, mode);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot %s \"%s\"", action, RelationGetRelationName(rel)),
				 errdetail("Only ordinary tables can be guarded; \"%s\" is not one.",
						   RelationGetRelationName(rel))));
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, RelationGetRelationName(rel));
	return rel;
}

void
guard_check_not_ours(Relation rel, Oid nspid)
{
	if (RelationGetNamespace(rel) == nspid &&
		strncmp(RelationGetRelationName(rel), "bidguard_", 9) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" belongs to bidguard", RelationGetRelationName(rel)),
				 errdetail("bidguard's own tables are guarded already.")));
}

/* A column of rel by name: its number; 42703 when there is none. */
int
guard_column(Relation rel, Name column, const char *argname)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), NameStr(*column));

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						NameStr(*column), RelationGetRelationName(rel)),
				 errdetail("It was given as %s.", argname)));
	if (attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("system column \"%s\" cannot be guarded", NameStr(*column))));
	return attnum;
}

/* Run one statement through SPI; the caller is connected, as the owner. */
void
guard_exec(const char *sql, int expected)
{
	bidguard_spi_check(SPI_execute(sql, false, 0), expected, "guarding the table");
}

/*
 * Has the table a guard trigger "tgname" of function "funcname" (of the
 * extension's schema)?  1: yes; 0: no; -1: it has a trigger of that name
 * that is not bidguard's.  The caller is connected to SPI.
 */
int
guard_trigger_exists(Oid relid, Oid nspid, const char *tgname, const char *funcname)
{
	Datum		values[3];
	bool		ours;
	bool		isnull;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(tgname);
	values[2] = CStringGetTextDatum(psprintf("%s.%s()",
											 quote_identifier(get_namespace_name(nspid)),
											 funcname));
	bidguard_spi_check(SPI_execute_with_args("SELECT tgfoid OPERATOR(pg_catalog.=) $3::pg_catalog.regprocedure"
											 " FROM pg_catalog.pg_trigger"
											 " WHERE tgrelid OPERATOR(pg_catalog.=) $1"
											 " AND tgname OPERATOR(pg_catalog.=) $2::pg_catalog.name",
											 3, (Oid[]) {OIDOID, TEXTOID, TEXTOID}, values, NULL,
											 true, 1),
					   SPI_OK_SELECT, "looking for the guard");
	if (SPI_processed == 0)
		return 0;
	ours = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return ours ? 1 : -1;
}


/*
 * guard_create_trigger
 *		Put the guard trigger tgname, BEFORE INSERT OR UPDATE OF column FOR
 *		EACH ROW EXECUTE FUNCTION <extension schema>.funcname(args), on the
 *		table (qrel, its qualified name), replacing bidguard's trigger of that
 *		name; 42710 for a trigger of that name that is not bidguard's.  Runs
 *		as the table's owner.  The caller has opened the table for guarding
 *		(guard_open_table), which holds its lock to the end of the transaction.
 */
void
guard_create_trigger(Oid relid, Oid nspid, Oid owner, const char *qrel, const char *tgname,
					 const char *funcname, const char *column, const char *args)
{
	GuardAsOwner save;

	guard_as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	switch (guard_trigger_exists(relid, nspid, tgname, funcname))
	{
		case 1:
			guard_exec(psprintf("DROP TRIGGER %s ON %s", quote_identifier(tgname), qrel),
					   SPI_OK_UTILITY);
			break;
		case -1:
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" has a trigger named \"%s\" that is not bidguard's",
							get_rel_name(relid), tgname),
					 errhint("Rename or drop that trigger first.")));
			break;
	}
	guard_exec(psprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE OF %s ON %s"
						" FOR EACH ROW EXECUTE FUNCTION %s.%s(%s)",
						quote_identifier(tgname), quote_identifier(column), qrel,
						quote_identifier(get_namespace_name(nspid)), funcname, args),
			   SPI_OK_UTILITY);
	SPI_finish();
	guard_as_owner_end(&save);
}

/*
 * guard_drop_trigger
 *		Unguard: drop bidguard's guard trigger tgname (of funcname) from the
 *		table; 42704, naming the guard ("what"), when it has none.  Owner
 *		only; locks the table in ShareRowExclusiveLock.
 */
void
guard_drop_trigger(Oid relid, Oid nspid, const char *tgname, const char *funcname,
				   const char *what)
{
	Relation	rel = guard_open_table(relid, ShareRowExclusiveLock, "unguard");
	char	   *qrel = guard_qualified_name(rel);
	char	   *relname = pstrdup(RelationGetRelationName(rel));
	Oid			owner = rel->rd_rel->relowner;
	GuardAsOwner save;

	table_close(rel, NoLock);
	guard_as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (guard_trigger_exists(relid, nspid, tgname, funcname) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" has no %s", relname, what)));
	guard_exec(psprintf("DROP TRIGGER %s ON %s", quote_identifier(tgname), qrel),
			   SPI_OK_UTILITY);
	SPI_finish();
	guard_as_owner_end(&save);
}

/*
 * guard_key_table
 *		What guarding a table by one key column starts with, for the rate and
 *		slot guards: the table opened for guarding (owner only, an ordinary
 *		table, not bidguard's), its key column checked; its qualified name,
 *		its owner, and the key prefix: prefix_arg (1 to 256 characters), or
 *		NULL for the qualified name and ':'.  The table's lock stays.
 */
void
guard_key_table(Oid relid, Oid nspid, Name key_column, text *prefix_arg,
				char **qrel, char **prefix, Oid *owner)
{
	Relation	rel = guard_open_table(relid, ShareRowExclusiveLock, "guard");

	guard_check_not_ours(rel, nspid);
	(void) guard_column(rel, key_column, "key_column");
	*qrel = guard_qualified_name(rel);
	*prefix = prefix_arg == NULL ? psprintf("%s:", *qrel) :
		text_to_cstring(bidguard_check_id(prefix_arg, "key_prefix"));
	*owner = rel->rd_rel->relowner;
	table_close(rel, NoLock);
}

/*
 * guard_row_key
 *		A row's key for the rate and slot guards: the trigger's prefix (its
 *		third argument) followed by the text of the key column (its UPDATE OF
 *		column); NULL when the row's key is NULL.
 */
text *
guard_row_key(Relation rel, Trigger *tg, HeapTuple tuple)
{
	bool		isnull;
	Datum		value = heap_getattr(tuple, tg->tgattr[0], RelationGetDescr(rel), &isnull);
	Oid			output;
	bool		varlena;

	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(RelationGetDescr(rel), tg->tgattr[0] - 1)->atttypid,
					  &output, &varlena);
	return cstring_to_text(psprintf("%s%s", tg->tgargs[2], OidOutputFunctionCall(output, value)));
}

/*
 * guard_inserted_key
 *		How the rate and slot guards start each row.  The trigger must be
 *		attached as its guard function attaches it (misuse() otherwise).  An
 *		UPDATE, a row pg_restore loads (restore.c's rule: the row was judged
 *		when first written, and what it took comes back with bidguard's own
 *		tables) and a NULL key pass untouched: NULL.  Else the row's key, and
 *		in *args the trigger's arguments, parsed once per call site and
 *		trigger (kept in fn_extra, in fn_mcxt): count from tgargs[0], span
 *		from tgargs[1], either empty meaning "not given".
 */
text *
guard_inserted_key(FunctionCallInfo fcinfo, void (*misuse) (void), GuardKeyArgs **args)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	BidguardCallState *state;
	GuardKeyArgs *a;
	Trigger    *tg;

	if (!bidguard_fired_before_row_ins_upd(fcinfo))
		misuse();
	tg = trigdata->tg_trigger;
	if (tg->tgnargs != 3 || tg->tgnattr != 1)
		misuse();
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		bidguard_restoring(trigdata->tg_relation))
		return NULL;

	state = bidguard_call_state(fcinfo);
	a = state->columns;
	if (a == NULL || a->tgoid != tg->tgoid)
	{
		if (a == NULL)
			a = state->columns = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
														sizeof(GuardKeyArgs));
		a->given = tg->tgargs[0][0] != '\0';
		a->count = a->given ? pg_strtoint32(tg->tgargs[0]) : 0;
		memset(&a->span, 0, sizeof(Interval));
		if (tg->tgargs[1][0] != '\0')
			a->span = *DatumGetIntervalP(DirectFunctionCall3(interval_in,
															 CStringGetDatum(tg->tgargs[1]),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
		a->tgoid = tg->tgoid;
	}
	*args = a;
	return guard_row_key(trigdata->tg_relation, tg, trigdata->tg_trigtuple);
}

/* What a BEFORE ROW trigger returns to let the row through unchanged. */
Datum
guard_pass_row(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
						   trigdata->tg_newtuple : trigdata->tg_trigtuple);
}
