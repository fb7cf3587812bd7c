-- demo/trade_schema.sql — the double-trade incident's tables, as the trading
-- service had them.
--
-- Shaped like the models in shared/background/double-trade-writeup.md: a `bots`
-- table with each bot's cooldown and a `trades` table with bot_id, created_at
-- and filled_at, and an index for the "last trade of this bot" lookup. The only
-- guard is the workers' own check (demo/incidents.py, CheckThenInsert):
-- "when did this bot last trade (max of coalesce(filled_at, created_at))?
-- longer ago than the cooldown? then trade". The bots are registered by the
-- workers themselves, as bidguard's are with bidguard_set_cooldown().

SET client_min_messages = warning;
DROP TABLE IF EXISTS trades, bots;

CREATE TABLE bots (
    bot_id      bigint      PRIMARY KEY,
    cooldown    interval    NOT NULL CHECK (cooldown >= '0')
);

CREATE TABLE trades (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id          bigint      NOT NULL REFERENCES bots,
    status          text        NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'filled', 'failed')),
    trade_data      jsonb       NOT NULL DEFAULT '{}',
    client_order_id uuid        NOT NULL UNIQUE,  -- the order's id at the exchange
    -- the application's clock at the INSERT, as the ORM stamped it
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    filled_at       timestamptz
);

-- serves the workers' "last trade of this bot" lookup
CREATE INDEX trades_bot_effective ON trades (bot_id, (coalesce(filled_at, created_at)));
