TRUNCATE bidguard_trades, peer_excl_trades, peer_plpgsql_trades;
DELETE FROM bidguard_events WHERE trade_id IS NOT NULL;
VACUUM ANALYZE bidguard_trades, bidguard_events, peer_excl_trades, peer_plpgsql_trades;
