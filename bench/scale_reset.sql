-- bench/scale_reset.sql — before every run of bench/scale.sh: remove what
-- the earlier runs added and keep the pre-populated rows, bids and trades
-- 1 .. :n and their events.  Runs add bids (marketplace 'bench') and trades
-- with ids above :n, and their creation events, which carry those ids.
-- Triggers are off (session_replication_role = replica), so the deletions
-- write no bid_deleted/trade_deleted events: the state is as if the runs
-- had never happened.  The identity sequences go back to :n, VACUUM (with
-- its index pass forced, whatever the share of dead rows, so that every
-- size starts alike) makes the space and the ids reusable, and the
-- checkpoint makes every run start with clean buffers.  No TRUNCATE: the
-- pre-populated rows stay.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
DELETE FROM bidguard_events WHERE bid_id > :n OR trade_id > :n;
DELETE FROM bidguard_bids WHERE bid_id > :n;
DELETE FROM bidguard_trades WHERE trade_id > :n;
SELECT setval(pg_get_serial_sequence('bidguard_bids', 'bid_id'), :n),
       setval(pg_get_serial_sequence('bidguard_trades', 'trade_id'), :n) \gset
VACUUM (INDEX_CLEANUP ON) bidguard_bids, bidguard_trades, bidguard_events;
CHECKPOINT;
