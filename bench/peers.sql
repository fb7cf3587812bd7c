-- bench/peers.sql — what a user could write instead of bidguard, for the
-- benchmarks.  The cooldown is 1 second everywhere.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Bids: the plain-SQL peer is INSERT ... ON CONFLICT DO NOTHING on
-- bidguard_bids itself (on_conflict.pgbench).

-- Trades (a): an exclusion constraint on a window of one cooldown.
CREATE TABLE peer_excl_trades (
    trade_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id     bigint NOT NULL,
    trade_data jsonb NOT NULL DEFAULT '{}',
    win        tstzrange NOT NULL,      -- [admitted at, + cooldown)
    EXCLUDE USING gist (bot_id WITH =, win WITH &&)
);

-- Trades (b): PL/pgSQL, a transaction-scoped advisory lock, a check, an insert.
CREATE TABLE peer_plpgsql_trades (
    trade_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id     bigint NOT NULL,
    trade_data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
CREATE INDEX ON peer_plpgsql_trades (bot_id, created_at);

CREATE FUNCTION peer_plpgsql_try_trade(p_bot bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(p_bot);
    now_ts := clock_timestamp();
    IF EXISTS (SELECT 1 FROM peer_plpgsql_trades
                WHERE bot_id = p_bot
                  AND created_at > now_ts - interval '1 second'
                  AND created_at < now_ts + interval '1 second') THEN
        RETURN 'cooldown';
    END IF;
    INSERT INTO peer_plpgsql_trades (bot_id, created_at) VALUES (p_bot, now_ts);
    RETURN 'executed';
END
$$;
