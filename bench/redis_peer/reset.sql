-- bench/redis_peer/reset.sql — empty the Redis peer's tables before a run, as
-- bench/reset.sql does for the others (no ANALYZE, for the same reason; the
-- checkpoint makes every run start alike).  Its Redis keys need no reset: every
-- lock is released at the end of its operation, or expires after its TTL.
TRUNCATE peer_redis_bids, peer_redis_trades, peer_redis_actions;
CHECKPOINT;
