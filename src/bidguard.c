/*-------------------------------------------------------------------------
 *
 * bidguard.c
 *	  What the other files share: the per-backend SPI plan cache, the
 *	  extension's relations by schema, and small SPI and privilege helpers.
 *	  (_PG_init is in module.c; argument checks are in args.c.)
 *
 * Plan cache
 * ----------
 * Every statement bidguard runs through SPI is prepared once per backend
 * and kept with SPI_keepplan(), the way ri_triggers.c keeps its plans.  The
 * statements name the extension's tables schema-qualified, so the cache is
 * keyed by the extension's schema: the schema of the C function's own
 * pg_proc entry, looked up once per FmgrInfo and remembered in fn_extra
 * (bidguard_call_state).
 * The plan cache (plancache.c) replans a kept statement when a table it
 * uses is dropped and created again, so DROP/CREATE EXTENSION in the same
 * schema needs nothing from us.  A new schema gets a new cache entry; the
 * old entry is left behind rather than freed, because a plan of it may be
 * executing further up the stack (a trigger fired by one of our own
 * statements).  Renaming the schema is noticed through a syscache callback
 * and retires the entry the same way.
 * On Citus, a statement on a distributed table runs on the shard the caller
 * placed it on (placement.c): those plans are kept per (statement, shard)
 * in the schema's entry, and prepared the first time each is needed.
 *
 * Nothing here takes locks of its own.
 *
 * src/bidguard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "bidguard.h"

/* bidguard.test_clock (module.c): a fixed "now", for tests; empty = the clock */
char	   *bidguard_test_clock = NULL;

/*
 * bidguard_now
 *		The time of a trade admission: the server clock, read by the caller
 *		once the bot's lock is held, or bidguard.test_clock when set.
 */
TimestampTz
bidguard_now(void)
{
	if (bidguard_test_clock != NULL && bidguard_test_clock[0] != '\0')
		return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													   CStringGetDatum(bidguard_test_clock),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
	return GetCurrentTimestamp();
}

/*
 * The SQL of each kept plan.  "%1$s" is the extension's schema, quoted;
 * "%2$s" follows the name of the table the statement is on ("table"): empty,
 * or "_<shard id>" for the Citus shard the caller placed it on
 * (placement.c).  A shard has no identity default of its own (Citus
 * evaluates defaults before it routes), so an insert into a shard names the
 * identity column, from the node's sequence, literal "%3$s" ("shard_seq").
 * Built-in functions and operators are pg_catalog-qualified: the plans must
 * mean the same whatever search_path the caller has.
 */
typedef struct BidguardPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[11];
	BidguardTable table;
	const char *shard_sql;		/* NULL: sql */
	const char *shard_seq;
} BidguardPlanDef;

#define ACTIVE_BID_STATUSES \
	"status OPERATOR(pg_catalog.=) ANY ('{pending,submitted}'::pg_catalog.text[])"

static const BidguardPlanDef plan_defs[BG_NUM_PLANS] = {
	[BG_PLAN_FIND_ACTIVE_BID] = {
		"SELECT bid_id, status, atomic_event_id FROM %1$s.bidguard_bids%2$s"
		" WHERE marketplace_id OPERATOR(pg_catalog.=) $1"
		" AND posting_id OPERATOR(pg_catalog.=) $2"
		" AND " ACTIVE_BID_STATUSES,
		2, {TEXTOID, TEXTOID},
		BG_TABLE_BIDS
	},
	[BG_PLAN_INSERT_BID] = {
		"INSERT INTO %1$s.bidguard_bids%2$s AS b"
		" (marketplace_id, posting_id, status, bid_data)"
		" VALUES ($1, $2, 'pending', $3)"
		" ON CONFLICT (marketplace_id, posting_id) WHERE " ACTIVE_BID_STATUSES
		" DO NOTHING"
		" RETURNING b.bid_id, b.status, b.atomic_event_id",
		3, {TEXTOID, TEXTOID, JSONBOID},
		BG_TABLE_BIDS,
		"INSERT INTO %1$s.bidguard_bids%2$s AS b"
		" (bid_id, marketplace_id, posting_id, status, bid_data)"
		" VALUES (pg_catalog.nextval(%3$s::pg_catalog.regclass), $1, $2, 'pending', $3)"
		" ON CONFLICT (marketplace_id, posting_id) WHERE " ACTIVE_BID_STATUSES
		" DO NOTHING"
		" RETURNING b.bid_id, b.status, b.atomic_event_id",
		"bidguard_bids_bid_id_seq"
	},
	[BG_PLAN_BID_POSTING] = {
		"SELECT marketplace_id, posting_id FROM %1$s.bidguard_bids%2$s"
		" WHERE bid_id OPERATOR(pg_catalog.=) $1",
		1, {INT8OID},
		BG_TABLE_BIDS
	},
	[BG_PLAN_LOCK_BID] = {
		"SELECT marketplace_id, posting_id, status FROM %1$s.bidguard_bids%2$s"
		" WHERE bid_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
		1, {INT8OID},
		BG_TABLE_BIDS
	},
	[BG_PLAN_UPDATE_BID_STATUS] = {
		"UPDATE %1$s.bidguard_bids%2$s SET status = $2, status_reason = $3"
		" WHERE bid_id OPERATOR(pg_catalog.=) $1",
		3, {INT8OID, TEXTOID, TEXTOID},
		BG_TABLE_BIDS
	},
	[BG_PLAN_INSERT_EVENT] = {
		"INSERT INTO %1$s.bidguard_events"
		" (event_id, occurred_at, kind, bid_id, trade_id, bot_id,"
		"  marketplace_id, posting_id, old_status, new_status, detail)"
		" VALUES (COALESCE($1, %1$s.bidguard_uuid_v7()),"
		"  COALESCE($2, pg_catalog.clock_timestamp()),"
		"  $3, $4, $5, $6, $7, $8, $9, $10, $11)"
		" ON CONFLICT (event_id) DO NOTHING",
		11, {UUIDOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, INT8OID,
			 TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID},
		BG_TABLE_NONE
	},
	[BG_PLAN_INSERT_TRADE] = {
		"INSERT INTO %1$s.bidguard_trades%2$s AS t (bot_id, trade_data, created_at, cooldown)"
		" VALUES ($1, $2, $3, $4)"
		" RETURNING t.trade_id, t.atomic_event_id",
		4, {INT8OID, JSONBOID, TIMESTAMPTZOID, INTERVALOID},
		BG_TABLE_TRADES,
		"INSERT INTO %1$s.bidguard_trades%2$s AS t"
		" (trade_id, bot_id, trade_data, created_at, cooldown)"
		" VALUES (pg_catalog.nextval(%3$s::pg_catalog.regclass), $1, $2, $3, $4)"
		" RETURNING t.trade_id, t.atomic_event_id",
		"bidguard_trades_trade_id_seq"
	},
	[BG_PLAN_UPSERT_BOT] = {
		"INSERT INTO %1$s.bidguard_bots%2$s AS b (bot_id, cooldown) VALUES ($1, $2)"
		" ON CONFLICT (bot_id) DO UPDATE SET cooldown = EXCLUDED.cooldown,"
		" updated_at = pg_catalog.clock_timestamp()"
		" WHERE b.cooldown IS DISTINCT FROM EXCLUDED.cooldown",
		2, {INT8OID, INTERVALOID},
		BG_TABLE_BOTS
	},
	[BG_PLAN_LOCK_TRADE] = {
		"SELECT bot_id, status, created_at FROM %1$s.bidguard_trades%2$s"
		" WHERE trade_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
		1, {INT8OID},
		BG_TABLE_TRADES
	},
	[BG_PLAN_TRADE_EXISTS] = {
		"SELECT 1 FROM %1$s.bidguard_trades%2$s"
		" WHERE trade_id OPERATOR(pg_catalog.=) $1",
		1, {INT8OID},
		BG_TABLE_TRADES
	},
	[BG_PLAN_UPDATE_TRADE] = {
		"UPDATE %1$s.bidguard_trades%2$s SET status = $2, filled_at = $3,"
		" status_reason = $4"
		" WHERE trade_id OPERATOR(pg_catalog.=) $1",
		4, {INT8OID, TEXTOID, TIMESTAMPTZOID, TEXTOID},
		BG_TABLE_TRADES
	},
	/* rate limits (rate_limit.c): the window is (at, now] */
	[BG_PLAN_RATE_WINDOW] = {
		"SELECT COALESCE(pg_catalog.sum(cost), 0)::pg_catalog.int8, pg_catalog.count(*),"
		" pg_catalog.max(at)"
		" FROM %1$s.bidguard_rate_events"
		" WHERE key OPERATOR(pg_catalog.=) $1 AND at OPERATOR(pg_catalog.>) $2",
		2, {TEXTOID, TIMESTAMPTZOID}, BG_TABLE_NONE
	},
	[BG_PLAN_RATE_UNITS] = {
		"SELECT at, cost FROM %1$s.bidguard_rate_events"
		" WHERE key OPERATOR(pg_catalog.=) $1 AND at OPERATOR(pg_catalog.>) $2 ORDER BY at",
		2, {TEXTOID, TIMESTAMPTZOID}, BG_TABLE_NONE
	},
	[BG_PLAN_RATE_INSERT] = {
		"INSERT INTO %1$s.bidguard_rate_events (key, at, cost, expires_at) VALUES ($1, $2, $3, $4)",
		4, {TEXTOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID}, BG_TABLE_NONE
	},
	[BG_PLAN_RATE_PRUNE_KEY] = {
		"DELETE FROM %1$s.bidguard_rate_events"
		" WHERE key OPERATOR(pg_catalog.=) $1 AND at OPERATOR(pg_catalog.<=) $2"
		" AND expires_at OPERATOR(pg_catalog.<=) $3",
		3, {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}, BG_TABLE_NONE
	},
	[BG_PLAN_RATE_CONFIG] = {
		"SELECT max_count, per FROM %1$s.bidguard_rate_limits"
		" WHERE pg_catalog.starts_with($1, key_prefix)"
		" ORDER BY pg_catalog.length(key_prefix) DESC LIMIT 1",
		1, {TEXTOID}, BG_TABLE_NONE
	},
	[BG_PLAN_RATE_PRUNE] = {
		"DELETE FROM %1$s.bidguard_rate_events WHERE expires_at OPERATOR(pg_catalog.<=) $1",
		1, {TIMESTAMPTZOID}, BG_TABLE_NONE
	},
};

/* One cache entry per extension schema this backend has seen. */
typedef struct BidguardSchemaCache
{
	Oid			nspid;
	char	   *nspname;		/* as it was when the plans were made */
	bool		retired;		/* schema renamed or dropped: don't use */
	Oid			events_relid;	/* InvalidOid until looked up */
	Oid			events_owner;
	BidguardTradeRelids trade;	/* trade.trades InvalidOid until looked up */
	SPIPlanPtr	plans[BG_NUM_PLANS];
	HTAB	   *shard_plans;	/* on Citus shards; NULL until one is needed */
	struct BidguardSchemaCache *next;
} BidguardSchemaCache;

static BidguardSchemaCache *schema_caches = NULL;
static bool callbacks_registered = false;
static bool namespaces_changed = false;

static void
bidguard_namespace_callback(Datum arg pg_attribute_unused(),
							int cacheid pg_attribute_unused(),
							uint32 hashvalue pg_attribute_unused())
{
	namespaces_changed = true;
}

static void
bidguard_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	BidguardSchemaCache *c;

	for (c = schema_caches; c != NULL; c = c->next)
	{
		if (relid == InvalidOid || relid == c->events_relid)
			c->events_relid = InvalidOid;
		if (relid == InvalidOid || relid == c->trade.bots ||
			relid == c->trade.bots_pkey || relid == c->trade.trades ||
			relid == c->trade.cooldown_idx)
			c->trade.trades = InvalidOid;
	}
}

/*
 * Retire the entries whose schema no longer has the name the plans were
 * made with.  Their plans are not freed: one may be running further up the
 * stack.
 */
static void
bidguard_check_namespaces(void)
{
	BidguardSchemaCache *c;

	namespaces_changed = false;
	for (c = schema_caches; c != NULL; c = c->next)
	{
		char	   *name;

		if (c->retired)
			continue;
		name = get_namespace_name(c->nspid);
		if (name == NULL || strcmp(name, c->nspname) != 0)
			c->retired = true;
	}
}

static BidguardSchemaCache *
bidguard_schema_cache(Oid nspid)
{
	BidguardSchemaCache *c;
	char	   *name;

	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID,
									  bidguard_namespace_callback, (Datum) 0);
		CacheRegisterRelcacheCallback(bidguard_relcache_callback, (Datum) 0);
		callbacks_registered = true;
	}
	if (namespaces_changed)
		bidguard_check_namespaces();

	for (c = schema_caches; c != NULL; c = c->next)
	{
		if (c->nspid == nspid && !c->retired)
			return c;
	}

	name = get_namespace_name(nspid);
	if (name == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nspid);

	c = MemoryContextAllocZero(TopMemoryContext, sizeof(BidguardSchemaCache));
	c->nspid = nspid;
	c->nspname = MemoryContextStrdup(TopMemoryContext, name);
	c->next = schema_caches;
	schema_caches = c;
	return c;
}

/*
 * bidguard_call_state
 *		The call site's state; its nspid is the extension's schema, that of
 *		the calling C function itself.
 *
 * Looked up once per FmgrInfo (one per call site) and kept in fn_extra.
 */
BidguardCallState *
bidguard_call_state(FunctionCallInfo fcinfo)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;

	if (flinfo->fn_extra == NULL)
	{
		BidguardCallState *state;

		state = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(BidguardCallState));
		state->nspid = get_func_namespace(flinfo->fn_oid);
		if (!OidIsValid(state->nspid))
			elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
		flinfo->fn_extra = state;
	}
	return (BidguardCallState *) flinfo->fn_extra;
}

/* Prepare and keep "fmt" (a plan_defs SQL) for table suffix "suffix". */
static SPIPlanPtr
bidguard_prepare(BidguardSchemaCache *c, const char *fmt, const char *suffix,
				 const BidguardPlanDef *def)
{
	const char *qschema = quote_identifier(c->nspname);
	char	   *seq = def->shard_seq == NULL ? "NULL" :
		quote_literal_cstr(psprintf("%s.%s", qschema, def->shard_seq));
	char	   *sql = psprintf(fmt, qschema, suffix, seq);
	SPIPlanPtr	plan;

	plan = SPI_prepare(sql, def->nargs, (Oid *) def->argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	pfree(sql);
	return plan;
}

/* The kept plans on Citus shards, by (plan, shard), per schema. */
typedef struct BidguardShardPlanKey
{
	int64		shard;
	int			id;
} BidguardShardPlanKey;

typedef struct BidguardShardPlan
{
	BidguardShardPlanKey key;
	SPIPlanPtr	plan;
} BidguardShardPlan;

static SPIPlanPtr
bidguard_shard_plan(BidguardSchemaCache *c, const BidguardPlanDef *def,
					BidguardPlanId id, int64 shard)
{
	BidguardShardPlanKey key;
	BidguardShardPlan *entry;
	bool		found;

	if (c->shard_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(BidguardShardPlanKey);
		ctl.entrysize = sizeof(BidguardShardPlan);
		ctl.hcxt = TopMemoryContext;
		c->shard_plans = hash_create("bidguard shard plans", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.shard = shard;
	key.id = (int) id;
	entry = hash_search(c->shard_plans, &key, HASH_ENTER, &found);
	if (!found)
		entry->plan = NULL;
	if (entry->plan == NULL)
	{
		char		suffix[32];

		snprintf(suffix, sizeof(suffix), "_%lld", (long long) shard);
		entry->plan = bidguard_prepare(c, def->shard_sql ? def->shard_sql : def->sql,
									   suffix, def);
	}
	return entry->plan;
}

/*
 * bidguard_plan
 *		The kept SPI plan of statement "id" for the extension in "nspid".
 *
 * The caller must be connected to SPI.
 */
SPIPlanPtr
bidguard_plan(Oid nspid, BidguardPlanId id)
{
	BidguardSchemaCache *c = bidguard_schema_cache(nspid);
	const BidguardPlanDef *def = &plan_defs[id];
	int64		shard = bidguard_placed_shard(nspid, def->table);

	if (shard != 0)
		return bidguard_shard_plan(c, def, id, shard);
	if (c->plans[id] == NULL)
		c->plans[id] = bidguard_prepare(c, def->sql, "", def);
	return c->plans[id];
}

/*
 * bidguard_events_owner
 *		The owner of bidguard_events, as whom the audit trigger writes.
 */
Oid
bidguard_events_owner(Oid nspid)
{
	BidguardSchemaCache *c = bidguard_schema_cache(nspid);

	if (!OidIsValid(c->events_relid))
	{
		Oid			relid = get_relname_relid("bidguard_events", nspid);
		HeapTuple	tuple;

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"%s.bidguard_events\" does not exist",
							c->nspname)));
		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for relation %u", relid);
		c->events_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
		c->events_relid = relid;
	}
	return c->events_owner;
}

/*
 * bidguard_trade_relids
 *		The relations and columns the trade decision reads directly, looked
 *		up once per backend and schema, and again after a relcache
 *		invalidation of any of them (a dropped and re-created extension, an
 *		ALTER TABLE, an ANALYZE); on Citus, those of the shards the caller
 *		placed bidguard_bots and bidguard_trades on.  Returned by value: opening one of the
 *		relations accepts invalidation messages, whose callback clears the
 *		cached copy, so a caller must not keep a pointer into it.
 */
static BidguardTradeRelids
bidguard_lookup_trade_relids(Oid nspid, int64 bots_shard, int64 trades_shard)
{
	BidguardTradeRelids t;

	t.bots = bidguard_placed_relid(nspid, "bidguard_bots", bots_shard);
	t.bots_pkey = bidguard_placed_relid(nspid, "bidguard_bots_pkey", bots_shard);
	t.trades = bidguard_placed_relid(nspid, "bidguard_trades", trades_shard);
	t.cooldown_idx = bidguard_placed_relid(nspid, "bidguard_trades_cooldown_idx", trades_shard);
	t.bot_cooldown = get_attnum(t.bots, "cooldown");
	t.trade_id = get_attnum(t.trades, "trade_id");
	t.created_at = get_attnum(t.trades, "created_at");
	t.filled_at = get_attnum(t.trades, "filled_at");
	if (t.bot_cooldown <= 0 || t.trade_id <= 0 || t.created_at <= 0 || t.filled_at <= 0)
		elog(ERROR, "bidguard: a column of the extension's tables is missing in schema \"%s\"",
			 get_namespace_name(nspid));
	return t;
}

BidguardTradeRelids
bidguard_trade_relids(Oid nspid)
{
	BidguardSchemaCache *c = bidguard_schema_cache(nspid);
	int64		bots_shard = bidguard_placed_shard(nspid, BG_TABLE_BOTS);
	int64		trades_shard = bidguard_placed_shard(nspid, BG_TABLE_TRADES);

	/* Citus shards: looked up each time, through the syscache */
	if (bots_shard != 0 || trades_shard != 0)
		return bidguard_lookup_trade_relids(nspid, bots_shard, trades_shard);
	if (!OidIsValid(c->trade.trades))
		c->trade = bidguard_lookup_trade_relids(nspid, 0, 0);
	return c->trade;
}

/*
 * bidguard_as_events_owner
 *		Switch to the owner of bidguard_events in a security-restricted
 *		operation, the way ri_triggers.c runs its checks; the caller restores
 *		the saved user with SetUserIdAndSecContext().
 */
void
bidguard_as_events_owner(Oid nspid, Oid *save_userid, int *save_sec_context)
{
	Oid			owner = bidguard_events_owner(nspid);

	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(owner, *save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * bidguard_spi_check
 *		An SPI call's result code must be the expected one; anything else is
 *		a bug, not a user error.
 */
void
bidguard_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "bidguard: %s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * bidguard_column
 *		A trigger's column number by name: 42703 if the table lacks it (a
 *		user who attached the trigger elsewhere, or altered the table).
 */
int
bidguard_column(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("bidguard trigger on relation \"%s\" needs column \"%s\"",
						RelationGetRelationName(rel), name),
				 errhint("bidguard's trigger functions serve bidguard's own tables.")));
	return attnum;
}

/*
 * bidguard_trigger_misuse
 *		A trigger function fired the wrong way (users can attach them to
 *		anything): 39P01, as core's RI triggers do.
 */
void
bidguard_trigger_misuse(const char *function, const char *how)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("function \"%s\" must be fired %s", function, how)));
}

/*
 * bidguard_check_writable
 *		Refuse to start a change on a standby or in a read-only transaction,
 *		before any lock is taken (25006).
 */
void
bidguard_check_writable(const char *what)
{
	PreventCommandIfReadOnly(what);
	PreventCommandDuringRecovery(what);
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot execute %s during a parallel operation", what)));
}
