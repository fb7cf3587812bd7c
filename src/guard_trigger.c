/*-------------------------------------------------------------------------
 *
 * guard_trigger.c
 *	  The cooldown guard on an application's table: the trigger
 *	  bidguard_guard_cooldown() attaches, its per-backend cache, and the
 *	  decision it makes by reading the serving index.
 *
 * The guard is an ordinary trigger,
 *     bidguard_cooldown_guard BEFORE INSERT OR UPDATE OF key, time[, fill]
 *     FOR EACH ROW EXECUTE FUNCTION bidguard_cooldown_guard_trigger('<cooldown>')
 * and it is its own configuration: the key, time and fill columns are the
 * trigger's UPDATE OF columns, in that order (pg_trigger.tgattr keeps the
 * order and the column numbers), and the cooldown is its argument.  So the
 * guard follows renames of the table and of its columns, PostgreSQL refuses
 * to drop a guarded column (the trigger depends on it), and pg_dump and
 * pg_restore carry the guard with the table, as they carry any trigger.
 * The row logic is cooldown.c's; the hooks here lock the key and decide.
 *
 * Locking protocol
 * ----------------
 * 1. The key's lock: a transaction-scoped exclusive lock of class GUARD
 *    (25092), keyed by the table's OID combined with the key's 64-bit hash
 *    (the key type's extended hash function, seed 0).  Two keys whose hashes
 *    collide share a lock: they serialize, nothing worse.  NULL keys are not
 *    guarded, as UNIQUE does not guard NULLs.
 * 2. The check runs after the lock.  With a btree index on (key, effective
 *    time) it reads that index directly (no SQL, nothing of the caller's
 *    search_path), taking AccessShareLock on the index for the scan.
 *    Without one (a key type with hash equality only) it runs SQL as the
 *    table's owner, security-restricted, search_path pinned, over ONLY the
 *    table itself (not inheritance children).
 * 3. Snapshots as for trades (trades.c): READ COMMITTED reads a fresh
 *    snapshot; at REPEATABLE READ and SERIALIZABLE a decision that differs
 *    between the transaction snapshot and the latest one is 40001.
 *
 * src/guard_trigger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "bidguard.h"
#include "guards.h"

/*
 * guard_execute_checked
 *		Run a cooldown decision, connected to SPI.  Under a transaction
 *		snapshot it runs with that snapshot and with the latest one; if they
 *		disagree on whether there is a row, or on whether clear_column is
 *		NULL (clear), that is 40001.  SPI_tuptable holds the latest answer.
 */
static void
guard_execute_checked(SPIPlanPtr plan, Datum *values, const char *nulls,
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
	GuardAsOwner		save;
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
	guard_check_time_column(desc, e->attnums[1], "time");
	if (e->nattr == 3)
		guard_check_time_column(desc, e->attnums[2], "fill");
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
					 eff, guard_qualified_name(rel),
					 quote_identifier(NameStr(e->attnames[0])),
					 guard_equality_operator(e->atttypes[0], NameStr(e->attnames[0])),
					 eff, eff);
	argtypes[0] = e->atttypes[0];
	argtypes[1] = TIMESTAMPTZOID;
	argtypes[2] = TIDOID;
	argtypes[3] = INTERVALOID;

	/* Prepared as the owner, under the pinned search_path it runs with. */
	guard_as_owner_begin(rel->rd_rel->relowner, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	e->plan = SPI_prepare(sql.data, 4, argtypes);
	if (e->plan == NULL)
		elog(ERROR, "bidguard: preparing the cooldown check of \"%s\" failed: %s",
			 RelationGetRelationName(rel), SPI_result_code_string(SPI_result));
	if (SPI_keepplan(e->plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	SPI_finish();
	guard_as_owner_end(&save);

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

static pg_noreturn void guard_violation(CooldownGuard *g, Datum key, TimestampTz time,
							const TimestampTz *fill, Interval *cooldown, Interval *retry);

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
	TimestampTz lo = bidguard_ts_minus(at, cd);
	TimestampTz hi = bidguard_ts_plus(at, cd);
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
												 TimestampGetDatum(bidguard_ts_plus(latest, cd)),
												 TimestampGetDatum(at)));
}

static Interval *
guard_decide(CooldownGuard *g, Datum key, TimestampTz time, const TimestampTz *fill,
			 HeapTuple self, Interval **cooldown)
{
	/* judged by the row's effective time */
	TimestampTz at = fill != NULL ? *fill : time;
	GuardEntry *e = g->arg;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	GuardAsOwner		save;
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

	guard_as_owner_begin(g->rel->rd_rel->relowner, &save);
	subject.e = e;
	subject.key = key;
	guard_execute_checked(e->plan, values, nulls, 1, guard_row_subject, &subject);
	guard_as_owner_end(&save);

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
guard_violation(CooldownGuard *g, Datum key, TimestampTz time, const TimestampTz *fill,
				Interval *cooldown, Interval *retry)
{
	GuardEntry *e = g->arg;
	TimestampTz at = fill != NULL ? *fill : time;	/* the time guard_decide judged */
	char	   *keytext = guard_key_text(e, key);

	ereport(ERROR,
			(errcode(ERRCODE_EXCLUSION_VIOLATION),
			 errmsg("row of table \"%s\" is inside the cooldown of key %s",
					RelationGetRelationName(g->rel), keytext),
			 errdetail("Key %s has a cooldown of %s and has a row within it; a row at %s must wait %s more.",
					   keytext, bidguard_interval_text(cooldown),
					   timestamptz_to_str(at), bidguard_interval_text(retry)),
			 errhint("ON CONFLICT cannot absorb this error: the cooldown is checked by the trigger %s, not by an index.",
					 GUARD_TRIGGER_NAME),
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
	g.arg = e;

	return PointerGetDatum(bidguard_cooldown_guard_row(&g, trigdata, &admitted_under));
}
