/*-------------------------------------------------------------------------
 *
 * guard_admin.c
 *	  Guarding and unguarding an application's tables: the SQL functions
 *	  bidguard_guard_cooldown(), bidguard_unguard_cooldown() and
 *	  bidguard_guard_unique_active().
 *
 * The cooldown guard is a trigger (guard_trigger.c) plus an index on (key,
 * effective time) that serves its check, made unless one serves already and
 * marked with a comment, so that unguarding drops only an index bidguard
 * made.  The unique-active guard is a partial unique index (keys) WHERE
 * status = ANY (active statuses), made after checking that no group of rows
 * already breaks it (23505 with a report otherwise); the view
 * bidguard_guards lists both kinds.
 *
 * Who may guard: the table's owner (42501 otherwise), decided before any
 * lock is queued.  The DDL and the checks run as the owner,
 * security-restricted, search_path pinned (guard_common.c).
 *
 * Locking protocol
 * ----------------
 * - bidguard_guard_cooldown() and bidguard_unguard_cooldown() lock the table
 *   in ShareRowExclusiveLock (CREATE TRIGGER's; CREATE INDEX's ShareLock is
 *   part of it) until the end of the transaction.
 * - bidguard_guard_unique_active() locks it in ShareLock (CREATE INDEX's)
 *   before it looks for rows that break the rule, so that none can be added
 *   between the check and the index build.
 *
 * src/guard_admin.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "bidguard.h"
#include "guards.h"

/*
 * Run a CREATE INDEX, then mark the index with a comment saying it is a
 * guard's: pg_dump keeps the comment, and the comment follows renames.
 */
static void
guard_create_marked_index(const char *create_sql, const char *nspname,
						  const char *name, const char *mark)
{
	guard_exec(create_sql, SPI_OK_UTILITY);
	guard_exec(psprintf("COMMENT ON INDEX %s.%s IS %s",
						quote_identifier(nspname), quote_identifier(name),
						quote_literal_cstr(mark)),
			   SPI_OK_UTILITY);
}

/* Drop the indexes bidguard_guard_cooldown() made on the table. */
static void
guard_drop_own_indexes(Oid relid)
{
	Datum		values[2];
	List	   *names = NIL;
	ListCell   *lc;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(GUARD_INDEX_MARK ":%");
	bidguard_spi_check(SPI_execute_with_args("SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'"
											 " OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)"
											 " FROM pg_catalog.pg_index AS i"
											 " JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
											 " JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
											 " WHERE i.indrelid OPERATOR(pg_catalog.=) $1"
											 " AND pg_catalog.obj_description(c.oid, 'pg_class') OPERATOR(pg_catalog.~~) $2",
											 2, (Oid[]) {OIDOID, TEXTOID}, values, NULL,
											 true, 0),
					   SPI_OK_SELECT, "looking for the guard's index");
	for (uint64 i = 0; i < SPI_processed; i++)
		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	foreach(lc, names)
		guard_exec(psprintf("DROP INDEX %s", (char *) lfirst(lc)), SPI_OK_UTILITY);
}

/*
 * guard_has_index
 *		A valid, non-partial btree index of rel whose first two columns are
 *		the key and the effective time (a column, or the expression eff),
 *		or whose first column is the key and effective time second; the
 *		caller is connected to SPI.
 */
static bool
guard_has_index(Oid relid, int key_attnum, int time_attnum, const char *eff)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int16GetDatum(key_attnum);
	values[2] = Int16GetDatum(time_attnum);
	if (eff != NULL)
		values[3] = CStringGetTextDatum(eff);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	bidguard_spi_check(SPI_execute_with_args(
											 "SELECT 1 FROM pg_catalog.pg_index AS i"
											 " JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
											 " JOIN pg_catalog.pg_am AS a ON a.oid OPERATOR(pg_catalog.=) c.relam"
											 " WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisvalid"
											 " AND i.indpred IS NULL AND a.amname OPERATOR(pg_catalog.=) 'btree'"
											 " AND i.indnkeyatts OPERATOR(pg_catalog.>=) 2"
											 " AND i.indkey[0] OPERATOR(pg_catalog.=) $2"
											 " AND CASE WHEN $4 IS NULL THEN i.indkey[1] OPERATOR(pg_catalog.=) $3"
											 "     ELSE i.indkey[1] OPERATOR(pg_catalog.=) 0 AND"
											 "          pg_catalog.pg_get_indexdef(i.indexrelid, 2, false) OPERATOR(pg_catalog.=) $4 END",
											 4, (Oid[]) {OIDOID, INT2OID, INT2OID, TEXTOID},
											 values, nulls, true, 1),
					   SPI_OK_SELECT, "looking for an index");
	return SPI_processed > 0;
}

/* ChooseRelationName's choice for an index of rel on "what" */
static char *
guard_index_name(Relation rel, const char *what, const char *label)
{
	return ChooseRelationName(RelationGetRelationName(rel), what, label,
							  RelationGetNamespace(rel), false);
}

/*
 * bidguard_guard_cooldown(tbl regclass, key_column name, time_column name,
 *						   cooldown interval, fill_column name DEFAULT NULL)
 * RETURNS void
 *
 * Puts the cooldown guard on an application's table (or changes its
 * columns or cooldown): the trigger bidguard_cooldown_guard, and an index
 * on (key, effective time) unless one serves.  Owner only.  Locks the table
 * in ShareRowExclusiveLock (CREATE TRIGGER's, which CREATE INDEX's ShareLock
 * is part of) until the end of the transaction.
 */
PG_FUNCTION_INFO_V1(bidguard_guard_cooldown);
Datum
bidguard_guard_cooldown(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	Oid			relid;
	Name		key_column;
	Name		time_column;
	Name		fill_column = NULL;
	Interval   *cooldown;
	Relation	rel;
	int			key_attnum,
				time_attnum,
				fill_attnum = 0;
	TupleDesc	desc;
	char	   *qrel;
	char	   *cols;
	char	   *eff;
	char	   *sql;
	GuardAsOwner		save;
	Oid			owner;
	bool		key_has_btree;
	char	   *relname;
	Oid			relnsp;
	char	   *nspname;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	bidguard_arg_not_null(fcinfo, 1, "key_column");
	bidguard_arg_not_null(fcinfo, 2, "time_column");
	bidguard_arg_not_null(fcinfo, 3, "cooldown");
	relid = PG_GETARG_OID(0);
	key_column = PG_GETARG_NAME(1);
	time_column = PG_GETARG_NAME(2);
	cooldown = PG_GETARG_INTERVAL_P(3);
	if (!PG_ARGISNULL(4))
		fill_column = PG_GETARG_NAME(4);
	bidguard_check_cooldown(cooldown, "cooldown");
	bidguard_check_writable("bidguard_guard_cooldown()");

	rel = guard_open_table(relid, ShareRowExclusiveLock, "guard");
	guard_check_not_ours(rel, nspid);
	desc = RelationGetDescr(rel);
	key_attnum = guard_column(rel, key_column, "key_column");
	time_attnum = guard_column(rel, time_column, "time_column");
	if (fill_column != NULL)
		fill_attnum = guard_column(rel, fill_column, "fill_column");
	if (key_attnum == time_attnum || key_attnum == fill_attnum ||
		time_attnum == fill_attnum)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("the key, time and fill columns must be three different columns")));
	guard_check_time_column(desc, time_attnum, "time");
	if (fill_attnum)
		guard_check_time_column(desc, fill_attnum, "fill");
	(void) guard_equality_operator(TupleDescAttr(desc, key_attnum - 1)->atttypid,
							 NameStr(*key_column));

	qrel = guard_qualified_name(rel);
	cols = fill_attnum ?
		psprintf("%s, %s, %s", quote_identifier(NameStr(*key_column)),
				 quote_identifier(NameStr(*time_column)),
				 quote_identifier(NameStr(*fill_column))) :
		psprintf("%s, %s", quote_identifier(NameStr(*key_column)),
				 quote_identifier(NameStr(*time_column)));
	eff = fill_attnum ?
		psprintf("COALESCE(%s, %s)", quote_identifier(NameStr(*fill_column)),
				 quote_identifier(NameStr(*time_column))) : NULL;

	owner = rel->rd_rel->relowner;
	key_has_btree = OidIsValid(lookup_type_cache(TupleDescAttr(desc, key_attnum - 1)->atttypid,
												 TYPECACHE_BTREE_OPFAMILY)->btree_opf);
	relname = pstrdup(RelationGetRelationName(rel));
	relnsp = RelationGetNamespace(rel);
	nspname = get_namespace_name(relnsp);
	/* DDL refuses a table this session has open: keep the lock, close it. */
	table_close(rel, NoLock);

	guard_as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	switch (guard_trigger_exists(relid, nspid, GUARD_TRIGGER_NAME, "bidguard_cooldown_guard_trigger"))
	{
		case 1:					/* guarded already: replace it, and its index */
			guard_exec(psprintf("DROP TRIGGER %s ON %s",
								quote_identifier(GUARD_TRIGGER_NAME), qrel),
					   SPI_OK_UTILITY);
			guard_drop_own_indexes(relid);
			break;
		case -1:
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" has a trigger named \"%s\" that is not bidguard's",
							get_rel_name(relid), GUARD_TRIGGER_NAME),
					 errhint("Rename or drop that trigger first.")));
			break;
	}
	sql = psprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE OF %s ON %s"
				   " FOR EACH ROW EXECUTE FUNCTION %s.bidguard_cooldown_guard_trigger(%s)",
				   quote_identifier(GUARD_TRIGGER_NAME), cols, qrel,
				   quote_identifier(get_namespace_name(nspid)),
				   quote_literal_cstr(bidguard_interval_text(cooldown)));
	guard_exec(sql, SPI_OK_UTILITY);

	if (!guard_has_index(relid, key_attnum, time_attnum, eff))
	{
		/* chosen now, after a re-guard dropped the index it replaces */
		const char *name = ChooseRelationName(relname, NameStr(*key_column), "cooldown",
											  relnsp, false);

		if (key_has_btree)
			sql = psprintf("CREATE INDEX %s ON %s (%s, %s)", quote_identifier(name), qrel,
						   quote_identifier(NameStr(*key_column)),
						   eff ? psprintf("(%s)", eff) : quote_identifier(NameStr(*time_column)));
		else					/* a key type with hash equality only */
			sql = psprintf("CREATE INDEX %s ON %s USING hash (%s)", quote_identifier(name), qrel,
						   quote_identifier(NameStr(*key_column)));
		guard_create_marked_index(sql, nspname, name,
								  GUARD_INDEX_MARK ": serves the cooldown guard; bidguard_unguard_cooldown() drops it");
	}

	SPI_finish();
	guard_as_owner_end(&save);
	PG_RETURN_VOID();
}

/*
 * bidguard_unguard_cooldown(tbl regclass) RETURNS void
 *
 * Removes the cooldown guard and the index bidguard_guard_cooldown() made
 * for it.  Owner only.  42704 when the table has no cooldown guard.
 */
PG_FUNCTION_INFO_V1(bidguard_unguard_cooldown);
Datum
bidguard_unguard_cooldown(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	GuardAsOwner		save;
	char	   *qrel;
	char	   *relname;
	Oid			owner;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	relid = PG_GETARG_OID(0);
	bidguard_check_writable("bidguard_unguard_cooldown()");
	rel = guard_open_table(relid, ShareRowExclusiveLock, "unguard");
	qrel = guard_qualified_name(rel);
	relname = pstrdup(RelationGetRelationName(rel));
	owner = rel->rd_rel->relowner;
	table_close(rel, NoLock);

	guard_as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (guard_trigger_exists(relid, bidguard_schema(fcinfo), GUARD_TRIGGER_NAME, "bidguard_cooldown_guard_trigger") != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" has no cooldown guard", relname)));
	guard_exec(psprintf("DROP TRIGGER %s ON %s", quote_identifier(GUARD_TRIGGER_NAME), qrel),
			   SPI_OK_UTILITY);
	guard_drop_own_indexes(relid);

	SPI_finish();
	guard_as_owner_end(&save);
	PG_RETURN_VOID();
}

/*
 * bidguard_guard_unique_active(tbl regclass, key_columns name[],
 *								status_column name, active_statuses text[])
 * RETURNS name
 *
 * Creates the partial unique index (key_columns) WHERE status_column is one
 * of active_statuses, and returns its name; 42710 when the table has a
 * unique-active guard on the same columns already.  When rows already break the rule it
 * changes nothing and raises 23505, with how many groups and the first
 * five keys.  Owner only.  Locks the table in ShareLock (CREATE INDEX's),
 * before the check, until the end of the transaction.
 */
PG_FUNCTION_INFO_V1(bidguard_guard_unique_active);
Datum
bidguard_guard_unique_active(PG_FUNCTION_ARGS)
{
	Oid			relid;
	ArrayType  *keys_arr;
	Name		status_column;
	ArrayType  *statuses_arr;
	Datum	   *keys;
	bool	   *keys_nulls;
	int			nkeys;
	Datum	   *statuses;
	bool	   *statuses_nulls;
	int			nstatuses;
	Relation	rel;
	TupleDesc	desc;
	int			status_attnum;
	Oid			status_type;
	StringInfoData keylist;
	StringInfoData keytext;
	StringInfoData pred;
	StringInfoData names;
	StringInfoData notnull;
	char	   *qrel;
	char	   *sql;
	char	   *index_name;
	GuardAsOwner		save;
	Datum		values[3];
	int16		attnums[INDEX_MAX_KEYS];
	char	   *nspname;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	bidguard_arg_not_null(fcinfo, 1, "key_columns");
	bidguard_arg_not_null(fcinfo, 2, "status_column");
	bidguard_arg_not_null(fcinfo, 3, "active_statuses");
	relid = PG_GETARG_OID(0);
	keys_arr = PG_GETARG_ARRAYTYPE_P(1);
	status_column = PG_GETARG_NAME(2);
	statuses_arr = PG_GETARG_ARRAYTYPE_P(3);
	bidguard_check_writable("bidguard_guard_unique_active()");

	deconstruct_array(keys_arr, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &keys, &keys_nulls, &nkeys);
	deconstruct_array(statuses_arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &statuses, &statuses_nulls, &nstatuses);
	if (nkeys > INDEX_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_COLUMNS),
				 errmsg("cannot use more than %d key columns", INDEX_MAX_KEYS)));
	if (nkeys == 0 || nstatuses == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", nkeys == 0 ? "key_columns" : "active_statuses")));
	for (int i = 0; i < nkeys; i++)
		if (keys_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key_columns must not contain NULL")));
	for (int i = 0; i < nstatuses; i++)
		if (statuses_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("active_statuses must not contain NULL")));

	rel = guard_open_table(relid, ShareLock, "guard");
	desc = RelationGetDescr(rel);
	qrel = guard_qualified_name(rel);

	initStringInfo(&keylist);
	initStringInfo(&keytext);
	initStringInfo(&names);
	initStringInfo(&notnull);
	for (int i = 0; i < nkeys; i++)
	{
		Name		col = DatumGetName(keys[i]);
		int			attnum = guard_column(rel, col, "a key column");

		for (int j = 0; j < i; j++)
			if (strcmp(NameStr(*DatumGetName(keys[j])), NameStr(*col)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" appears twice in key_columns", NameStr(*col))));
		attnums[i] = attnum;
		appendStringInfo(&keylist, "%s%s", i ? ", " : "", quote_identifier(NameStr(*col)));
		appendStringInfo(&keytext, "%st.%s::pg_catalog.text", i ? " OPERATOR(pg_catalog.||) ', ' OPERATOR(pg_catalog.||) " : "",
						 quote_identifier(NameStr(*col)));
		appendStringInfo(&names, "%s%s", i ? "_" : "", NameStr(*col));
		appendStringInfo(&notnull, " AND t.%s IS NOT NULL", quote_identifier(NameStr(*col)));
	}
	status_attnum = guard_column(rel, status_column, "status_column");
	status_type = TupleDescAttr(desc, status_attnum - 1)->atttypid;

	/* status OPERATOR(ns.=) ANY (ARRAY['a'::type, ...]) */
	initStringInfo(&pred);
	appendStringInfo(&pred, "%s %s ANY (ARRAY[", quote_identifier(NameStr(*status_column)),
					 guard_equality_operator(status_type, NameStr(*status_column)));
	for (int i = 0; i < nstatuses; i++)
		appendStringInfo(&pred, "%s%s::%s", i ? ", " : "",
						 quote_literal_cstr(TextDatumGetCString(statuses[i])),
						 format_type_be_qualified(status_type));
	appendStringInfoString(&pred, "])");

	guard_as_owner_begin(rel->rd_rel->relowner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* A unique-active guard on the same columns already? */
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(UNIQUE_INDEX_MARK ":%");
	values[2] = PointerGetDatum(buildint2vector(attnums, nkeys));
	bidguard_spi_check(SPI_execute_with_args("SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_index AS i"
											 " JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid"
											 " WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique"
											 " AND pg_catalog.obj_description(c.oid, 'pg_class') OPERATOR(pg_catalog.~~) $2"
											 " AND i.indkey::pg_catalog.int2[] OPERATOR(pg_catalog.=) $3::pg_catalog.int2[]",
											 3, (Oid[]) {OIDOID, TEXTOID, INT2VECTOROID}, values, NULL, true, 1),
					   SPI_OK_SELECT, "looking for the guard");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" already has a unique-active guard on (%s): index \"%s\"",
						RelationGetRelationName(rel), keylist.data,
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errhint("Drop that index first to guard the table with other statuses.")));

	/* Rows that already break the rule: how many groups, the first five. */
	/* (a unique index holds NULL keys distinct: rows with one never clash) */
	sql = psprintf("SELECT pg_catalog.count(*) OVER (), k FROM ("
				   "SELECT %s AS k FROM ONLY %s AS t WHERE t.%s%s"
				   " GROUP BY %s HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1) AS d"
				   " ORDER BY k LIMIT 5",
				   keytext.data, qrel, pred.data, notnull.data, keylist.data);
	guard_exec(sql, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		char	   *groups = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		StringInfoData first;

		initStringInfo(&first);
		for (uint64 i = 0; i < SPI_processed; i++)
			appendStringInfo(&first, "%s(%s)", i ? ", " : "",
							 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg_plural("could not guard table \"%s\": %s group of rows already has more than one active row",
							   "could not guard table \"%s\": %s groups of rows already have more than one active row",
							   strtoul(groups, NULL, 10),
							   RelationGetRelationName(rel), groups),
				 errdetail("The first ones by (%s): %s.", keylist.data, first.data),
				 errhint("End all but one active row of each group, then guard the table again. Nothing was changed."),
				 errtableconstraint(rel, "bidguard_guard_unique_active")));
	}

	index_name = guard_index_name(rel, names.data, "active");
	nspname = get_namespace_name(RelationGetNamespace(rel));
	table_close(rel, NoLock);	/* DDL refuses a table this session has open */
	sql = psprintf("CREATE UNIQUE INDEX %s ON %s (%s) WHERE %s",
				   quote_identifier(index_name), qrel, keylist.data, pred.data);
	guard_create_marked_index(sql, nspname, index_name,
							  UNIQUE_INDEX_MARK ": at most one active row per key");

	SPI_finish();
	guard_as_owner_end(&save);
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(index_name)));
}
