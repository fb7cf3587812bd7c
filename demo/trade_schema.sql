-- demo/trade_schema.sql — the double-trade incident's tables, and the same bots
-- registered with bidguard.
--
-- Run with psql -v bots=<how many> -v cooldown=<interval>.
--
-- Shaped like the trading service's models in the double-trade write-up
-- (shared/background/double-trade-writeup.md): a `bots` table with each bot's
-- cooldown and a `trades` table with bot_id, created_at and filled_at. The only
-- guard is the workers' own "when did this bot last trade? (max of
-- coalesce(filled_at, created_at)) — longer ago than the cooldown? then trade"
-- — see trade_naive.pgbench.
--
-- trade_outcomes is the demo's own tally: one row per worker iteration, written
-- in the iteration's transaction, saying what the check decided (executed,
-- cooldown, or with bidguard also busy). Unlogged: it is bookkeeping.

SET client_min_messages = warning;
DROP TABLE IF EXISTS trades, bots, trade_outcomes;

CREATE TABLE bots (
    bot_id      bigint      PRIMARY KEY,
    cooldown    interval    NOT NULL CHECK (cooldown >= '0')
);

CREATE TABLE trades (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id      bigint      NOT NULL REFERENCES bots,
    status      text        NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'filled', 'failed')),
    trade_data  jsonb       NOT NULL DEFAULT '{}',
    -- the application's clock at the INSERT, as the ORM stamped it
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    filled_at   timestamptz
);

-- serves the workers' "last trade of this bot" lookup
CREATE INDEX trades_bot_effective ON trades (bot_id, (coalesce(filled_at, created_at)));

CREATE UNLOGGED TABLE trade_outcomes (
    run     text NOT NULL,      -- naive | guarded
    reason  text NOT NULL       -- executed | cooldown | busy
);

INSERT INTO bots (bot_id, cooldown)
SELECT b, :'cooldown' FROM generate_series(1, :bots) AS b;

-- the same bots, the same cooldown, for bidguard_try_trade()
SELECT bidguard_set_cooldown(b, :'cooldown')
  FROM generate_series(1, :bots) AS b \g /dev/null
