-- bench/peers.sql — what a user could write instead of bidguard, for the
-- benchmarks.  The cooldown is 1 second everywhere.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Bids (a): the plain-SQL peer is INSERT ... ON CONFLICT DO NOTHING on
-- bidguard_bids itself (on_conflict.pgbench).

-- Bids (b): PL/pgSQL, a transaction-scoped advisory lock on the posting, a
-- check for its active bid, an insert (plpgsql_bid.pgbench): bidguard's
-- create_bid written by hand, on a table of its own with the same unique rule.
CREATE TABLE peer_plpgsql_bids (
    bid_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    marketplace_id  text NOT NULL,
    posting_id      text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    bid_data        jsonb NOT NULL DEFAULT '{}',
    atomic_event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX peer_plpgsql_bids_one_active ON peer_plpgsql_bids (marketplace_id, posting_id)
    WHERE status IN ('pending', 'submitted');

CREATE FUNCTION peer_plpgsql_create_bid(p_marketplace text, p_posting text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_marketplace || '/' || p_posting, 0));
    SELECT b.bid_id INTO id FROM peer_plpgsql_bids AS b
     WHERE b.marketplace_id = p_marketplace AND b.posting_id = p_posting
       AND b.status IN ('pending', 'submitted');
    IF FOUND THEN
        RETURN id;
    END IF;
    INSERT INTO peer_plpgsql_bids (marketplace_id, posting_id)
    VALUES (p_marketplace, p_posting) RETURNING bid_id INTO id;
    RETURN id;
END
$$;

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
