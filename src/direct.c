/*-------------------------------------------------------------------------
 *
 * direct.c
 *	  Inserts into bidguard's own tables without SQL: the rows that
 *	  bidguard_create_bid, bidguard_create_bids and bidguard_try_trade
 *	  create, and the audit events of every path.
 *
 * Why: an INSERT through SPI starts an executor for one row.  Its start-up
 * (plan tree, index information, the CHECK constraints parsed from their
 * catalogue text, the partial index predicates planned) cost more than the
 * insert itself, and the AFTER ROW triggers that follow it queue an event,
 * fire it and start another executor for the audit row.  Here the parts
 * that do not change between rows -- the ResultRelInfo with its prepared
 * CHECK expressions, the IndexInfo of every index with its prepared
 * predicate and expressions -- are built once per backend and relation,
 * kept in a long-lived EState, and thrown away when the relcache says the
 * relation changed (a new index, constraint or trigger).  Each insert then
 * forms the tuple, runs ExecConstraints, table_tuple_insert() and
 * ExecInsertIndexTuples(): the executor's own checks, in its order.
 *
 * When the direct path is not the same as SQL it is not taken, and the
 * caller goes through SPI as before (bidguard_direct_open returns NULL):
 *	- a trigger on INSERT that is not bidguard's own (a user's trigger, a
 *	  foreign key other than the one the caller enforces itself, a
 *	  deferrable unique constraint), or one of bidguard's own disabled, or
 *	  the audit trigger whose event the caller writes missing;
 *	- session_replication_role is not origin (triggers fire differently);
 *	- row level security on the table, a partitioned table, stored
 *	  generated columns, or a column bidguard does not know;
 *	- the caller lacks the table privileges SQL would check (SQL then
 *	  decides, column privileges included, and names what is missing);
 *	- the relation is in use by a direct insert further up the stack.
 * What bidguard's own INSERT triggers would have done the callers do
 * themselves: no BEFORE trigger changes a row bidguard creates (its times
 * are the server's already), the audit event is written by
 * bidguard_event_insert, and the trade's foreign key to its bot is kept by
 * locking the bot's row FOR KEY SHARE, as the foreign key's trigger does.
 *
 * ON CONFLICT DO NOTHING is speculative insertion, as nodeModifyTable.c
 * does it: a pre-check of the arbiter index (waiting for an in-progress
 * inserter), a speculative heap insert, the index inserts, and the
 * speculative insertion confirmed or killed.  Under REPEATABLE READ and
 * SERIALIZABLE a conflicting row that the transaction snapshot cannot see
 * is 40001, as in the executor.
 *
 * Locking protocol
 * ----------------
 * The table is opened with RowExclusiveLock, kept to the end of the
 * transaction; its indexes with RowExclusiveLock when a call first needs
 * them, released when it closes the table (ExecCloseIndices does the same).  Row and index-tuple locks are
 * the table and index AMs'.  No other lock is taken here.
 *
 * src/direct.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/sysattr.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "bidguard.h"

/* What is kept of a relation between inserts. */
typedef struct DirectEntry
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false: rebuild before the next use */
	bool		built;			/* the last build finished (no error in it) */
	bool		eligible;		/* the direct path is SQL's (see above) */
	SubTransactionId in_use;	/* the subtransaction using it, or Invalid */
	MemoryContext cxt;			/* everything below */
	EState	   *estate;
	ResultRelInfo *rri;
	int			nindexes;
	Oid		   *indexoids;
	Oid			arbiter;		/* the spec's arbiter index, or InvalidOid */
	List	   *arbiters;		/* list_make1_oid(arbiter) */
	int			ncolumns;
	AttrNumber *attnums;		/* the spec's columns */
	Oid			identity_seq;	/* of the spec's identity column */
	int			natts;
	TupleDesc	tupdesc;		/* a copy: the slot must not pin relcache's */
	TupleTableSlot *slot;
} DirectEntry;

struct BidguardDirect
{
	DirectEntry *e;
	Relation	rel;
};

static HTAB *direct_cache = NULL;

/* bidguard's own trigger functions, by name in the extension's schema */
static const char *const own_triggers[] = {
	"bidguard_bids_transition_trigger",
	"bidguard_audit_trigger",
	"bidguard_trades_cooldown_trigger",
	NULL
};

static void
direct_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	DirectEntry *e;

	(void) arg;
	if (direct_cache == NULL)
		return;
	hash_seq_init(&seq, direct_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		int			i;

		if (relid == InvalidOid || e->relid == relid)
			e->valid = false;
		for (i = 0; e->valid && i < e->nindexes; i++)
			if (e->indexoids[i] == relid)
				e->valid = false;
	}
}

/*
 * An error ends the use of the entries opened in the (sub)transaction it
 * aborts, and only theirs: an outer call may still be using another (a
 * user's CHECK function with an EXCEPTION block runs inside an insert).
 */
static void
direct_end_uses(SubTransactionId subid)
{
	HASH_SEQ_STATUS seq;
	DirectEntry *e;

	hash_seq_init(&seq, direct_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (subid == InvalidSubTransactionId || e->in_use == subid)
			e->in_use = InvalidSubTransactionId;
}

static void
direct_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		direct_end_uses(InvalidSubTransactionId);
}

static void
direct_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	(void) parentSubid;
	(void) arg;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		direct_end_uses(mySubid);
}

/*
 * Is trigger "t", which fires on INSERT, one the direct path may skip?
 * *audit is set when it is bidguard's audit trigger.
 */
static bool
direct_trigger_ok(Oid nspid, const Trigger *t, const char *fkey, bool *audit)
{
	HeapTuple	proc;
	bool		ok = false;

	if (t->tgenabled != TRIGGER_FIRES_ON_ORIGIN && t->tgenabled != TRIGGER_FIRES_ALWAYS)
		return false;
	if (t->tgfoid == F_RI_FKEY_CHECK_INS)
	{
		char	   *conname = OidIsValid(t->tgconstraint) ?
			get_constraint_name(t->tgconstraint) : NULL;

		return fkey != NULL && conname != NULL && strcmp(conname, fkey) == 0 &&
			!t->tgdeferrable;
	}
	if (!TRIGGER_FOR_ROW(t->tgtype) || t->tgisinternal)
		return false;
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(t->tgfoid));
	if (HeapTupleIsValid(proc))
	{
		Form_pg_proc p = (Form_pg_proc) GETSTRUCT(proc);
		int			i;

		if (p->pronamespace == nspid && p->prolang == ClanguageId)
			for (i = 0; own_triggers[i] != NULL; i++)
				if (strcmp(NameStr(p->proname), own_triggers[i]) == 0)
					ok = true;
		if (ok && strcmp(NameStr(p->proname), "bidguard_audit_trigger") == 0)
			*audit = true;
		ReleaseSysCache(proc);
	}
	return ok;
}

/* May the direct path insert into rel as SQL would? */
static bool
direct_rel_ok(Oid nspid, Relation rel, const BidguardDirectSpec *spec)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		audited = false;
	int			i,
				j;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relrowsecurity)
		return false;
	if (desc->constr != NULL && desc->constr->has_generated_stored)
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		known = false;

		if (att->attisdropped)
			continue;
		for (j = 0; spec->columns[j] != NULL; j++)
			if (strcmp(NameStr(att->attname), spec->columns[j]) == 0)
				known = true;
		if (!known)
			return false;
	}
	if (rel->trigdesc != NULL)
		for (i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			const Trigger *t = &rel->trigdesc->triggers[i];

			if (TRIGGER_FOR_INSERT(t->tgtype) &&
				!direct_trigger_ok(nspid, t, spec->fkey, &audited))
				return false;
		}
	/* the caller writes the event only where the audit trigger would */
	return audited == spec->audited;
}

static void
direct_free(DirectEntry *e)
{
	if (e->estate != NULL)
		FreeExecutorState(e->estate);
	if (e->cxt != NULL)
		MemoryContextDelete(e->cxt);
	e->cxt = NULL;
	e->estate = NULL;
	e->rri = NULL;
	e->slot = NULL;
	e->nindexes = 0;
	e->indexoids = NULL;
}

/*
 * (Re)build what is kept of rel, with its indexes opened into e->rri.
 * Caller has set e->valid; an invalidation meanwhile clears it again.
 */
static void
direct_build(Oid nspid, DirectEntry *e, Relation rel, const BidguardDirectSpec *spec)
{
	MemoryContext old;
	int			i;

	direct_free(e);
	e->cxt = AllocSetContextCreate(TopMemoryContext, "bidguard direct insert",
								   ALLOCSET_SMALL_SIZES);
	e->eligible = direct_rel_ok(nspid, rel, spec);
	if (!e->eligible)
		return;

	old = MemoryContextSwitchTo(e->cxt);
	e->estate = CreateExecutorState();
	e->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(e->rri, rel, 0, NULL, 0);
	e->rri->ri_TrigDesc = NULL; /* see the file header */
	ExecOpenIndices(e->rri, spec->arbiter != NULL);
	e->nindexes = e->rri->ri_NumIndices;
	e->indexoids = palloc0(sizeof(Oid) * Max(e->nindexes, 1));
	e->arbiter = InvalidOid;
	for (i = 0; i < e->nindexes; i++)
	{
		Relation	ind = e->rri->ri_IndexRelationDescs[i];

		e->indexoids[i] = RelationGetRelid(ind);
		if (spec->arbiter != NULL &&
			strcmp(RelationGetRelationName(ind), spec->arbiter) == 0)
			e->arbiter = e->indexoids[i];
	}
	e->arbiters = OidIsValid(e->arbiter) ? list_make1_oid(e->arbiter) : NIL;
	if (spec->arbiter != NULL && !OidIsValid(e->arbiter))
		e->eligible = false;

	for (e->ncolumns = 0; spec->columns[e->ncolumns] != NULL; e->ncolumns++)
		;
	e->attnums = palloc(sizeof(AttrNumber) * e->ncolumns);
	for (i = 0; i < e->ncolumns; i++)
	{
		e->attnums[i] = get_attnum(RelationGetRelid(rel), spec->columns[i]);
		if (e->attnums[i] == InvalidAttrNumber)
			e->eligible = false;
	}
	/* (a Citus shard has no identity of its own: SQL it is) */
	e->identity_seq = InvalidOid;
	if (e->eligible && spec->identity != NULL)
	{
		e->identity_seq = bidguard_identity_sequence(rel, get_attnum(RelationGetRelid(rel),
																	 spec->identity));
		if (!OidIsValid(e->identity_seq))
			e->eligible = false;
	}
	e->natts = RelationGetDescr(rel)->natts;
	e->tupdesc = CreateTupleDescCopy(RelationGetDescr(rel));
	e->slot = MakeSingleTupleTableSlot(e->tupdesc, &TTSOpsHeapTuple);
	MemoryContextSwitchTo(old);
}

/*
 * Open the indexes not open yet (only the one "only" if valid), each the
 * first time a call needs it: a probe needs the arbiter, an insert all.  An
 * index made after the entry was checked cannot need our rows: CREATE INDEX
 * waits for writers of the table to end before it takes inserts.
 */
static void
direct_open_indexes(DirectEntry *e, Oid only)
{
	int			i;

	for (i = 0; i < e->nindexes; i++)
		if (e->rri->ri_IndexRelationDescs[i] == NULL &&
			(!OidIsValid(only) || e->indexoids[i] == only))
			e->rri->ri_IndexRelationDescs[i] = index_open(e->indexoids[i],
														  RowExclusiveLock);
}

static void
direct_close_indexes(DirectEntry *e)
{
	int			i;

	if (e->rri == NULL)
		return;
	for (i = 0; i < e->nindexes; i++)
	{
		Relation	ind = e->rri->ri_IndexRelationDescs[i];

		if (ind == NULL)
			continue;
		bidguard_index_insert_cleanup(ind, e->rri->ri_IndexRelationInfo[i]);
		index_close(ind, RowExclusiveLock);
		e->rri->ri_IndexRelationDescs[i] = NULL;
	}
}

/*
 * bidguard_direct_open
 *		Open relid for direct inserts of spec's columns, or NULL when the
 *		caller must use SQL (see the file header).  "privileges" are the
 *		table privileges SQL would check (ACL_INSERT, ACL_SELECT for
 *		RETURNING), checked as the current user.
 */
BidguardDirect *
bidguard_direct_open(Oid nspid, Oid relid, const BidguardDirectSpec *spec,
					 AclMode privileges)
{
	DirectEntry *e;
	Relation	rel;
	bool		found;
	BidguardDirect *d;

	if (SessionReplicationRole != SESSION_REPLICATION_ROLE_ORIGIN)
		return NULL;
	if (privileges != 0 &&
		pg_class_aclmask(relid, GetUserId(), privileges, ACLMASK_ALL) != privileges)
		return NULL;

	if (direct_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(DirectEntry);
		ctl.hcxt = TopMemoryContext;
		direct_cache = hash_create("bidguard direct inserts", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(direct_relcache_callback, (Datum) 0);
		RegisterXactCallback(direct_xact_callback, NULL);
		RegisterSubXactCallback(direct_subxact_callback, NULL);
	}

	rel = table_open(relid, RowExclusiveLock);
	e = hash_search(direct_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) e) + sizeof(Oid), 0, sizeof(DirectEntry) - sizeof(Oid));
		e->valid = false;
	}
	if (e->in_use != InvalidSubTransactionId)
	{
		table_close(rel, NoLock);
		return NULL;
	}
	for (;;)
	{
		if (!e->valid || !e->built)
		{
			e->valid = true;
			e->built = false;
			direct_build(nspid, e, rel, spec);
			e->built = true;
		}
		else if (e->eligible)
		{
			/*
			 * None is open: the last call closed them, or its error did
			 * (the resource owner), leaving the pointers behind.
			 */
			memset(e->rri->ri_IndexRelationDescs, 0, sizeof(Relation) * e->nindexes);
		}
		if (e->valid)
			break;
		direct_close_indexes(e);
	}
	if (!e->eligible)
	{
		direct_close_indexes(e);
		table_close(rel, NoLock);
		return NULL;
	}
	e->rri->ri_RelationDesc = rel;
	e->in_use = GetCurrentSubTransactionId();
	d = palloc(sizeof(BidguardDirect));
	d->e = e;
	d->rel = rel;
	return d;
}

void
bidguard_direct_close(BidguardDirect *d)
{
	direct_close_indexes(d->e);
	d->e->rri->ri_RelationDesc = NULL;
	d->e->in_use = InvalidSubTransactionId;
	table_close(d->rel, NoLock);
	pfree(d);
}

/* The table, opened with RowExclusiveLock; the spec's arbiter index, opened. */
Relation
bidguard_direct_relation(BidguardDirect *d)
{
	return d->rel;
}

Relation
bidguard_direct_arbiter(BidguardDirect *d)
{
	int			i;

	for (i = 0; i < d->e->nindexes; i++)
		if (d->e->indexoids[i] == d->e->arbiter)
		{
			direct_open_indexes(d->e, d->e->arbiter);
			return d->e->rri->ri_IndexRelationDescs[i];
		}
	elog(ERROR, "bidguard: relation \"%s\" has no arbiter index",
		 RelationGetRelationName(d->rel));
	pg_unreachable();
}

/* The column number of spec->columns[i]. */
AttrNumber
bidguard_direct_attnum(BidguardDirect *d, int i)
{
	Assert(i >= 0 && i < d->e->ncolumns);
	return d->e->attnums[i];
}

/* The next value of the spec's identity column, as its default would be. */
int64
bidguard_direct_next_id(BidguardDirect *d)
{
	if (!OidIsValid(d->e->identity_seq))
		elog(ERROR, "bidguard: relation \"%s\" has no identity sequence",
			 RelationGetRelationName(d->rel));
	return nextval_internal(d->e->identity_seq, false);
}

/*
 * The conflicting row must be visible to a transaction snapshot, or the
 * transaction would act on a row it cannot see: 40001, as
 * ExecCheckTupleVisible does for ON CONFLICT.
 */
static void
direct_check_conflict_visible(Relation rel, ItemPointer tid)
{
	TupleTableSlot *slot;
	bool		isnull;
	TransactionId xmin;

	if (!IsolationUsesXactSnapshot())
		return;
	slot = table_slot_create(rel, NULL);
	if (!table_tuple_fetch_row_version(rel, tid, SnapshotAny, slot))
		elog(ERROR, "bidguard: failed to fetch the conflicting row");
	if (!table_tuple_satisfies_snapshot(rel, slot, GetActiveSnapshot()))
	{
		xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
													 &isnull));
		if (!TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * bidguard_direct_insert
 *		Insert a row of the spec's columns (values[i], nulls[i] for
 *		spec->columns[i]; columns not named are NULL).  With do_nothing, ON
 *		CONFLICT DO NOTHING on the spec's arbiter index: false when a
 *		conflicting row is there (or was inserted meanwhile).  *tid, when
 *		given, is the new row's.
 */
bool
bidguard_direct_insert(BidguardDirect *d, const Datum *values, const bool *nulls,
					   bool do_nothing, ItemPointer tid)
{
	DirectEntry *e = d->e;
	EState	   *estate = e->estate;
	TupleTableSlot *slot = e->slot;
	Datum	   *row;
	bool	   *rownulls;
	MemoryContext old;
	HeapTuple	tuple;
	CommandId	cid = GetCurrentCommandId(true);
	bool		inserted = true;
	int			i;

	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	row = palloc(sizeof(Datum) * e->natts);
	rownulls = palloc(sizeof(bool) * e->natts);
	for (i = 0; i < e->natts; i++)
		rownulls[i] = true;
	for (i = 0; i < e->ncolumns; i++)
	{
		row[e->attnums[i] - 1] = values[i];
		rownulls[e->attnums[i] - 1] = nulls[i];
	}
	tuple = heap_form_tuple(e->tupdesc, row, rownulls);
	MemoryContextSwitchTo(old);

	direct_open_indexes(e, InvalidOid);
	ExecStoreHeapTuple(tuple, slot, false);
	slot->tts_tableOid = RelationGetRelid(d->rel);
	if (RelationGetDescr(d->rel)->constr != NULL)
		ExecConstraints(e->rri, slot, estate);

	if (do_nothing)
	{
		ItemPointerData conflict;
		uint32		token;
		bool		spec_conflict = false;
		List	   *recheck;

		if (!bidguard_exec_check_index_constraints(e->rri, slot, estate, &conflict,
												   e->arbiters))
		{
			direct_check_conflict_visible(d->rel, &conflict);
			inserted = false;
		}
		else
		{
			token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			table_tuple_insert_speculative(d->rel, slot, cid, 0, NULL, token);
			recheck = bidguard_exec_insert_index_tuples(e->rri, slot, estate, true,
														&spec_conflict, e->arbiters);
			table_tuple_complete_speculative(d->rel, slot, token, !spec_conflict);
			SpeculativeInsertionLockRelease(GetCurrentTransactionId());
			list_free(recheck);
			inserted = !spec_conflict;
		}
	}
	else
	{
		table_tuple_insert(d->rel, slot, cid, 0, NULL);
		list_free(bidguard_exec_insert_index_tuples(e->rri, slot, estate, false,
													NULL, NIL));
	}
	if (inserted && tid != NULL)
		ItemPointerCopy(&slot->tts_tid, tid);
	ExecClearTuple(slot);
	ResetPerTupleExprContext(estate);
	return inserted;
}
