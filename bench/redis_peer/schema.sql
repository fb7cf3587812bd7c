-- bench/redis_peer/schema.sql — the tables of the Redis-lock peer (redis_peer.c),
-- the seed design: a Redis `SET key token NX PX` lock around check-then-insert.
--
--   psql -X -v ON_ERROR_STOP=1 [-v bots=N] -f bench/redis_peer/schema.sql
--
-- Shaped like bidguard's own tables (bidguard_bids, bidguard_trades) and the
-- other peers (bench/peers.sql), so that a row costs about the same to write,
-- but without bidguard's triggers and audit events (the seed logged, it wrote
-- no event rows).  Only the Redis lock keeps the invariants here: the index
-- the check reads is deliberately NOT unique, and there is no cooldown
-- constraint, so a failure of the lock shows up as rows that break them
-- (bench/redis_peer/check.sql counts those) instead of as errors.
-- The cooldown is 1 second for every bot, as in bench/peers.sql and figures.sh.

\if :{?bots}
\else
\set bots 10000
\endif

-- Bids: at most one active (pending or submitted) bid per posting, by the lock.
CREATE TABLE peer_redis_bids (
    bid_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    marketplace_id  text        NOT NULL,
    posting_id      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status = ANY ('{pending,submitted,won,lost,withdrawn,expired,failed}')),
    bid_data        jsonb       NOT NULL DEFAULT '{}',
    status_reason   text,
    atomic_event_id uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- the check's index (the same key and predicate as bidguard_bids_one_active,
-- but not unique: the seed relied on the lock)
CREATE INDEX peer_redis_bids_active
    ON peer_redis_bids (marketplace_id, posting_id)
    WHERE status IN ('pending', 'submitted');

-- Bots and their cooldowns (1 .. :bots, 1 second each).
CREATE TABLE peer_redis_bots (
    bot_id   bigint   PRIMARY KEY,
    cooldown interval NOT NULL CHECK (cooldown >= '0')
);
INSERT INTO peer_redis_bots (bot_id, cooldown)
SELECT b, interval '1 second' FROM generate_series(1, :bots) AS b;

-- Trades: two trades of a bot never closer than its cooldown, by the lock.
-- The effective time is coalesce(filled_at, created_at), as in the seed.
CREATE TABLE peer_redis_trades (
    trade_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id      bigint      NOT NULL,
    status      text        NOT NULL DEFAULT 'open'
        CHECK (status = ANY ('{open,filled,failed}')),
    trade_data  jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    filled_at   timestamptz
);
-- the check's index: max(coalesce(filled_at, created_at)) of one bot is one
-- backward index probe
CREATE INDEX peer_redis_trades_bot_eff
    ON peer_redis_trades (bot_id, (coalesce(filled_at, created_at)));

ANALYZE peer_redis_bots;

-- Rate limits (-w rate): the action a GCRA limit in Redis protects, one row
-- per admitted call, as bench/rate_limit.pgbench writes one per admitted
-- bidguard_rate_limit() call.
CREATE TABLE peer_redis_actions (
    action_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
