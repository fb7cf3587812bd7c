/*-------------------------------------------------------------------------
 *
 * bid_status.c
 *	  The bid status lifecycle: the statuses, the allowed transitions, and
 *	  bidguard_bids' BEFORE trigger, which enforces them (and the columns a
 *	  bid keeps for life) for plain SQL and bidguard's functions alike.
 *
 * A bid is active while it is 'pending' or 'submitted'.  Transitions:
 *
 *	 pending   -> submitted | withdrawn | failed | expired
 *	 submitted -> won | lost | withdrawn | expired
 *
 * and every other status is terminal.  Setting the status a bid already has
 * is a no-op.
 *
 * Locking protocol: none of its own.  The trigger runs inside the UPDATE,
 * which holds the row lock; under READ COMMITTED an UPDATE that waited for a
 * concurrent one re-reads the newest row version, so the trigger always
 * judges the current status: no bid leaves a terminal status.  The posting
 * lock that orders the functions is bids.c's.
 *
 * src/bid_status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "bidguard.h"
#include "bid_status.h"

const char *const bid_status_names[BID_NUM_STATUSES] = {
	"pending", "submitted", "won", "lost", "withdrawn", "expired", "failed"
};

#define BIT(s) (1 << (s))

/* Allowed targets of each status; zero for a terminal one. */
static const int bid_transitions[BID_NUM_STATUSES] = {
	[BID_PENDING] = BIT(BID_SUBMITTED) | BIT(BID_WITHDRAWN) | BIT(BID_FAILED) | BIT(BID_EXPIRED),
	[BID_SUBMITTED] = BIT(BID_WON) | BIT(BID_LOST) | BIT(BID_WITHDRAWN) | BIT(BID_EXPIRED),
};

/* (bid_status.h) */
bool		bid_creating = false;

bool
bid_transition_allowed(BidStatus from, BidStatus to)
{
	return (bid_transitions[from] & BIT(to)) != 0;
}

bool
bid_status_is_terminal(BidStatus s)
{
	return bid_transitions[s] == 0;
}

BidStatus
bid_status_from_bytes(const char *s, int len)
{
	int			i;

	for (i = 0; i < BID_NUM_STATUSES; i++)
	{
		if ((int) strlen(bid_status_names[i]) == len &&
			memcmp(bid_status_names[i], s, len) == 0)
			return (BidStatus) i;
	}
	return BID_UNKNOWN;
}

BidStatus
bid_status_from_datum(Datum d)
{
	text	   *t = DatumGetTextPP(d);

	return bid_status_from_bytes(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* The allowed targets of "from", as "a, b or c", for messages. */
static char *
bid_transition_targets(BidStatus from)
{
	StringInfoData buf;
	int			i,
				n = 0,
				total = 0;

	for (i = 0; i < BID_NUM_STATUSES; i++)
		if (bid_transitions[from] & BIT(i))
			total++;
	initStringInfo(&buf);
	for (i = 0; i < BID_NUM_STATUSES; i++)
	{
		if (!(bid_transitions[from] & BIT(i)))
			continue;
		if (n > 0)
			appendStringInfoString(&buf, n == total - 1 ? " or " : ", ");
		appendStringInfo(&buf, "\"%s\"", bid_status_names[i]);
		n++;
	}
	return buf.data;
}

/*
 * bid_raise_bad_transition
 *		23514 with the constraint name bidguard_bid_transition, for the
 *		trigger (plain UPDATE) and the functions alike.  The functions judge
 *		the transition themselves before their UPDATE, so that their callers
 *		see the error without our internal statement in its context.
 */
void
bid_raise_bad_transition(int64 bid_id, BidStatus from, BidStatus to,
						 const char *nspname, const char *relname)
{
	bidguard_count(BG_STAT_TRANSITIONS_REJECTED);
	if (bid_transitions[from] == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("bid %lld cannot move from status \"%s\" to \"%s\"",
						(long long) bid_id, bid_status_names[from],
						bid_status_names[to]),
				 errdetail("Status \"%s\" is terminal.", bid_status_names[from]),
				 err_generic_string(PG_DIAG_SCHEMA_NAME, nspname),
				 err_generic_string(PG_DIAG_TABLE_NAME, relname),
				 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "bidguard_bid_transition")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("bid %lld cannot move from status \"%s\" to \"%s\"",
						(long long) bid_id, bid_status_names[from],
						bid_status_names[to]),
				 errdetail("A \"%s\" bid can only move to %s.",
						   bid_status_names[from], bid_transition_targets(from)),
				 err_generic_string(PG_DIAG_SCHEMA_NAME, nspname),
				 err_generic_string(PG_DIAG_TABLE_NAME, relname),
				 err_generic_string(PG_DIAG_CONSTRAINT_NAME, "bidguard_bid_transition")));
}

/*
 * Column numbers of bidguard_bids the trigger needs, looked up once per
 * FmgrInfo (that is, per statement).
 */
typedef struct BidColumns
{
	int			bid_id;
	int			status;
	int			atomic_event_id;
	int			created_at;
	int			updated_at;
	int			posting_id;
} BidColumns;

static void
raise_immutable(Relation rel, int64 bid_id, const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("%s of bid %lld cannot be changed", column, (long long) bid_id),
			 errdetail("A bid keeps its bid_id, atomic_event_id and created_at for life: its audit trail refers to them."),
			 errtableconstraint(rel, "bidguard_bids_immutable")));
}

/*
 * bidguard_bids_transition_trigger()
 *
 * BEFORE INSERT OR UPDATE FOR EACH ROW on bidguard_bids.
 *
 * UPDATE: rejects a status change that is not an allowed transition (23514,
 * constraint bidguard_bid_transition) and a change of bid_id,
 * atomic_event_id or created_at (23514, bidguard_bids_immutable), and
 * stamps updated_at with the server clock.  Under READ COMMITTED OLD is the
 * newest committed version of the row.
 *
 * INSERT: stamps created_at and updated_at with the server clock, unless the
 * row is a bid being restored (restore.c), which keeps its own.  On Citus, a
 * row written into a shard that does not hold its posting is refused
 * (23514, bidguard_citus_fence; placement.c).
 *
 * Takes no locks of its own: the UPDATE holds the row lock.
 */
PG_FUNCTION_INFO_V1(bidguard_bids_transition_trigger);
Datum
bidguard_bids_transition_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	BidguardCallState *state;
	BidColumns *cols;
	HeapTuple	oldtuple,
				newtuple;
	bool		isnull;
	int			attnums[2];
	Datum		now[2];
	bool		nulls[2] = {false, false};

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		bidguard_trigger_misuse("bidguard_bids_transition_trigger",
								"BEFORE INSERT OR UPDATE FOR EACH ROW");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);

	state = bidguard_call_state(fcinfo);
	cols = (BidColumns *) state->columns;
	if (cols == NULL)
	{
		cols = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(BidColumns));
		cols->bid_id = bidguard_column(rel, "bid_id");
		cols->status = bidguard_column(rel, "status");
		cols->atomic_event_id = bidguard_column(rel, "atomic_event_id");
		cols->created_at = bidguard_column(rel, "created_at");
		cols->updated_at = bidguard_column(rel, "updated_at");
		cols->posting_id = bidguard_column(rel, "posting_id");
		state->columns = cols;
	}

	now[0] = now[1] = TimestampTzGetDatum(GetCurrentTimestamp());

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		newtuple = trigdata->tg_trigtuple;
		if (!bid_creating)
		{
			/* On Citus: the posting's own shard, or 23514 (placement.c) */
			Datum		posting = heap_getattr(newtuple, cols->posting_id, desc, &isnull);
			BidguardPlacement saved;

			if (!isnull)
			{
				bidguard_place_posting(state->nspid, DatumGetTextPP(posting), rel, &saved);
				bidguard_placement_restore(&saved);
			}
		}
		if (bid_creating || bidguard_restoring(rel))
			return PointerGetDatum(newtuple);
		attnums[0] = cols->created_at;
		attnums[1] = cols->updated_at;
		return PointerGetDatum(heap_modify_tuple_by_cols(newtuple, desc, 2, attnums,
														 now, nulls));
	}

	oldtuple = trigdata->tg_trigtuple;
	newtuple = trigdata->tg_newtuple;

	{
		Datum		oldd = heap_getattr(oldtuple, cols->status, desc, &isnull);
		BidStatus	from = isnull ? BID_UNKNOWN : bid_status_from_datum(oldd);
		Datum		newd = heap_getattr(newtuple, cols->status, desc, &isnull);
		BidStatus	to = isnull ? BID_UNKNOWN : bid_status_from_datum(newd);
		int64		bid_id = DatumGetInt64(heap_getattr(oldtuple, cols->bid_id,
														desc, &isnull));
		const char *immutable_names[3] = {"bid_id", "atomic_event_id", "created_at"};
		int			immutable_cols[3];
		int			i;

		immutable_cols[0] = cols->bid_id;
		immutable_cols[1] = cols->atomic_event_id;
		immutable_cols[2] = cols->created_at;
		for (i = 0; i < 3; i++)
		{
			int			attnum = immutable_cols[i];
			Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
			bool		n1,
						n2;
			Datum		d1 = heap_getattr(oldtuple, attnum, desc, &n1);
			Datum		d2 = heap_getattr(newtuple, attnum, desc, &n2);

			if (n1 != n2 ||
				(!n1 && !datumIsEqual(d1, d2, att->attbyval, att->attlen)))
				raise_immutable(rel, bid_id, immutable_names[i]);
		}

		/*
		 * An unknown target status is left to the table's CHECK constraint,
		 * which names it.
		 */
		if (from != to && from != BID_UNKNOWN && to != BID_UNKNOWN &&
			!bid_transition_allowed(from, to))
			bid_raise_bad_transition(bid_id, from, to,
									 get_namespace_name(RelationGetNamespace(rel)),
									 RelationGetRelationName(rel));
	}

	attnums[0] = cols->updated_at;
	return PointerGetDatum(heap_modify_tuple_by_cols(newtuple, desc, 1, attnums,
													 now, nulls));
}
