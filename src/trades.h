/*-------------------------------------------------------------------------
 *
 * trades.h
 *	  What the trade guard's two files share: the decision and the fill
 *	  bounds (trades.c), used by bidguard_trades' trigger (trade_trigger.c).
 *
 * src/trades.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_TRADES_H
#define BIDGUARD_TRADES_H

#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/*
 * Set by bidguard_try_trade around its own INSERT, which it has already
 * judged under the bot's lock, so that the trigger does not judge it again.
 */
typedef struct TradeAdmission
{
	bool		active;
	int64		bot_id;
	TimestampTz created_at;
} TradeAdmission;

extern TradeAdmission trade_admission;

extern void trade_decide(Oid nspid, int64 bot_id, TimestampTz at, const TimestampTz *fill,
						 int64 exclude_trade_id, bool exclude, Relation rel,
						 Interval **cooldown, Interval **retry);
extern void trade_check_fill_time(int64 trade_id, TimestampTz created_at, TimestampTz filled_at,
							TimestampTz now, Relation rel);

/* 23503 for a bot not in bidguard_bots ("rel": the table a row went to) */
extern pg_noreturn void trade_raise_unknown_bot(int64 bot_id, Relation rel);

/* trade_write.c */
extern bool trade_direct_insert(Oid nspid, int64 bot_id, Jsonb *trade_data, TimestampTz now,
								Interval *cooldown, int64 *trade_id,
								struct pg_uuid_t **event_id);

#endif							/* BIDGUARD_TRADES_H */
