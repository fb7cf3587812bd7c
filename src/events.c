/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The audit trail: one bidguard_events row per state change, written by
 *	  an AFTER ROW trigger in the same transaction as the change.
 *
 * Because the trail is written by a trigger, it records every path that
 * changes a bid: bidguard's functions, plain INSERT/UPDATE/DELETE, COPY.
 * AFTER ROW triggers do not fire for rows that ON CONFLICT DO NOTHING
 * skipped, so a bid that was never inserted leaves no event.
 *
 * The creation event's id is the row's atomic_event_id.  A row that
 * pg_restore loads (restore.c) writes no event: its events are restored
 * with bidguard_events, in whatever order pg_restore loads the two tables.
 * The creation event is inserted with ON CONFLICT (event_id) DO NOTHING, so
 * that an event already on record is never duplicated.
 *
 * The event is written as the owner of bidguard_events, in a security-
 * restricted operation, the way ri_triggers.c checks foreign keys: roles
 * that may change bids need no privilege on the audit trail, and cannot
 * forge it.
 *
 * Locks: none beyond the row and index locks of the INSERT.
 *
 * src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "bidguard.h"

/* The event columns, in the order of BG_PLAN_INSERT_EVENT's parameters. */
enum
{
	EV_EVENT_ID,
	EV_OCCURRED_AT,
	EV_KIND,
	EV_BID_ID,
	EV_TRADE_ID,
	EV_BOT_ID,
	EV_MARKETPLACE_ID,
	EV_POSTING_ID,
	EV_OLD_STATUS,
	EV_NEW_STATUS,
	EV_DETAIL,
	EV_NCOLS
};

/*
 * Column numbers of the audited table the trigger reads; per FmgrInfo.
 * For bids, key1/key2 are marketplace_id/posting_id; for trades, bot_id and
 * (unused) 0, and filled_at is read for detail.
 */
typedef struct AuditColumns
{
	bool		is_trade;
	int			id;				/* bid_id or trade_id */
	int			key1;			/* marketplace_id or bot_id */
	int			key2;			/* posting_id (bids) */
	int			status;
	int			status_reason;
	int			atomic_event_id;
	int			created_at;
	int			filled_at;		/* trades */
} AuditColumns;

static AuditColumns *
audit_columns(FunctionCallInfo fcinfo, BidguardCallState *state,
			  TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	AuditColumns *cols = (AuditColumns *) state->columns;

	if (cols != NULL)
		return cols;
	if (trigdata->tg_trigger->tgnargs != 1)
		bidguard_trigger_misuse("bidguard_audit_trigger",
								"with one argument, 'bid' or 'trade'");

	cols = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(AuditColumns));
	if (strcmp(trigdata->tg_trigger->tgargs[0], "trade") == 0)
	{
		cols->is_trade = true;
		cols->id = bidguard_column(rel, "trade_id");
		cols->key1 = bidguard_column(rel, "bot_id");
		cols->filled_at = bidguard_column(rel, "filled_at");
	}
	else if (strcmp(trigdata->tg_trigger->tgargs[0], "bid") == 0)
	{
		cols->id = bidguard_column(rel, "bid_id");
		cols->key1 = bidguard_column(rel, "marketplace_id");
		cols->key2 = bidguard_column(rel, "posting_id");
	}
	else
		bidguard_trigger_misuse("bidguard_audit_trigger",
								"with one argument, 'bid' or 'trade'");
	cols->status = bidguard_column(rel, "status");
	cols->status_reason = bidguard_column(rel, "status_reason");
	cols->atomic_event_id = bidguard_column(rel, "atomic_event_id");
	cols->created_at = bidguard_column(rel, "created_at");
	state->columns = cols;
	return cols;
}

static void
set_column(Datum *values, char *nulls, int ev, HeapTuple tuple, int attnum,
		   TupleDesc desc)
{
	bool		isnull;

	values[ev] = heap_getattr(tuple, attnum, desc, &isnull);
	nulls[ev] = isnull ? 'n' : ' ';
}

/* Byte equality of two text datums: statuses are plain ASCII words. */
static bool
text_datums_equal(Datum a, Datum b)
{
	text	   *ta = DatumGetTextPP(a);
	text	   *tb = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
}

/* Is a text datum exactly the ASCII word "word"?  No allocation. */
static bool
text_datum_is(Datum d, const char *word)
{
	text	   *t = DatumGetTextPP(d);
	int			len = strlen(word);

	return (int) VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), word, len) == 0;
}

/* {"reason": the tuple's status_reason}, or {} (no tuple, or no reason) */
static Datum
reason_detail(HeapTuple tuple, int attnum, TupleDesc desc)
{
	bool		isnull = true;
	Datum		reason = (Datum) 0;
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;
	text	   *t;

	if (tuple != NULL)
		reason = heap_getattr(tuple, attnum, desc, &isnull);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (!isnull)
	{
		t = DatumGetTextPP(reason);
		k.type = jbvString;
		k.val.string.val = "reason";
		k.val.string.len = strlen("reason");
		v.type = jbvString;
		v.val.string.val = VARDATA_ANY(t);
		v.val.string.len = VARSIZE_ANY_EXHDR(t);
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/* bidguard_events' columns, in the order of BG_PLAN_INSERT_EVENT's parameters */
static const char *const event_columns[] = {
	"event_id", "occurred_at", "kind", "bid_id", "trade_id", "bot_id",
	"marketplace_id", "posting_id", "old_status", "new_status", "detail",
	"backend_pid", NULL
};
static const BidguardDirectSpec event_spec = {
	event_columns, NULL, "bidguard_events_pkey", NULL, false
};

/*
 * bidguard_event_write
 *		Write one event (values/nulls in EV_ order, nulls 'n' or ' '; a NULL
 *		event_id or occurred_at is a new id / the clock, as the columns'
 *		defaults) as the owner of the audit trail, in a security-restricted
 *		operation.  Directly (direct.c) when bidguard_events is as bidguard
 *		made it, else through SPI.  An event id given by the caller is
 *		inserted ON CONFLICT (event_id) DO NOTHING (see the file header),
 *		unless "new_id" says the caller made it just now.
 */
void
bidguard_event_write(Oid nspid, Datum *values, char *nulls, bool new_id)
{
	Oid			save_userid;
	int			save_sec_context;
	Oid			relid = get_relname_relid("bidguard_events", nspid);
	BidguardDirect *d = NULL;

	bidguard_as_events_owner(nspid, &save_userid, &save_sec_context);
	if (OidIsValid(relid))
		d = bidguard_direct_open(nspid, relid, &event_spec, 0);
	if (d != NULL)
	{
		Datum		v[EV_NCOLS + 1];
		bool		n[EV_NCOLS + 1];
		bool		given_id = nulls[EV_EVENT_ID] != 'n';
		int			i;

		for (i = 0; i < EV_NCOLS; i++)
		{
			v[i] = values[i];
			n[i] = nulls[i] == 'n';
		}
		if (!given_id)
		{
			v[EV_EVENT_ID] = UUIDPGetDatum(bidguard_new_uuid_v7());
			n[EV_EVENT_ID] = false;
		}
		if (n[EV_OCCURRED_AT])
		{
			v[EV_OCCURRED_AT] = TimestampTzGetDatum(GetCurrentTimestamp());
			n[EV_OCCURRED_AT] = false;
		}
		v[EV_NCOLS] = Int32GetDatum(MyProcPid);
		n[EV_NCOLS] = false;
		bidguard_direct_insert(d, v, n, given_id && !new_id, NULL);
		bidguard_direct_close(d);
	}
	else
	{
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_plan(bidguard_plan(nspid, BG_PLAN_INSERT_EVENT),
							  values, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "bidguard: writing the audit event failed: %s",
				 SPI_result_code_string(rc));
		SPI_finish();
	}
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/* '{}', made once: the detail of an event without a reason, and a bid's default data */
Jsonb *
bidguard_empty_object(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty = DatumGetJsonbP(reason_detail(NULL, 0, NULL));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

/*
 * bidguard_event_bid_created / bidguard_event_trade_executed
 *		The creation event of a row that bidguard_create_bid(s) or
 *		bidguard_try_trade inserted directly (direct.c), without the audit
 *		trigger: the same event the trigger writes for it, counted the same.
 */
/* The columns every creation event has; the caller has set its row's own. */
static void
creation_event(Oid nspid, const char *kind, const char *status, pg_uuid_t *event_id,
			   TimestampTz at, Datum *values, char *nulls)
{
	values[EV_EVENT_ID] = UUIDPGetDatum(event_id);
	values[EV_OCCURRED_AT] = TimestampTzGetDatum(at);
	values[EV_KIND] = CStringGetTextDatum(kind);
	values[EV_NEW_STATUS] = CStringGetTextDatum(status);
	values[EV_DETAIL] = JsonbPGetDatum(bidguard_empty_object());
	nulls[EV_EVENT_ID] = nulls[EV_OCCURRED_AT] = nulls[EV_KIND] = ' ';
	nulls[EV_NEW_STATUS] = nulls[EV_DETAIL] = ' ';
	bidguard_event_write(nspid, values, nulls, true);
}

void
bidguard_event_bid_created(Oid nspid, int64 bid_id, text *marketplace_id,
						   text *posting_id, pg_uuid_t *event_id, TimestampTz at)
{
	Datum		values[EV_NCOLS] = {0};
	char		nulls[EV_NCOLS];

	memset(nulls, 'n', sizeof(nulls));
	values[EV_BID_ID] = Int64GetDatum(bid_id);
	values[EV_MARKETPLACE_ID] = PointerGetDatum(marketplace_id);
	values[EV_POSTING_ID] = PointerGetDatum(posting_id);
	nulls[EV_BID_ID] = nulls[EV_MARKETPLACE_ID] = nulls[EV_POSTING_ID] = ' ';
	bidguard_count(BG_STAT_BIDS_CREATED);
	creation_event(nspid, "bid_created", "pending", event_id, at, values, nulls);
}

void
bidguard_event_trade_executed(Oid nspid, int64 trade_id, int64 bot_id,
							  pg_uuid_t *event_id, TimestampTz at)
{
	Datum		values[EV_NCOLS] = {0};
	char		nulls[EV_NCOLS];

	memset(nulls, 'n', sizeof(nulls));
	values[EV_TRADE_ID] = Int64GetDatum(trade_id);
	values[EV_BOT_ID] = Int64GetDatum(bot_id);
	nulls[EV_TRADE_ID] = nulls[EV_BOT_ID] = ' ';
	bidguard_count(BG_STAT_TRADES_EXECUTED);
	creation_event(nspid, "trade_executed", "open", event_id, at, values, nulls);
}

/*
 * bidguard_audit_trigger()
 *
 * AFTER INSERT/UPDATE/DELETE FOR EACH ROW on bidguard_bids (argument 'bid')
 * and bidguard_trades ('trade').  Event kinds:
 *	 bids:	 bid_created (event_id = atomic_event_id, occurred_at = created_at),
 *			 bid_status_changed, bid_moved (marketplace or posting changed,
 *			 status not), bid_deleted;
 *	 trades: trade_executed (event_id = atomic_event_id, occurred_at =
 *			 created_at), trade_filled, trade_failed, trade_status_changed
 *			 (any other status change), trade_changed (bot, created_at or
 *			 filled_at changed, status not), trade_deleted.
 * detail carries the status_reason given with a status, if any.
 */
PG_FUNCTION_INFO_V1(bidguard_audit_trigger);
Datum
bidguard_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	BidguardCallState *state;
	TupleDesc	desc;
	AuditColumns *cols;
	HeapTuple	tuple;
	HeapTuple	oldtuple = NULL;
	Datum		values[EV_NCOLS];
	char		nulls[EV_NCOLS];
	const char *kind;
	bool		with_reason = false;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		bidguard_trigger_misuse("bidguard_audit_trigger",
								"AFTER INSERT, UPDATE or DELETE FOR EACH ROW");

	state = bidguard_call_state(fcinfo);
	desc = RelationGetDescr(trigdata->tg_relation);
	cols = audit_columns(fcinfo, state, trigdata);

	/* A restored row's events are restored with bidguard_events. */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) &&
		bidguard_restoring(trigdata->tg_relation))
		return PointerGetDatum(NULL);

	memset(values, 0, sizeof(values));
	memset(nulls, 'n', sizeof(nulls));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		tuple = trigdata->tg_trigtuple;
		kind = cols->is_trade ? "trade_executed" : "bid_created";
		with_reason = true;
		set_column(values, nulls, EV_EVENT_ID, tuple, cols->atomic_event_id, desc);
		set_column(values, nulls, EV_OCCURRED_AT, tuple, cols->created_at, desc);
		set_column(values, nulls, EV_NEW_STATUS, tuple, cols->status, desc);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		isnull1,
					isnull2;
		Datum		s1,
					s2;

		oldtuple = trigdata->tg_trigtuple;
		tuple = trigdata->tg_newtuple;
		s1 = heap_getattr(oldtuple, cols->status, desc, &isnull1);
		s2 = heap_getattr(tuple, cols->status, desc, &isnull2);
		if (!isnull1 && !isnull2 && text_datums_equal(s1, s2))
			kind = cols->is_trade ? "trade_changed" : "bid_moved";
		else
		{
			with_reason = true;
			if (!cols->is_trade)
				kind = "bid_status_changed";
			else if (!isnull2 && text_datum_is(s2, "filled"))
				kind = "trade_filled";
			else if (!isnull2 && text_datum_is(s2, "failed"))
				kind = "trade_failed";
			else
				kind = "trade_status_changed";
		}
		set_column(values, nulls, EV_OLD_STATUS, oldtuple, cols->status, desc);
		set_column(values, nulls, EV_NEW_STATUS, tuple, cols->status, desc);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		tuple = trigdata->tg_trigtuple;
		kind = cols->is_trade ? "trade_deleted" : "bid_deleted";
		set_column(values, nulls, EV_OLD_STATUS, tuple, cols->status, desc);
	}
	else
		bidguard_trigger_misuse("bidguard_audit_trigger",
								"AFTER INSERT, UPDATE or DELETE FOR EACH ROW");

	/* What every path did, for bidguard_stats. */
	if (strcmp(kind, "bid_created") == 0)
		bidguard_count(BG_STAT_BIDS_CREATED);
	else if (strcmp(kind, "trade_executed") == 0)
		bidguard_count(BG_STAT_TRADES_EXECUTED);
	else if (strcmp(kind, "bid_status_changed") == 0 && nulls[EV_NEW_STATUS] == ' ' &&
			 text_datum_is(values[EV_NEW_STATUS], "withdrawn"))
		bidguard_count(BG_STAT_BIDS_WITHDRAWN);

	values[EV_KIND] = CStringGetTextDatum(kind);
	nulls[EV_KIND] = ' ';
	if (cols->is_trade)
	{
		set_column(values, nulls, EV_TRADE_ID, tuple, cols->id, desc);
		set_column(values, nulls, EV_BOT_ID, tuple, cols->key1, desc);
	}
	else
	{
		set_column(values, nulls, EV_BID_ID, tuple, cols->id, desc);
		set_column(values, nulls, EV_MARKETPLACE_ID, tuple, cols->key1, desc);
		set_column(values, nulls, EV_POSTING_ID, tuple, cols->key2, desc);
	}
	/* The reason belongs to the status it was given with. */
	values[EV_DETAIL] = reason_detail(with_reason ? tuple : NULL,
									  cols->status_reason, desc);
	nulls[EV_DETAIL] = ' ';

	bidguard_event_write(state->nspid, values, nulls, false);

	return PointerGetDatum(NULL);
}

/*
 * bidguard_uuid_v7() RETURNS uuid
 *
 * A time-ordered UUID, version 7 of RFC 9562: 48 bits of Unix time in
 * milliseconds, then 12 bits of the sub-millisecond fraction (the RFC's
 * "method 3"), then 62 random bits from pg_strong_random(), as
 * gen_random_uuid() uses.  It is the default of every atomic_event_id and
 * event_id.
 *
 * Why: a random (version 4) id sends every insert into its unique index to a
 * random leaf page.  Once the index outgrows shared_buffers, nearly every
 * insert reads a page from disk or the OS cache and dirties it
 * (bench/scale.sh).  Ids that grow with time land on the index's rightmost
 * pages, which stay in the cache however large the table gets.
 *
 * Within a backend the ids strictly increase, even when the clock stands
 * still or steps back: a tick (ms * 4096 + fraction) not above the last one
 * becomes the last one plus one.  Across backends they are ordered to the
 * clock's resolution.  The time in the id is public to whoever sees it (the
 * exchange sees the moment the order was created, which it knows anyway).
 */
PG_FUNCTION_INFO_V1(bidguard_uuid_v7);
Datum
bidguard_uuid_v7(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	PG_RETURN_UUID_P(bidguard_new_uuid_v7());
}

/* A new version 7 UUID (see bidguard_uuid_v7), palloc'd. */
pg_uuid_t *
bidguard_new_uuid_v7(void)
{
	static uint64 last_tick = 0;
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	int64		unix_us;
	uint64		tick;

	/* microseconds since 1970-01-01; the clock is after 1970 */
	unix_us = now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (unix_us < 0)
		unix_us = 0;
	tick = ((uint64) (unix_us / 1000) << 12) |
		(((uint64) (unix_us % 1000) << 12) / 1000);
	if (tick <= last_tick)
		tick = last_tick + 1;
	last_tick = tick;

	if (!pg_strong_random(&uuid->data[8], UUID_LEN - 8))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));

	/* unix_ts_ms: 48 bits, big-endian */
	uuid->data[0] = (uint8) (tick >> 52);
	uuid->data[1] = (uint8) (tick >> 44);
	uuid->data[2] = (uint8) (tick >> 36);
	uuid->data[3] = (uint8) (tick >> 28);
	uuid->data[4] = (uint8) (tick >> 20);
	uuid->data[5] = (uint8) (tick >> 12);
	/* ver = 7, then rand_a = the 12-bit fraction */
	uuid->data[6] = (uint8) (0x70 | ((tick >> 8) & 0x0F));
	uuid->data[7] = (uint8) (tick & 0xFF);
	/* var = 0b10, then rand_b */
	uuid->data[8] = (uint8) (0x80 | (uuid->data[8] & 0x3F));

	return uuid;
}
