/*-------------------------------------------------------------------------
 *
 * placement.c
 *	  Where bidguard's statements go when its tables are distributed by
 *	  Citus: the shard of bidguard_bids that holds a posting, the shards of
 *	  bidguard_bots and bidguard_trades that hold a bot, and whether this
 *	  node holds them.
 *
 * bidguard's guards are locks of the backend that runs them.  They protect
 * rows only when every path to those rows takes them in one lock space: on
 * Citus, the node that holds the rows' shard.  So each entry point first
 * places itself (bidguard_place_posting, bidguard_place_bot): it asks
 * Citus which shard holds the key, and goes on only when that shard is on
 * this node; its statements then name the shard itself (bidguard_plan,
 * bidguard_trade_relids), never the distributed table, which on a worker
 * is an empty shell and through the distributed planner would be routed
 * and locked elsewhere.  A call that runs on a node without the shard (not
 * delegated by Citus: see scaleout/citus) is refused with 0A000 before it
 * takes any lock.  The triggers place themselves by the row's key, and a
 * row written into a shard that does not hold its key is refused (23514,
 * bidguard_citus_fence), so no key ends up on two shards.
 *
 * On a database without Citus, or with bidguard's tables not distributed,
 * every table is "placed" on itself and nothing else changes; the only
 * cost is one cached flag per table.
 *
 * The current placement is a backend-global (bidguard_placement): each
 * entry point saves the one it found, sets its own, and restores the saved
 * one when it returns, so that a bidguard call made by a user's trigger
 * inside another does not leave its shard behind.  An error skips the
 * restore; the placement is cleared at the end of the transaction, and a
 * stale one after a rolled-back savepoint is harmless because every reader
 * of a distributed table's placement sets it first.
 *
 * Locking protocol
 * ----------------
 * None of its own.  The shard lookups read Citus's metadata (pg_dist_*)
 * through SPI, with the AccessShareLocks that reading takes.
 *
 * src/placement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bidguard.h"

BidguardPlacement bidguard_placement;

static const char *const table_names[BG_NUM_TABLES] = {
	[BG_TABLE_NONE] = NULL,
	[BG_TABLE_BIDS] = "bidguard_bids",
	[BG_TABLE_BOTS] = "bidguard_bots",
	[BG_TABLE_TRADES] = "bidguard_trades",
};

/* Per extension schema: is each table distributed?  ('\0': not known yet) */
typedef struct PlacementCache
{
	Oid			nspid;
	Oid			relid[BG_NUM_TABLES];
	char		method[BG_NUM_TABLES];	/* 'l' local; else pg_dist_partition.partmethod */
	struct PlacementCache *next;
} PlacementCache;

static PlacementCache *placement_caches = NULL;
static bool callbacks_registered = false;

/* The shard lookups, by the key's type (text, bigint). */
static SPIPlanPtr shard_plans[2];

static void
placement_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	PlacementCache *c;

	for (c = placement_caches; c != NULL; c = c->next)
	{
		int			t;

		for (t = 0; t < BG_NUM_TABLES; t++)
			if (relid == InvalidOid || relid == c->relid[t])
				c->method[t] = '\0';
	}
}

static void
placement_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		memset(&bidguard_placement, 0, sizeof(bidguard_placement));
}

/*
 * Citus's partition method of "relid" ('h' hash, 'n' a reference or
 * single-shard table, ...), or 'l' when Citus does not distribute it.
 * Read from pg_dist_partition directly: no SPI, so that bidguard_plan can
 * ask while its caller is in the middle of reading a result.
 */
static char
citus_partmethod(Oid relid)
{
	Oid			dist = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Relation	rel;
	AttrNumber	relid_att;
	AttrNumber	method_att;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char		method = 'l';

	if (!OidIsValid(dist))
		return 'l';
	rel = table_open(dist, AccessShareLock);
	relid_att = get_attnum(dist, "logicalrelid");
	method_att = get_attnum(dist, "partmethod");
	if (relid_att <= 0 || method_att <= 0)
		elog(ERROR, "bidguard: pg_catalog.pg_dist_partition has no logicalrelid or partmethod");
	ScanKeyInit(&key, relid_att, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, method_att, RelationGetDescr(rel), &isnull);

		if (!isnull)
			method = DatumGetChar(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return method;
}

/* Is bidguard's table "t" in schema "nspid" hash-distributed? */
static bool
table_distributed(Oid nspid, BidguardTable t)
{
	PlacementCache *c;

	if (t == BG_TABLE_NONE)
		return false;
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(placement_relcache_callback, (Datum) 0);
		RegisterXactCallback(placement_xact_callback, NULL);
		callbacks_registered = true;
	}
	for (c = placement_caches; c != NULL; c = c->next)
		if (c->nspid == nspid)
			break;
	if (c == NULL)
	{
		c = MemoryContextAllocZero(TopMemoryContext, sizeof(PlacementCache));
		c->nspid = nspid;
		c->next = placement_caches;
		placement_caches = c;
	}
	if (c->method[t] == '\0')
	{
		Oid			relid = get_relname_relid(table_names[t], nspid);
		char		method;

		if (!OidIsValid(relid))
			elog(ERROR, "bidguard: relation \"%s\" is missing in schema \"%s\"",
				 table_names[t], get_namespace_name(nspid));
		method = citus_partmethod(relid);
		if (method != 'l' && method != 'h')
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("bidguard does not support %s.%s as a Citus table of partition method '%c'",
							get_namespace_name(nspid), table_names[t], method),
					 errhint("Distribute bidguard's tables with bidguard_citus_distribute(), which hash-distributes them.")));
		c->relid[t] = relid;
		c->method[t] = method;
	}
	return c->method[t] == 'h';
}

/*
 * The shard of table "t" that holds "key", and whether this node holds a
 * placement of it.
 */
static int64
lookup_shard(Oid nspid, BidguardTable t, Datum key, Oid keytype, bool *local)
{
	int			which = (keytype == TEXTOID) ? 0 : 1;
	Datum		values[2];
	bool		isnull;
	int64		shardid;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (shard_plans[which] == NULL)
	{
		Oid			argtypes[2] = {REGCLASSOID, keytype};
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT s.shardid, EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p"
						   " WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid"
						   " AND p.groupid OPERATOR(pg_catalog.=)"
						   " (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g))"
						   " FROM (SELECT pg_catalog.get_shard_id_for_distribution_column($1, $2)"
						   " AS shardid) s",
						   2, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for bidguard's shard lookup: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		shard_plans[which] = plan;
	}
	values[0] = ObjectIdGetDatum(get_relname_relid(table_names[t], nspid));
	values[1] = key;
	if (SPI_execute_plan(shard_plans[which], values, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "bidguard: Citus's shard lookup for %s failed", table_names[t]);
	shardid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "bidguard: Citus has no shard of %s for this key", table_names[t]);
	*local = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
	return shardid;
}

static pg_noreturn void
raise_elsewhere(BidguardTable t, const char *what, int64 shardid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is held by shard %lld of %s, which is not on this node",
					what, (long long) shardid, table_names[t]),
			 errdetail("bidguard locks on the node that holds the rows; a call that runs on another node would lock in a different place than its rows."),
			 errhint("Distribute bidguard's functions with bidguard_citus_distribute(), and call them as SELECT * FROM f(...) with constant arguments, not inside a CTE, a subquery or another function; or connect to the worker that holds the shard.")));
}

static pg_noreturn void
raise_fenced(BidguardTable t, Relation rel, const char *what, int64 shardid)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("%s belongs to shard %lld of %s, not in \"%s\"",
					what, (long long) shardid, table_names[t], RelationGetRelationName(rel)),
			 errdetail("A row written into a Citus shard that does not hold its key would put the key on two shards."),
			 errtableconstraint(rel, "bidguard_citus_fence")));
}

/*
 * Place table "t" for "key".  "fence_rel" is the relation a trigger fired
 * on: the row must be written into the very shard that holds its key
 * (23514 otherwise); without it, a shard on another node is 0A000.
 */
static void
place(Oid nspid, BidguardTable t, Datum key, Oid keytype, const char *what,
	  Relation fence_rel)
{
	bool		local;
	int64		shardid;

	if (!table_distributed(nspid, t))
	{
		bidguard_placement.shard[t] = BG_PLACE_SELF;
		return;
	}
	shardid = lookup_shard(nspid, t, key, keytype, &local);
	if (fence_rel != NULL &&
		(!local || RelationGetRelid(fence_rel) !=
		 bidguard_placed_relid(nspid, table_names[t], shardid)))
		raise_fenced(t, fence_rel, what, shardid);
	if (!local)
		raise_elsewhere(t, what, shardid);
	bidguard_placement.shard[t] = shardid;
}

/*
 * bidguard_place_posting
 *		Place bidguard_bids for posting "posting_id" (the distribution
 *		column); the placement before goes into *saved.  A trigger passes
 *		its relation as "fence_rel" (see place()), a function NULL.
 */
void
bidguard_place_posting(Oid nspid, text *posting_id, Relation fence_rel,
					   BidguardPlacement *saved)
{
	*saved = bidguard_placement;
	if (table_distributed(nspid, BG_TABLE_BIDS))
		place(nspid, BG_TABLE_BIDS, PointerGetDatum(posting_id), TEXTOID,
			  psprintf("posting \"%s\"", text_to_cstring(posting_id)), fence_rel);
	else
		bidguard_placement.shard[BG_TABLE_BIDS] = BG_PLACE_SELF;
}

/*
 * bidguard_place_bot
 *		Place bidguard_bots and bidguard_trades for bot "bot_id" (colocated:
 *		on one node).  "fence_rel": a trigger's relation, a shard of
 *		bidguard_trades.
 */
void
bidguard_place_bot(Oid nspid, int64 bot_id, Relation fence_rel,
				   BidguardPlacement *saved)
{
	char		what[64];

	*saved = bidguard_placement;
	snprintf(what, sizeof(what), "bot %lld", (long long) bot_id);
	place(nspid, BG_TABLE_TRADES, Int64GetDatum(bot_id), INT8OID, what, fence_rel);
	place(nspid, BG_TABLE_BOTS, Int64GetDatum(bot_id), INT8OID, what, NULL);
}

/*
 * bidguard_place_unkeyed
 *		A function that finds its row by id only ("function") cannot tell
 *		which shard holds it: refused when table "t" is distributed,
 *		pointing at the variant that takes the distribution key ("keyed").
 */
void
bidguard_place_unkeyed(Oid nspid, BidguardTable t, const char *function,
					   const char *keyed, BidguardPlacement *saved)
{
	*saved = bidguard_placement;
	if (table_distributed(nspid, t))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot find its row: %s.%s is distributed by Citus",
						function, get_namespace_name(nspid), table_names[t]),
				 errdetail("On Citus, a row is found through the key its table is distributed by, on the node that holds it."),
				 errhint("Call %s instead.", keyed)));
	bidguard_placement.shard[t] = BG_PLACE_SELF;
}

void
bidguard_placement_restore(const BidguardPlacement *saved)
{
	bidguard_placement = *saved;
}

/*
 * bidguard_placed_shard
 *		The shard that statements on table "t" go to: 0 for the table
 *		itself.  A distributed table that no entry point has placed is an
 *		error, never a silent read of a worker's empty shell.
 */
int64
bidguard_placed_shard(Oid nspid, BidguardTable t)
{
	int64		s = bidguard_placement.shard[t];

	if (t == BG_TABLE_NONE || s == BG_PLACE_SELF)
		return 0;
	if (s > 0)
		return s;
	if (!table_distributed(nspid, t))
		return 0;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("bidguard cannot tell which shard of %s.%s this statement is for",
					get_namespace_name(nspid), table_names[t])));
	pg_unreachable();
}

/*
 * bidguard_placed_relid
 *		The relation "relname" (a table or an index of bidguard's) in schema
 *		"nspid", or its Citus shard "shardid" (named relname_shardid, in the
 *		same schema).
 */
Oid
bidguard_placed_relid(Oid nspid, const char *relname, int64 shardid)
{
	Oid			relid;

	if (shardid == 0)
		relid = get_relname_relid(relname, nspid);
	else
	{
		char	   *name = psprintf("%s_%lld", relname, (long long) shardid);

		relid = get_relname_relid(name, nspid);
		pfree(name);
	}
	if (!OidIsValid(relid))
		elog(ERROR, "bidguard: relation \"%s\" (shard %lld) is missing in schema \"%s\"",
			 relname, (long long) shardid, get_namespace_name(nspid));
	return relid;
}
