/*-------------------------------------------------------------------------
 *
 * guards.c
 *	  Guards on the application's own tables: the cooldown guard (the trigger
 *	  logic bidguard_trades uses too) and the unique-active guard.
 *
 * The cooldown guard
 * ------------------
 * bidguard_cooldown_guard_row() is the one implementation of the cooldown
 * trigger's row logic.  bidguard_trades' trigger (trades.c) and the trigger
 * that bidguard_guard_cooldown() puts on an application's table both call
 * it; what differs between them (where the cooldown comes from, how a key
 * is locked, the messages) are hooks of a CooldownGuard.  A row counts
 * unless its status column (if any) says 'failed'; its effective time is
 * coalesce(fill, time).  A row may be admitted at time t when no other
 * counting row of its key has an effective time within the cooldown of t,
 * on either side.
 *
 * On an application's table the guard is an ordinary trigger,
 *     bidguard_cooldown_guard BEFORE INSERT OR UPDATE OF key, time[, fill]
 *     FOR EACH ROW EXECUTE FUNCTION bidguard_cooldown_guard_trigger('<cooldown>')
 * and it is its own configuration: the key, time and fill columns are the
 * trigger's UPDATE OF columns, in that order (pg_trigger.tgattr keeps the
 * order and the column numbers), and the cooldown is its argument.  So the
 * guard follows renames of the table and of its columns, PostgreSQL refuses
 * to drop a guarded column (the trigger depends on it), and pg_dump and
 * pg_restore carry the guard with the table, as they carry any trigger.
 * The index that serves the check is an ordinary index, marked with a
 * comment so that bidguard_unguard_cooldown() drops only an index it made.
 *
 * Locking protocol (application tables)
 * -------------------------------------
 * 1. The key's lock: a transaction-scoped exclusive lock of class GUARD
 *    (25092), keyed by the table's OID combined with the key's 64-bit hash
 *    (the key type's extended hash function, seed 0).  Two keys whose hashes
 *    collide share a lock: they serialize, nothing worse.  NULL keys are not
 *    guarded, as UNIQUE does not guard NULLs.
 * 2. The check runs after the lock, as the table's owner, in a
 *    security-restricted operation with search_path pinned to pg_catalog,
 *    pg_temp; every name in its SQL is quoted and schema-qualified, down to
 *    the operators.  It reads the whole table (ONLY the table itself, not
 *    inheritance children) through an index on (key, effective time).
 * 3. Snapshots as for trades (trades.c): READ COMMITTED reads a fresh
 *    snapshot; at REPEATABLE READ and SERIALIZABLE a decision that differs
 *    between the transaction snapshot and the latest one is 40001.
 *
 * The unique-active guard
 * -----------------------
 * bidguard_guard_unique_active() creates a partial unique index
 * (keys) WHERE status = ANY (active statuses), after checking, under the
 * ShareLock the index build takes anyway, that no group of rows already
 * breaks it (23505 with a report otherwise).  The index is marked with a
 * comment; bidguard_guards lists both kinds.
 *
 * Who may guard: the table's owner (42501 otherwise).  The DDL and the
 * checks run as the owner, security-restricted, search_path pinned.
 *
 * src/guards.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/fmgroids.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "bidguard.h"

#define GUARD_TRIGGER_NAME	"bidguard_cooldown_guard"
#define GUARD_INDEX_MARK	"bidguard_guard_cooldown"
#define UNIQUE_INDEX_MARK	"bidguard_guard_unique_active"

/* ---------------------------------------------------------------------
 * The shared row logic
 * ---------------------------------------------------------------------
 */

/*
 * bidguard_cooldown_execute
 *		Run a cooldown decision, connected to SPI.  Under a transaction
 *		snapshot it runs with that snapshot and with the latest one; if they
 *		disagree on whether there is a row, or on whether clear_column is
 *		NULL (clear), that is 40001.  SPI_tuptable holds the latest answer.
 */
static void
bidguard_cooldown_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
						  int clear_column, char *(*what) (void *arg), void *what_arg)
{
	bool		found;
	bool		clear = true;

	if (!IsolationUsesXactSnapshot())
	{
		bidguard_spi_check(SPI_execute_plan(plan, values, nulls, false, 0),
						   SPI_OK_SELECT, "checking the cooldown");
		return;
	}
	bidguard_spi_check(SPI_execute_plan(plan, values, nulls, false, 0),
					   SPI_OK_SELECT, "checking the cooldown");
	found = (SPI_processed == 1);
	if (found)
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							 clear_column, &clear);
	bidguard_spi_check(SPI_execute_snapshot(plan, values, nulls,
											GetLatestSnapshot(),
											InvalidSnapshot, false, false, 0),
					   SPI_OK_SELECT, "checking the cooldown");
	if (found != (SPI_processed == 1) ||
		(found && clear != heap_attisnull(SPI_tuptable->vals[0], clear_column,
										  SPI_tuptable->tupdesc)))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("%s was changed after this transaction's snapshot was taken.",
						   what(what_arg)),
				 errhint("Retry the transaction.")));
}

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
			bool		restored = false;

			if (is_insert && g->already_admitted != NULL)
				restored = g->already_admitted(g, newtuple);
			if (!restored)
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
		TimestampTz effective = DatumGetTimestampTz(created);
		Interval   *cooldown = NULL;
		Interval   *retry = NULL;
		bool		restored = false;

		if (g->fill_attnum != 0)
		{
			bool		filled_isnull;
			Datum		filled = heap_getattr(newtuple, g->fill_attnum, desc, &filled_isnull);

			if (!filled_isnull)
				effective = DatumGetTimestampTz(filled);
		}

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (is_insert && g->already_admitted != NULL)
			restored = g->already_admitted(g, newtuple);
		if (!restored)
		{
			retry = g->decide(g, key, effective, oldtuple, &cooldown);
			if (retry != NULL)
			{
				bidguard_count(BG_STAT_TRADES_REJECTED_COOLDOWN);
				g->violation(g, key, effective, cooldown, retry);
				pg_unreachable();
			}
			*admitted_under = MemoryContextAlloc(callcxt, sizeof(Interval));
			memcpy(*admitted_under, cooldown, sizeof(Interval));
		}
		SPI_finish();
	}

	return newtuple;
}

/* ---------------------------------------------------------------------
 * Running SQL on the application's table as its owner
 * ---------------------------------------------------------------------
 */

typedef struct AsOwner
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} AsOwner;

/*
 * as_owner_begin / as_owner_end
 *		Become the table's owner in a security-restricted operation, with
 *		search_path pinned to pg_catalog, pg_temp (amcheck's way).  On error
 *		the transaction's abort restores both.
 */
static void
as_owner_begin(Oid owner, AsOwner *save)
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

static void
as_owner_end(AsOwner *save)
{
	AtEOXact_GUC(false, save->save_nestlevel);
	SetUserIdAndSecContext(save->save_userid, save->save_sec_context);
}

/* "schema"."table" */
static char *
qualified_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

/* OPERATOR("schema".=) for a type's default equality operator */
static char *
equality_operator(Oid typid, const char *column)
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

/* ---------------------------------------------------------------------
 * The cooldown guard on an application's table
 * ---------------------------------------------------------------------
 */

/*
 * What a guard trigger needs, per trigger, kept for the backend's life in
 * guard_cache (keyed by the trigger's OID).  It is rebuilt when the trigger
 * or its table changed: other columns or cooldown, a rename, a new column
 * type (the SQL of the check names the table and columns).
 */
typedef struct GuardEntry
{
	Oid			tgoid;			/* hash key */
	bool		valid;
	Oid			relid;
	Oid			nspid;
	NameData	relname;
	int			nattr;			/* 2 or 3 */
	int16		attnums[3];		/* key, time, fill */
	NameData	attnames[3];
	Oid			atttypes[3];
	Oid			key_collation;
	Interval	cooldown;
	char	   *cooldown_text;	/* in TopMemoryContext */
	FmgrInfo	hash_proc;		/* the key type's extended hash */
	SPIPlanPtr	plan;			/* the check in SQL, when no index serves */
	/* the btree index on (key, effective time) the check reads directly */
	Oid			index_oid;		/* InvalidOid: none; use the plan */
	RegProcedure key_eq_proc;	/* the index's equality for the key */
	Oid			key_index_collation;
} GuardEntry;

static HTAB *guard_cache = NULL;

/*
 * A relcache invalidation of a guarded table (its triggers, indexes or
 * columns changed, or it was renamed) makes its entries be rebuilt before
 * their next use; so the rows need not check the index list themselves.
 */
static void
guard_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	GuardEntry *e;

	(void) arg;
	if (guard_cache == NULL)
		return;
	hash_seq_init(&status, guard_cache);
	while ((e = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || e->relid == relid)
			e->valid = false;
}

static void
guard_misuse(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("function \"bidguard_cooldown_guard_trigger\" must be attached by bidguard_guard_cooldown()"),
			 errdetail("It fires BEFORE INSERT OR UPDATE OF key, time[, fill] FOR EACH ROW, with the cooldown as its argument.")));
}

static bool
guard_entry_current(GuardEntry *e, Relation rel, Trigger *trigger)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (!e->valid || e->relid != RelationGetRelid(rel) ||
		e->nspid != RelationGetNamespace(rel) ||
		strcmp(NameStr(e->relname), RelationGetRelationName(rel)) != 0 ||
		e->nattr != trigger->tgnattr ||
		strcmp(e->cooldown_text, trigger->tgargs[0]) != 0)
		return false;
	for (int i = 0; i < e->nattr; i++)
	{
		Form_pg_attribute att;

		if (e->attnums[i] != trigger->tgattr[i] || e->attnums[i] > desc->natts)
			return false;
		att = TupleDescAttr(desc, e->attnums[i] - 1);
		if (att->attisdropped || att->atttypid != e->atttypes[i] ||
			strcmp(NameStr(att->attname), NameStr(e->attnames[i])) != 0)
			return false;
	}
	return true;
}

static void
check_time_column(TupleDesc desc, int attnum, const char *role)
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
 * guard_find_index
 *		A valid, non-partial btree index of rel whose first column is the
 *		key (with an equality operator for it) and whose second is the
 *		effective time: the time column, or the expression COALESCE(fill,
 *		time).  The check then reads that index directly.
 */
static void
guard_find_index(GuardEntry *e, Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Node	   *eff = NULL;

	e->index_oid = InvalidOid;
	if (e->nattr == 3)
	{
		CoalesceExpr *c = makeNode(CoalesceExpr);

		c->coalescetype = TIMESTAMPTZOID;
		c->coalescecollid = InvalidOid;
		c->args = list_make2(makeVar(1, e->attnums[2], TIMESTAMPTZOID, -1, InvalidOid, 0),
							 makeVar(1, e->attnums[1], TIMESTAMPTZOID, -1, InvalidOid, 0));
		c->location = -1;
		eff = (Node *) c;
	}
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ind = idx->rd_index;
		bool		serves = false;

		if (idx->rd_rel->relam == BTREE_AM_OID && ind->indisvalid &&
			ind->indnkeyatts >= 2 && heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			ind->indkey.values[0] == e->attnums[0])
		{
			if (eff == NULL)
				serves = ind->indkey.values[1] == e->attnums[1];
			else if (ind->indkey.values[1] == 0)
			{
				List	   *exprs = RelationGetIndexExpressions(idx);

				serves = exprs != NIL && equal(linitial(exprs), eff);
			}
		}
		if (serves)
		{
			Oid			eqop = get_opfamily_member(idx->rd_opfamily[0], idx->rd_opcintype[0],
												   idx->rd_opcintype[0], BTEqualStrategyNumber);

			serves = OidIsValid(eqop) &&
				idx->rd_opcintype[1] == TIMESTAMPTZOID &&
				OidIsValid(get_opfamily_member(idx->rd_opfamily[1], TIMESTAMPTZOID,
											   TIMESTAMPTZOID, BTLessStrategyNumber));
			if (serves)
			{
				e->index_oid = RelationGetRelid(idx);
				e->key_eq_proc = get_opcode(eqop);
				e->key_index_collation = idx->rd_indcollation[0];
			}
		}
		index_close(idx, AccessShareLock);
		if (OidIsValid(e->index_oid))
			break;
	}
	list_free(indexes);
}

/*
 * guard_entry
 *		The trigger's cached configuration and plan, (re)built as needed.
 */
static GuardEntry *
guard_entry(Relation rel, Trigger *trigger)
{
	GuardEntry *e;
	bool		found;
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext oldcxt;
	StringInfoData sql;
	char	   *eff;
	Oid			argtypes[4];
	AsOwner		save;
	Interval   *cooldown;

	if (guard_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(GuardEntry);
		guard_cache = hash_create("bidguard guard triggers", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(guard_relcache_callback, (Datum) 0);
	}
	e = hash_search(guard_cache, &trigger->tgoid, HASH_ENTER, &found);
	if (!found)
	{
		e->valid = false;
		e->plan = NULL;
		e->cooldown_text = NULL;
		e->index_oid = InvalidOid;
	}
	else if (guard_entry_current(e, rel, trigger))
		return e;

	/* (Re)build it. */
	e->valid = false;
	if (e->plan != NULL)
	{
		SPI_freeplan(e->plan);
		e->plan = NULL;
	}
	if (e->cooldown_text != NULL)
	{
		pfree(e->cooldown_text);
		e->cooldown_text = NULL;
	}

	if (trigger->tgnargs != 1 || trigger->tgnattr < 2 || trigger->tgnattr > 3)
		guard_misuse();
	cooldown = DatumGetIntervalP(DirectFunctionCall3(interval_in,
													 CStringGetDatum(trigger->tgargs[0]),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	/* a trigger made by hand, not by bidguard_guard_cooldown() */
	bidguard_check_cooldown(cooldown, "cooldown");
	e->relid = RelationGetRelid(rel);
	e->nspid = RelationGetNamespace(rel);
	namestrcpy(&e->relname, RelationGetRelationName(rel));
	e->nattr = trigger->tgnattr;
	for (int i = 0; i < e->nattr; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, trigger->tgattr[i] - 1);

		e->attnums[i] = trigger->tgattr[i];
		namestrcpy(&e->attnames[i], NameStr(att->attname));
		e->atttypes[i] = att->atttypid;
	}
	check_time_column(desc, e->attnums[1], "time");
	if (e->nattr == 3)
		check_time_column(desc, e->attnums[2], "fill");
	e->key_collation = TupleDescAttr(desc, e->attnums[0] - 1)->attcollation;
	e->cooldown = *cooldown;

	eff = e->nattr == 3 ?
		psprintf("COALESCE(t.%s, t.%s)", quote_identifier(NameStr(e->attnames[2])),
				 quote_identifier(NameStr(e->attnames[1]))) :
		psprintf("t.%s", quote_identifier(NameStr(e->attnames[1])));
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT ((pg_catalog.max(%s) AT TIME ZONE 'UTC' OPERATOR(pg_catalog.+) $4)"
					 " AT TIME ZONE 'UTC') OPERATOR(pg_catalog.-) $2"
					 " FROM ONLY %s AS t"
					 " WHERE t.%s %s $1"
					 " AND %s OPERATOR(pg_catalog.>) (($2 AT TIME ZONE 'UTC' OPERATOR(pg_catalog.-) $4) AT TIME ZONE 'UTC')"
					 " AND %s OPERATOR(pg_catalog.<) (($2 AT TIME ZONE 'UTC' OPERATOR(pg_catalog.+) $4) AT TIME ZONE 'UTC')"
					 " AND ($3 IS NULL OR t.ctid OPERATOR(pg_catalog.<>) $3)",
					 eff, qualified_name(rel),
					 quote_identifier(NameStr(e->attnames[0])),
					 equality_operator(e->atttypes[0], NameStr(e->attnames[0])),
					 eff, eff);
	argtypes[0] = e->atttypes[0];
	argtypes[1] = TIMESTAMPTZOID;
	argtypes[2] = TIDOID;
	argtypes[3] = INTERVALOID;

	/* Prepared as the owner, under the pinned search_path it runs with. */
	as_owner_begin(rel->rd_rel->relowner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	e->plan = SPI_prepare(sql.data, 4, argtypes);
	if (e->plan == NULL)
		elog(ERROR, "bidguard: preparing the cooldown check of \"%s\" failed: %s",
			 RelationGetRelationName(rel), SPI_result_code_string(SPI_result));
	if (SPI_keepplan(e->plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	SPI_finish();
	as_owner_end(&save);

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	e->cooldown_text = pstrdup(trigger->tgargs[0]);
	fmgr_info(lookup_type_cache(e->atttypes[0],
								TYPECACHE_HASH_EXTENDED_PROC)->hash_extended_proc,
			  &e->hash_proc);
	MemoryContextSwitchTo(oldcxt);
	guard_find_index(e, rel);
	e->valid = true;
	return e;
}

static void
guard_lock(CooldownGuard *g, Datum key)
{
	GuardEntry *e = g->arg;
	uint64		h;

	h = DatumGetUInt64(FunctionCall2Coll(&e->hash_proc, e->key_collation, key,
										 UInt64GetDatum(0)));
	bidguard_lock_guard(hash_combine64((uint64) e->relid * UINT64CONST(0x9E3779B97F4A7C15), h));
}

/* "(bot_id)=(7)", as a unique violation shows a key */
static char *
guard_key_text(GuardEntry *e, Datum key)
{
	Oid			output;
	bool		varlena;

	getTypeOutputInfo(e->atttypes[0], &output, &varlena);
	return psprintf("(%s)=(%s)", NameStr(e->attnames[0]),
					OidOutputFunctionCall(output, key));
}

/* "A row of key (k)=(v)", for a 40001's DETAIL: made only when raised */
typedef struct GuardRowSubject
{
	GuardEntry *e;
	Datum		key;
} GuardRowSubject;

static char *
guard_row_subject(void *arg)
{
	GuardRowSubject *subject = arg;

	return psprintf("A row of key %s", guard_key_text(subject->e, subject->key));
}

static pg_noreturn void guard_violation(CooldownGuard *g, Datum key, TimestampTz at,
							Interval *cooldown, Interval *retry);

/*
 * guard_index_latest
 *		Read the serving index: the latest effective time, strictly between
 *		lo and hi, of a row of the key other than "self", visible to snap.
 *		Backward along (key, effective time), the first such row is it.
 */
static bool
guard_index_latest(GuardEntry *e, Relation rel, Datum key, TimestampTz lo, TimestampTz hi,
				   HeapTuple self, Snapshot snap, TimestampTz *latest)
{
	Relation	idx = index_open(e->index_oid, AccessShareLock);
	ScanKeyData sk[3];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found = false;

	ScanKeyEntryInitialize(&sk[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   e->key_index_collation, e->key_eq_proc, key);
	ScanKeyEntryInitialize(&sk[1], 0, 2, BTGreaterStrategyNumber, InvalidOid,
						   InvalidOid, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(lo));
	ScanKeyEntryInitialize(&sk[2], 0, 2, BTLessStrategyNumber, InvalidOid,
						   InvalidOid, F_TIMESTAMPTZ_LT, TimestampTzGetDatum(hi));
	scan = bidguard_index_beginscan(rel, idx, snap, 3, 0);
	index_rescan(scan, sk, 3, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		if (self != NULL && ItemPointerEquals(&slot->tts_tid, &self->t_self))
			continue;
		d = e->nattr == 3 ? slot_getattr(slot, e->attnums[2], &isnull) : (Datum) 0;
		if (e->nattr != 3 || isnull)
			d = slot_getattr(slot, e->attnums[1], &isnull);
		if (isnull)
			continue;
		*latest = DatumGetTimestampTz(d);
		found = true;
		break;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	return found;
}

/*
 * guard_decide_by_index
 *		The check of guard_decide, reading the serving index directly: no SQL,
 *		no executor, nothing of the caller's search_path.  Like SPI, it first
 *		makes the statement's own earlier rows visible (CommandCounterIncrement),
 *		then reads with a fresh snapshot; under a transaction snapshot it reads
 *		with both, and a difference is 40001.
 */
static Interval *
guard_decide_by_index(CooldownGuard *g, Datum key, TimestampTz at, HeapTuple self)
{
	GuardEntry *e = g->arg;
	Interval   *cd = &e->cooldown;
	TimestampTz lo = DatumGetTimestamp(DirectFunctionCall2(timestamp_mi_interval,
														   TimestampGetDatum(at),
														   IntervalPGetDatum(cd)));
	TimestampTz hi = DatumGetTimestamp(DirectFunctionCall2(timestamp_pl_interval,
														   TimestampGetDatum(at),
														   IntervalPGetDatum(cd)));
	TimestampTz latest = 0;
	bool		found;

	CommandCounterIncrement();
	if (IsolationUsesXactSnapshot())
	{
		TimestampTz in_snapshot;
		bool		found_in_snapshot;

		/* the transaction's snapshot, seeing this command's own rows, as SPI does */
		PushActiveSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		found_in_snapshot = guard_index_latest(e, g->rel, key, lo, hi, self,
											   GetActiveSnapshot(), &in_snapshot);
		PopActiveSnapshot();

		PushActiveSnapshot(GetLatestSnapshot());
		found = guard_index_latest(e, g->rel, key, lo, hi, self, GetActiveSnapshot(), &latest);
		PopActiveSnapshot();
		if (found != found_in_snapshot)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("A row of key %s was changed after this transaction's snapshot was taken.",
							   guard_key_text(e, key)),
					 errhint("Retry the transaction.")));
	}
	else
	{
		PushActiveSnapshot(GetLatestSnapshot());
		found = guard_index_latest(e, g->rel, key, lo, hi, self, GetActiveSnapshot(), &latest);
		PopActiveSnapshot();
	}

	if (!found)
		return NULL;
	/* (latest + cooldown) - at, on the UTC wall clock as the SQL does it */
	return DatumGetIntervalP(DirectFunctionCall2(timestamp_mi,
												 DirectFunctionCall2(timestamp_pl_interval,
																	 TimestampGetDatum(latest),
																	 IntervalPGetDatum(cd)),
												 TimestampGetDatum(at)));
}

static Interval *
guard_decide(CooldownGuard *g, Datum key, TimestampTz at, HeapTuple self,
			 Interval **cooldown)
{
	GuardEntry *e = g->arg;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	AsOwner		save;
	Interval   *retry = NULL;
	bool		isnull;
	Datum		d;
	GuardRowSubject subject;

	values[0] = key;
	values[1] = TimestampTzGetDatum(at);
	if (self != NULL)
		values[2] = PointerGetDatum(&self->t_self);
	else
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	values[3] = IntervalPGetDatum(&e->cooldown);

	*cooldown = &e->cooldown;
	if (OidIsValid(e->index_oid))
		return guard_decide_by_index(g, key, at, self);

	as_owner_begin(g->rel->rd_rel->relowner, &save);
	subject.e = e;
	subject.key = key;
	bidguard_cooldown_execute(e->plan, values, nulls, 1, guard_row_subject, &subject);
	as_owner_end(&save);

	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		retry = SPI_palloc(sizeof(Interval));
		memcpy(retry, DatumGetIntervalP(d), sizeof(Interval));
	}
	*cooldown = &e->cooldown;
	return retry;
}

static void
guard_violation(CooldownGuard *g, Datum key, TimestampTz at, Interval *cooldown,
				Interval *retry)
{
	GuardEntry *e = g->arg;
	char	   *keytext = guard_key_text(e, key);

	ereport(ERROR,
			(errcode(ERRCODE_EXCLUSION_VIOLATION),
			 errmsg("row of table \"%s\" is inside the cooldown of key %s",
					RelationGetRelationName(g->rel), keytext),
			 errdetail("Key %s has a cooldown of %s and has a row within it; a row at %s must wait %s more.",
					   keytext, bidguard_interval_text(cooldown),
					   timestamptz_to_str(at), bidguard_interval_text(retry)),
			 errtableconstraint(g->rel, GUARD_TRIGGER_NAME)));
}

static void
guard_check_fill(CooldownGuard *g, HeapTuple tuple, TimestampTz created_at,
				 TimestampTz filled_at, TimestampTz now)
{
	GuardEntry *e = g->arg;

	(void) tuple;
	if (filled_at < created_at || filled_at > now)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s of table \"%s\" must lie between %s and now",
						NameStr(e->attnames[2]), RelationGetRelationName(g->rel),
						NameStr(e->attnames[1])),
				 errdetail("The row's %s is %s, its %s %s, and the server clock says %s.",
						   NameStr(e->attnames[1]), pstrdup(timestamptz_to_str(created_at)),
						   NameStr(e->attnames[2]), pstrdup(timestamptz_to_str(filled_at)),
						   pstrdup(timestamptz_to_str(now))),
				 errtableconstraint(g->rel, GUARD_TRIGGER_NAME)));
}

/*
 * bidguard_cooldown_guard_trigger()
 *
 * The trigger bidguard_guard_cooldown() puts on an application's table:
 * BEFORE INSERT OR UPDATE OF key, time[, fill] FOR EACH ROW, with the
 * cooldown as its argument.  Locks: the key's lock (class GUARD), held to
 * the end of the transaction, for every INSERT and every UPDATE that moves a
 * row to another key or time.  23P01 inside the cooldown (constraint
 * bidguard_cooldown_guard), 23514 for a fill outside [time, now], 55P03 when
 * lock_timeout expires.
 */
PG_FUNCTION_INFO_V1(bidguard_cooldown_guard_trigger);
Datum
bidguard_cooldown_guard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	CooldownGuard g;
	GuardEntry *e;
	Interval   *admitted_under;

	if (!bidguard_fired_before_row_ins_upd(fcinfo))
		guard_misuse();

	e = guard_entry(trigdata->tg_relation, trigdata->tg_trigger);

	memset(&g, 0, sizeof(g));
	g.rel = trigdata->tg_relation;
	g.key_attnum = e->attnums[0];
	g.key_type = e->atttypes[0];
	g.time_attnum = e->attnums[1];
	g.fill_attnum = e->nattr == 3 ? e->attnums[2] : 0;
	g.status_attnum = 0;
	g.lock = guard_lock;
	g.decide = guard_decide;
	g.violation = guard_violation;
	g.check_fill = guard_check_fill;
	g.already_admitted = NULL;
	g.arg = e;

	return PointerGetDatum(bidguard_cooldown_guard_row(&g, trigdata, &admitted_under));
}

/* ---------------------------------------------------------------------
 * Guarding and unguarding: the SQL functions
 * ---------------------------------------------------------------------
 */

/*
 * guard_open_table
 *		Open a table the caller owns, for guarding; 42501 when the caller is
 *		not its owner, 42809 when it is no ordinary table.
 */
static Relation
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

static void
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
static int
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
static void
guard_exec(const char *sql, int expected)
{
	bidguard_spi_check(SPI_execute(sql, false, 0), expected, "guarding the table");
}

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

/*
 * Has the table a cooldown guard?  1: yes; 0: no; -1: it has a trigger of
 * that name that is not bidguard's.  The caller is connected to SPI.
 */
static int
guard_trigger_exists(Oid relid, Oid nspid)
{
	Datum		values[3];
	bool		ours;
	bool		isnull;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(GUARD_TRIGGER_NAME);
	values[2] = CStringGetTextDatum(psprintf("%s.bidguard_cooldown_guard_trigger()",
											 quote_identifier(get_namespace_name(nspid))));
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
	AsOwner		save;
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
	check_time_column(desc, time_attnum, "time");
	if (fill_attnum)
		check_time_column(desc, fill_attnum, "fill");
	(void) equality_operator(TupleDescAttr(desc, key_attnum - 1)->atttypid,
							 NameStr(*key_column));

	qrel = qualified_name(rel);
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

	as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	switch (guard_trigger_exists(relid, nspid))
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
	as_owner_end(&save);
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
	AsOwner		save;
	char	   *qrel;
	char	   *relname;
	Oid			owner;

	bidguard_arg_not_null(fcinfo, 0, "tbl");
	relid = PG_GETARG_OID(0);
	bidguard_check_writable("bidguard_unguard_cooldown()");
	rel = guard_open_table(relid, ShareRowExclusiveLock, "unguard");
	qrel = qualified_name(rel);
	relname = pstrdup(RelationGetRelationName(rel));
	owner = rel->rd_rel->relowner;
	table_close(rel, NoLock);

	as_owner_begin(owner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (guard_trigger_exists(relid, bidguard_schema(fcinfo)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" has no cooldown guard", relname)));
	guard_exec(psprintf("DROP TRIGGER %s ON %s", quote_identifier(GUARD_TRIGGER_NAME), qrel),
			   SPI_OK_UTILITY);
	guard_drop_own_indexes(relid);

	SPI_finish();
	as_owner_end(&save);
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
	AsOwner		save;
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
	qrel = qualified_name(rel);

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
					 equality_operator(status_type, NameStr(*status_column)));
	for (int i = 0; i < nstatuses; i++)
		appendStringInfo(&pred, "%s%s::%s", i ? ", " : "",
						 quote_literal_cstr(TextDatumGetCString(statuses[i])),
						 format_type_be_qualified(status_type));
	appendStringInfoString(&pred, "])");

	as_owner_begin(rel->rd_rel->relowner, &save);
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
	as_owner_end(&save);
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(index_name)));
}
