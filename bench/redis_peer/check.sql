-- bench/redis_peer/check.sql — the invariants the seed's Redis lock is meant
-- to keep, checked on the Redis peer's tables after a run.  Both counts must
-- be 0; each query also shows what it looked at.
\pset footer off

-- 1. At most one active (pending or submitted) bid per posting.
SELECT count(*)                         AS bids,
       count(DISTINCT (marketplace_id, posting_id)) AS postings,
       (SELECT count(*) FROM (SELECT FROM peer_redis_bids
                               WHERE status IN ('pending', 'submitted')
                               GROUP BY marketplace_id, posting_id
                              HAVING count(*) > 1) AS d) AS postings_with_duplicates
  FROM peer_redis_bids;

-- 2. Two trades of a bot never closer than the bot's cooldown (effective time
--    coalesce(filled_at, created_at)).
SELECT count(*)                          AS trades,
       count(DISTINCT bot_id)            AS bots,
       count(*) FILTER (WHERE gap < cooldown) AS gaps_below_cooldown,
       min(gap)                          AS smallest_gap
  FROM (SELECT t.bot_id, b.cooldown,
               coalesce(t.filled_at, t.created_at)
               - lag(coalesce(t.filled_at, t.created_at))
                   OVER (PARTITION BY t.bot_id ORDER BY coalesce(t.filled_at, t.created_at)) AS gap
          FROM peer_redis_trades AS t
          JOIN peer_redis_bots AS b USING (bot_id)) AS w;
