TRUNCATE bidguard_bids, bidguard_trades, bidguard_events;
VACUUM ANALYZE bidguard_bids, bidguard_events;
