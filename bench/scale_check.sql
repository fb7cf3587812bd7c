-- bench/scale_check.sql — after each load of bench/scale.sh: the bulk load
-- (triggers off) left what the triggers would have.  Prints one line of
-- counts, each of which must be 0; psql variables from, to (the new range).
--   dup_active      postings with more than one active bid (the view)
--   bids_no_event   new bids without their bid_created event (id, bid, time, status)
--   trades_no_event new trades without their trade_executed event (id, trade, bot, time, status)
--   bad_fill        trades filled before admission or in the future, or filled
--                   without status 'filled'
--   early_trades    pre-populated trades not in the past by more than a minute
\set ON_ERROR_STOP on
SELECT (SELECT count(*) FROM bidguard_duplicate_active_bids) AS dup_active,
       (SELECT count(*) FROM bidguard_bids AS b
         WHERE b.bid_id BETWEEN :from AND :to
           AND NOT EXISTS (SELECT FROM bidguard_events AS e
                            WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created'
                              AND e.bid_id = b.bid_id AND e.occurred_at = b.created_at
                              AND e.marketplace_id = b.marketplace_id
                              AND e.posting_id = b.posting_id AND e.new_status = b.status))
           AS bids_no_event,
       (SELECT count(*) FROM bidguard_trades AS t
         WHERE t.trade_id BETWEEN :from AND :to
           AND NOT EXISTS (SELECT FROM bidguard_events AS e
                            WHERE e.event_id = t.atomic_event_id AND e.kind = 'trade_executed'
                              AND e.trade_id = t.trade_id AND e.bot_id = t.bot_id
                              AND e.occurred_at = t.created_at AND e.new_status = t.status))
           AS trades_no_event,
       (SELECT count(*) FROM bidguard_trades AS t
         WHERE t.trade_id BETWEEN :from AND :to
           AND (t.filled_at < t.created_at OR t.filled_at > now()
                OR (t.filled_at IS NOT NULL) <> (t.status = 'filled')))
           AS bad_fill,
       (SELECT count(*) FROM bidguard_trades AS t
         WHERE t.trade_id BETWEEN :from AND :to
           AND t.created_at > now() - interval '1 minute')
           AS early_trades;
