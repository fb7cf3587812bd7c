/*-------------------------------------------------------------------------
 *
 * bid_batch.c
 *	  bidguard_create_bids: bidguard_create_bid for many postings of one
 *	  marketplace in one call, one result row per input element, in input
 *	  order.
 *
 * Guarantees: those of one bidguard_create_bid call per element, made in
 * input order in the same transaction.  A posting given twice gets its bid
 * created by the first element and returned by the second (created false).
 * Either every element is answered or the call raises an error and, like any
 * error, takes back what the transaction did.
 *
 * Locking protocol
 * ----------------
 * Every input is checked before any lock is taken.  Then the posting locks
 * (bids.c, protocol 1) of all the batch's postings are taken in the order
 * of their lock keys, not in input order, and held to the end of the
 * transaction: two batches that share postings, whatever their order, take
 * the shared ones in the same order and cannot deadlock on each other.  (A
 * batch can still deadlock with a transaction that took posting locks one
 * call at a time in another order; the deadlock detector ends one, 40P01.)
 * With every lock held, the bids are found or created in input order, with
 * bids.c's row and index rules.  On Citus every posting is placed first: the
 * batch runs only on a node that holds all of them (0A000 otherwise, before
 * any lock).
 *
 * Each posting lock is an entry in the shared lock table until the
 * transaction ends, so a batch of N distinct postings needs N of the
 * max_locks_per_transaction * max_connections entries (53200 when they run
 * out); batches of hundreds are fine, of hundreds of thousands are not.
 *
 * src/bid_batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "bidguard.h"
#include "bid_status.h"
#include "bid_write.h"
#include "bids.h"

/* One element of a batch. */
typedef struct BatchItem
{
	text	   *posting_id;
	Jsonb	   *bid_data;
	uint64		key;			/* its posting lock's key */
} BatchItem;

static int
key_cmp(const void *a, const void *b)
{
	uint64		ka = **(const uint64 *const *) a;
	uint64		kb = **(const uint64 *const *) b;

	return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/* The elements of a one-dimensional array argument (22023 for more dims). */
static int
batch_elements(ArrayType *arr, Oid elemtype, const char *argname, Datum **elems,
			   bool **nulls)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", argname)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	return n;
}

/*
 * bidguard_create_bids(marketplace_id text, posting_ids text[],
 *						bid_data jsonb[] DEFAULT NULL)
 * RETURNS TABLE (ordinality integer, posting_id text, bid_id bigint,
 *				  created boolean, status text, atomic_event_id uuid)
 *
 * bid_data, when given, has one object per posting (its element i goes with
 * posting_ids[i]); NULL means '{}' for every posting.
 */
PG_FUNCTION_INFO_V1(bidguard_create_bids);
Datum
bidguard_create_bids(PG_FUNCTION_ARGS)
{
	Oid			nspid = bidguard_schema(fcinfo);
	text	   *marketplace_id = bidguard_arg_id(fcinfo, 0, "marketplace_id");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *pelems;
	bool	   *pnulls;
	Datum	   *delems = NULL;
	bool	   *dnulls = NULL;
	int			n,
				i;
	BatchItem  *items;
	uint64	  **order;
	Jsonb	   *empty = NULL;
	MemoryContext itemcxt,
				old;

	bidguard_arg_not_null(fcinfo, 1, "posting_ids");
	n = batch_elements(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, "posting_ids", &pelems, &pnulls);
	if (!PG_ARGISNULL(2))
	{
		int			nd = batch_elements(PG_GETARG_ARRAYTYPE_P(2), JSONBOID, "bid_data",
										&delems, &dnulls);

		if (nd != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("bid_data must have as many elements as posting_ids"),
					 errdetail("posting_ids has %d, bid_data has %d.", n, nd)));
	}
	else
		empty = bidguard_empty_object();

	/* Every input is checked before any lock is taken. */
	items = palloc(sizeof(BatchItem) * Max(n, 1));
	order = palloc(sizeof(uint64 *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		char		name[32];

		snprintf(name, sizeof(name), "posting_ids[%d]", i + 1);
		if (pnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", name)));
		items[i].posting_id = bidguard_check_id(DatumGetTextPP(pelems[i]), name);
		snprintf(name, sizeof(name), "bid_data[%d]", i + 1);
		if (delems == NULL)
			items[i].bid_data = empty;
		else if (dnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", name)));
		else
			items[i].bid_data = bidguard_check_object(DatumGetJsonbP(delems[i]), name);
		items[i].key = bidguard_posting_key(marketplace_id, items[i].posting_id);
		order[i] = &items[i].key;
	}
	bidguard_check_writable("bidguard_create_bids()");

	/* On Citus: every posting on this node, or 0A000 before any lock. */
	for (i = 0; i < n; i++)
	{
		BidguardPlacement saved;

		bidguard_place_posting(nspid, items[i].posting_id, NULL, &saved);
		bidguard_placement_restore(&saved);
	}

	/* The posting locks, in the order of their keys. */
	qsort(order, n, sizeof(uint64 *), key_cmp);
	for (i = 0; i < n; i++)
		if (i == 0 || *order[i] != *order[i - 1])
			bidguard_lock_posting(*order[i]);

	bidguard_init_srf(fcinfo);
	itemcxt = AllocSetContextCreate(CurrentMemoryContext, "bidguard_create_bids element",
									ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < n; i++)
	{
		BidRow		bid;
		bool		created;
		BidguardPlacement saved;
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(itemcxt);
		bidguard_place_posting(nspid, items[i].posting_id, NULL, &saved);
		created = bid_create(nspid, marketplace_id, items[i].posting_id,
							 items[i].bid_data, &bid);
		bidguard_placement_restore(&saved);
		if (!created)
			bidguard_count(BG_STAT_BIDS_DEDUPLICATED);

		values[0] = Int32GetDatum(i + 1);
		values[1] = PointerGetDatum(items[i].posting_id);
		values[2] = Int64GetDatum(bid.bid_id);
		values[3] = BoolGetDatum(created);
		values[4] = CStringGetTextDatum(bid_status_names[bid.status]);
		values[5] = UUIDPGetDatum(&bid.atomic_event_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(itemcxt);
	}
	MemoryContextDelete(itemcxt);
	return (Datum) 0;
}
