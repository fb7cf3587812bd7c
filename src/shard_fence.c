/*-------------------------------------------------------------------------
 *
 * shard_fence.c
 *	  The shard fence of a PL/Proxy deployment (extension bidguard_shard):
 *	  a shard refuses every row whose key routes to another shard, whichever
 *	  path writes it (a proxied call, a direct call, a plain INSERT).
 *
 * A shard holds some partitions of partition_count (a power of 2, as
 * PL/Proxy requires), as bidguard_shard_config says.  A row belongs to
 * partition  bidguard_shard_key(key) & (partition_count - 1)  where the key
 * is the posting (marketplace_id, posting_id) of a bid or an event about
 * one, and the bot_id of a bot, a trade, or an event about them.  Ids say
 * where they were allocated: bidguard_shard_configure() moves the shard's
 * identity sequences into the id range of its first partition,
 * [p << 48, (p + 1) << 48), so that a proxy routes bidguard_fill_trade(id)
 * and its kind with  id >> 48.  A bid or trade whose id lies outside the
 * shard's partitions is refused too: it could never be found by id.
 *
 * Restored rows (restore.c) pass: they come from this shard's own dump,
 * and bidguard_shard_config's row may be loaded after them.
 *
 * Locking protocol
 * ----------------
 * None of its own.  The configuration is read once per transaction (SPI,
 * a one-row table) and cached until the transaction ends; the fence runs as
 * a BEFORE trigger named so that it fires before bidguard's own triggers,
 * so a refused row never waits for a posting's or a bot's lock.
 *
 * src/shard_fence.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bidguard.h"

#define SHARD_MAX_PARTITIONS	32768
#define SHARD_ID_SHIFT			48

/* The configuration, as read in this transaction. */
static struct
{
	bool		valid;
	bool		configured;
	int32		partition_count;
	int			npartitions;
	bool		holds[SHARD_MAX_PARTITIONS];
	char		partitions_text[256];	/* for messages: "{0,2}" */
} fence_config;

static bool xact_callback_registered = false;

static void
fence_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		fence_config.valid = false;
}

/*
 * fence_load_config
 *		Read bidguard_shard_config (in the schema of the fenced table) once
 *		per transaction.
 */
static void
fence_load_config(Oid nspid)
{
	char	   *sql;
	int			rc;

	if (fence_config.valid)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(fence_xact_callback, NULL);
		xact_callback_registered = true;
	}

	sql = psprintf("SELECT partition_count, partitions, partitions::pg_catalog.text"
				   " FROM %s.bidguard_shard_config",
				   quote_identifier(get_namespace_name(nspid)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute(sql, true, 2);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading bidguard_shard_config failed: %s",
			 SPI_result_code_string(rc));

	memset(fence_config.holds, 0, sizeof(fence_config.holds));
	fence_config.configured = false;
	fence_config.npartitions = 0;
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		ArrayType  *arr;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		char	   *text;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		fence_config.partition_count = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull && fence_config.partition_count >= 1 &&
			fence_config.partition_count <= SHARD_MAX_PARTITIONS)
		{
			arr = DatumGetArrayTypeP(d);
			deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT,
							  &elems, &nulls, &n);
			for (int i = 0; i < n; i++)
			{
				int32		p = nulls[i] ? -1 : DatumGetInt32(elems[i]);

				if (p >= 0 && p < fence_config.partition_count &&
					!fence_config.holds[p])
				{
					fence_config.holds[p] = true;
					fence_config.npartitions++;
				}
			}
		}
		text = SPI_getvalue(tup, desc, 3);
		strlcpy(fence_config.partitions_text, text ? text : "{}",
				sizeof(fence_config.partitions_text));
		/* the table's CHECKs make this true; an emptied one fences all */
		fence_config.configured = fence_config.npartitions > 0;
	}
	SPI_finish();
	fence_config.valid = true;
}

static int32
fence_partition_of(int32 shard_key)
{
	return (int32) ((uint32) shard_key & (uint32) (fence_config.partition_count - 1));
}

static void
fence_refuse_key(Relation rel, const char *what, int32 partition)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("%s belongs to partition %d of %d, not to this shard",
					what, partition, fence_config.partition_count),
			 errdetail("This shard holds partitions %s.", fence_config.partitions_text),
			 errhint("Make the call through the proxy (extension bidguard_proxy), or on the shard that holds partition %d.",
					 partition),
			 errtableconstraint(rel, "bidguard_shard_fence")));
}

/* Is the value of column attname of tuple null?  (fetches it into *value) */
static bool
fence_getattr(HeapTuple tuple, TupleDesc desc, const char *attname, Datum *value)
{
	int			attnum = SPI_fnumber(desc, attname);
	bool		isnull;

	if (attnum <= 0)
		elog(ERROR, "bidguard_shard_fence: table has no column \"%s\"", attname);
	*value = heap_getattr(tuple, attnum, desc, &isnull);
	return isnull;
}

static void
fence_check_id(Relation rel, HeapTuple tuple, const char *idcol)
{
	Datum		d;
	int64		id;
	int64		p;

	if (fence_getattr(tuple, RelationGetDescr(rel), idcol, &d))
		return;					/* NOT NULL will refuse it */
	id = DatumGetInt64(d);
	p = id >> SHARD_ID_SHIFT;
	if (p < 0 || p >= fence_config.partition_count || !fence_config.holds[p])
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s %lld was not allocated by this shard", idcol, (long long) id),
				 errdetail("Ids of partition p lie in [p * 2^48, (p + 1) * 2^48); this shard holds partitions %s.",
						   fence_config.partitions_text),
				 errhint("Leave %s out and let the shard allocate it; if this shard's sequences were reset, run bidguard_shard_configure() again.",
						 idcol),
				 errtableconstraint(rel, "bidguard_shard_fence")));
}

/*
 * bidguard_shard_fence() RETURNS trigger
 *		BEFORE INSERT OR UPDATE OF <key columns> FOR EACH ROW, with one
 *		argument: 'bid', 'trade', 'bot' or 'event'.
 */
PG_FUNCTION_INFO_V1(bidguard_shard_fence);
Datum
bidguard_shard_fence(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	const char *kind;
	Datum		a;
	Datum		b;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bidguard_shard_fence must be a BEFORE INSERT OR UPDATE row trigger with one argument")));

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	kind = trigdata->tg_trigger->tgargs[0];

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && bidguard_restoring(rel))
		return PointerGetDatum(tuple);

	fence_load_config(RelationGetNamespace(rel));
	if (!fence_config.configured)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this shard is not configured"),
				 errdetail("bidguard_shard_config has no partitions, so the fence cannot tell which rows belong here."),
				 errhint("Run SELECT bidguard_shard_configure(partition_count, partitions) on this shard.")));

	if (strcmp(kind, "bid") == 0 ||
		(strcmp(kind, "event") == 0 &&
		 !fence_getattr(tuple, desc, "marketplace_id", &a) &&
		 !fence_getattr(tuple, desc, "posting_id", &b)))
	{
		int32		partition;

		if (fence_getattr(tuple, desc, "marketplace_id", &a) ||
			fence_getattr(tuple, desc, "posting_id", &b))
			return PointerGetDatum(tuple);	/* NOT NULL will refuse it */
		partition = fence_partition_of(bidguard_posting_shard_key(DatumGetTextPP(a), DatumGetTextPP(b)));
		if (!fence_config.holds[partition])
			fence_refuse_key(rel,
							 psprintf("posting (%s, %s)",
									  quote_literal_cstr(TextDatumGetCString(a)),
									  quote_literal_cstr(TextDatumGetCString(b))),
							 partition);
		if (strcmp(kind, "bid") == 0)
			fence_check_id(rel, tuple, "bid_id");
	}
	else if (strcmp(kind, "trade") == 0 || strcmp(kind, "bot") == 0 ||
			 strcmp(kind, "event") == 0)
	{
		int32		partition;
		int64		bot_id;

		if (fence_getattr(tuple, desc, "bot_id", &a))
			return PointerGetDatum(tuple);	/* NOT NULL will refuse it, or an event about no bot */
		bot_id = DatumGetInt64(a);
		partition = fence_partition_of(bidguard_bot_shard_key(bot_id));
		if (!fence_config.holds[partition])
			fence_refuse_key(rel, psprintf("bot %lld", (long long) bot_id), partition);
		if (strcmp(kind, "trade") == 0)
			fence_check_id(rel, tuple, "trade_id");
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bidguard_shard_fence: unknown kind \"%s\"", kind)));

	return PointerGetDatum(tuple);
}
