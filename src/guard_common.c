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
 * and schema-qualified, down to the operators.
 *
 * Locks: none.
 *
 * src/guard_common.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

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
