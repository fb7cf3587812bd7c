-- bench/reset.sql — empty the benchmark's tables before a run.  TRUNCATE
-- leaves their size unknown to the planner, as on a fresh install; an
-- ANALYZE of the empty tables would instead make the kept plans of every
-- check-then-insert peer (bidguard's and PL/pgSQL's alike) sequential scans
-- until the next ANALYZE.  The checkpoint makes every run start alike.
TRUNCATE bidguard_bids, bidguard_trades, bidguard_events,
         peer_excl_trades, peer_plpgsql_trades, peer_plpgsql_bids,
         peer_audited_bids, peer_audited_trades, peer_audit_events,
         bidguard_rate_events, bench_actions;
CHECKPOINT;
