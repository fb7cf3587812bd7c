-- bidguard_shard 1.0: one shard of a PL/Proxy bidguard cluster.
--
-- A shard holds some partitions of partition_count (a power of 2, as PL/Proxy
-- wants).  Its fence (src/shard_fence.c) refuses every bid, bot, trade and event
-- whose key routes elsewhere (bidguard_shard_key(key) & (partition_count - 1)),
-- and every bid or trade whose id was not allocated here: ids of partition p lie
-- in [p << 48, (p + 1) << 48), so a proxy routes a call by id with id >> 48.
-- pg_dump keeps the configuration (bidguard_shard_config) with the data.

\echo Use "CREATE EXTENSION bidguard_shard" to load this file. \quit

DO $check$
BEGIN
    IF pg_catalog.to_regclass('@extschema@.bidguard_bids') IS NULL THEN
        RAISE EXCEPTION 'bidguard_shard must be created in the schema of extension bidguard'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CREATE EXTENSION bidguard_shard SCHEMA <the schema of bidguard>;';
    END IF;
END
$check$;

CREATE TABLE @extschema@.bidguard_shard_config (
    singleton       boolean     NOT NULL DEFAULT true,
    partition_count integer     NOT NULL,
    partitions      integer[]   NOT NULL,
    configured_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    CONSTRAINT bidguard_shard_config_pkey PRIMARY KEY (singleton),
    CONSTRAINT bidguard_shard_config_singleton CHECK (singleton),
    CONSTRAINT bidguard_shard_config_partition_count_check
        CHECK (partition_count OPERATOR(pg_catalog.>=) 1
               AND partition_count OPERATOR(pg_catalog.<=) 32768
               AND (partition_count OPERATOR(pg_catalog.&) (partition_count OPERATOR(pg_catalog.-) 1))
                   OPERATOR(pg_catalog.=) 0),
    CONSTRAINT bidguard_shard_config_partitions_check
        CHECK (pg_catalog.cardinality(partitions) OPERATOR(pg_catalog.>=) 1
               AND 0 OPERATOR(pg_catalog.<=) ALL (partitions)
               AND partition_count OPERATOR(pg_catalog.>) ALL (partitions))
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.bidguard_shard_config', '');
GRANT SELECT ON @extschema@.bidguard_shard_config TO PUBLIC;

COMMENT ON TABLE @extschema@.bidguard_shard_config IS
    'which partitions of the PL/Proxy cluster this shard holds (bidguard_shard_configure)';

--
-- The fence: BEFORE triggers named to fire before bidguard's own (BEFORE
-- triggers fire in name order), so that a refused row never waits for a lock.
--
CREATE FUNCTION @extschema@.bidguard_shard_fence()
RETURNS trigger
AS 'MODULE_PATHNAME', 'bidguard_shard_fence'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_shard_fence() IS
    'refuses a row whose posting or bot routes to another shard, or whose id was allocated elsewhere (23514, bidguard_shard_fence)';

CREATE TRIGGER bidguard_bids_00_shard_fence
    BEFORE INSERT OR UPDATE OF bid_id, marketplace_id, posting_id ON @extschema@.bidguard_bids
    FOR EACH ROW EXECUTE FUNCTION @extschema@.bidguard_shard_fence('bid');
CREATE TRIGGER bidguard_bots_00_shard_fence
    BEFORE INSERT OR UPDATE OF bot_id ON @extschema@.bidguard_bots
    FOR EACH ROW EXECUTE FUNCTION @extschema@.bidguard_shard_fence('bot');
CREATE TRIGGER bidguard_trades_00_shard_fence
    BEFORE INSERT OR UPDATE OF trade_id, bot_id ON @extschema@.bidguard_trades
    FOR EACH ROW EXECUTE FUNCTION @extschema@.bidguard_shard_fence('trade');
CREATE TRIGGER bidguard_events_00_shard_fence
    BEFORE INSERT OR UPDATE OF marketplace_id, posting_id, bot_id ON @extschema@.bidguard_events
    FOR EACH ROW EXECUTE FUNCTION @extschema@.bidguard_shard_fence('event');

-- The sweeper's index: open trades by age.
CREATE INDEX bidguard_trades_open_idx ON @extschema@.bidguard_trades (created_at)
    WHERE status OPERATOR(pg_catalog.=) 'open';

--
-- Rows this shard should not hold: empty while the fence stands.  After a
-- restore into the wrong database, or data loaded with the triggers disabled,
-- it says what to move.
--
CREATE VIEW @extschema@.bidguard_shard_misplaced AS
WITH c AS (SELECT partition_count, partitions FROM @extschema@.bidguard_shard_config)
SELECT 'bidguard_bids'::pg_catalog.regclass AS table_name, b.bid_id AS id,
       (@extschema@.bidguard_shard_key(b.marketplace_id, b.posting_id)
            OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)) AS key_partition,
       (b.bid_id OPERATOR(pg_catalog.>>) 48)::integer AS id_partition
  FROM @extschema@.bidguard_bids AS b, c
 WHERE NOT (@extschema@.bidguard_shard_key(b.marketplace_id, b.posting_id)
                OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)) OPERATOR(pg_catalog.=) ANY (c.partitions)
    OR NOT (b.bid_id OPERATOR(pg_catalog.>>) 48)::integer OPERATOR(pg_catalog.=) ANY (c.partitions)
UNION ALL
SELECT 'bidguard_trades'::pg_catalog.regclass, t.trade_id,
       (@extschema@.bidguard_shard_key(t.bot_id) OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)),
       (t.trade_id OPERATOR(pg_catalog.>>) 48)::integer
  FROM @extschema@.bidguard_trades AS t, c
 WHERE NOT (@extschema@.bidguard_shard_key(t.bot_id)
                OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)) OPERATOR(pg_catalog.=) ANY (c.partitions)
    OR NOT (t.trade_id OPERATOR(pg_catalog.>>) 48)::integer OPERATOR(pg_catalog.=) ANY (c.partitions)
UNION ALL
SELECT 'bidguard_bots'::pg_catalog.regclass, o.bot_id,
       (@extschema@.bidguard_shard_key(o.bot_id) OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)),
       NULL::integer
  FROM @extschema@.bidguard_bots AS o, c
 WHERE NOT (@extschema@.bidguard_shard_key(o.bot_id)
                OPERATOR(pg_catalog.&) (c.partition_count OPERATOR(pg_catalog.-) 1)) OPERATOR(pg_catalog.=) ANY (c.partitions);

COMMENT ON VIEW @extschema@.bidguard_shard_misplaced IS
    'bids, trades and bots this shard holds but should not: their key or id routes to another partition; empty while the fence stands';
REVOKE ALL ON @extschema@.bidguard_shard_misplaced FROM PUBLIC;

--
-- What this shard is, for the proxy's bidguard_shards view.
--
CREATE VIEW @extschema@.bidguard_shard_info AS
SELECT c.partition_count, c.partitions, c.configured_at,
       pg_catalog.current_database()::pg_catalog.text AS database,
       (SELECT s.system_identifier FROM pg_catalog.pg_control_system() AS s) AS system_identifier,
       pg_catalog.current_setting('server_version') AS server_version,
       pg_catalog.pg_is_in_recovery() AS in_recovery
  FROM (SELECT NULL) AS one
  LEFT JOIN @extschema@.bidguard_shard_config AS c ON true;
GRANT SELECT ON @extschema@.bidguard_shard_info TO PUBLIC;

--
-- bidguard_shard_configure(partition_count, partitions): make this database
-- the shard of those partitions.  Checks the rows it holds already, moves the
-- identity sequences into the first partition's id range, records the
-- configuration.  Running it again with the same arguments changes nothing
-- (after a restore: it repairs sequences reset below their range).
-- Changing the partitions of a shard that holds rows is refused: moving
-- rows between shards is not supported.
--
CREATE FUNCTION @extschema@.bidguard_shard_configure(partition_count integer, partitions integer[])
RETURNS TABLE (holds_partitions integer[], of_partition_count integer, next_bid_id bigint, next_trade_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    n integer := bidguard_shard_configure.partition_count;
    parts integer[];
    old @extschema@.bidguard_shard_config;
    misplaced bigint;
    lo bigint;
    hi bigint;
    seq regclass;
    cur bigint;
    nexts bigint[] := '{}';
BEGIN
    IF n IS NULL OR bidguard_shard_configure.partitions IS NULL THEN
        RAISE EXCEPTION '% must not be null',
            CASE WHEN n IS NULL THEN 'partition_count' ELSE 'partitions' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF n < 1 OR n > 32768 OR (n & (n - 1)) <> 0 THEN
        RAISE EXCEPTION 'partition_count must be a power of 2 between 1 and 32768, not %', n
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'PL/Proxy routes on hash & (partition_count - 1).';
    END IF;
    SELECT array_agg(DISTINCT p ORDER BY p) INTO parts FROM unnest(bidguard_shard_configure.partitions) AS p;
    IF parts IS NULL OR array_position(parts, NULL) IS NOT NULL
       OR EXISTS (SELECT FROM unnest(parts) AS p WHERE p < 0 OR p >= n) THEN
        RAISE EXCEPTION 'partitions must be a non-empty list of partition numbers from 0 to %', n - 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- one configuration at a time
    LOCK TABLE @extschema@.bidguard_shard_config IN EXCLUSIVE MODE;
    SELECT * INTO old FROM @extschema@.bidguard_shard_config;
    IF FOUND AND (old.partition_count, old.partitions) IS DISTINCT FROM (n, parts)
       AND (EXISTS (SELECT FROM @extschema@.bidguard_bids) OR EXISTS (SELECT FROM @extschema@.bidguard_bots)
            OR EXISTS (SELECT FROM @extschema@.bidguard_trades)) THEN
        RAISE EXCEPTION 'this shard holds rows of partitions % of %; it cannot become the shard of partitions % of %',
            old.partitions, old.partition_count, parts, n
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Moving rows between shards is not supported.';
    END IF;

    -- the rows already here must belong here
    SELECT (SELECT count(*) FROM @extschema@.bidguard_bids AS b
             WHERE NOT (@extschema@.bidguard_shard_key(b.marketplace_id, b.posting_id) & (n - 1)) = ANY (parts)
                OR NOT (b.bid_id >> 48)::integer = ANY (parts))
         + (SELECT count(*) FROM @extschema@.bidguard_trades AS t
             WHERE NOT (@extschema@.bidguard_shard_key(t.bot_id) & (n - 1)) = ANY (parts)
                OR NOT (t.trade_id >> 48)::integer = ANY (parts))
         + (SELECT count(*) FROM @extschema@.bidguard_bots AS o
             WHERE NOT (@extschema@.bidguard_shard_key(o.bot_id) & (n - 1)) = ANY (parts))
      INTO misplaced;
    IF misplaced > 0 THEN
        RAISE EXCEPTION 'this database holds % rows that do not belong to partitions % of %', misplaced, parts, n
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bidguard_shard_fence',
                  HINT = 'Load each shard with the rows whose bidguard_shard_key routes to it, keeping their ids in its range.';
    END IF;

    -- ids: the first partition's range
    lo := parts[1]::bigint << 48;
    hi := (parts[1]::bigint + 1) << 48;
    FOREACH seq IN ARRAY ARRAY[pg_get_serial_sequence('@extschema@.bidguard_bids', 'bid_id'),
                               pg_get_serial_sequence('@extschema@.bidguard_trades', 'trade_id')]::regclass[]
    LOOP
        cur := coalesce(pg_sequence_last_value(seq), 0);
        IF cur >= hi THEN
            RAISE EXCEPTION 'sequence % is at %, past the id range of partition % ([%, %))', seq, cur, parts[1], lo, hi
                USING ERRCODE = 'object_not_in_prerequisite_state';
        ELSIF cur < lo OR cur < 1 THEN
            PERFORM setval(seq, greatest(lo, 1), false);
            nexts := nexts || greatest(lo, 1);
        ELSE
            nexts := nexts || (cur + 1);
        END IF;
    END LOOP;

    INSERT INTO @extschema@.bidguard_shard_config AS c (partition_count, partitions)
    VALUES (n, parts)
    ON CONFLICT (singleton) DO UPDATE
       SET partition_count = excluded.partition_count, partitions = excluded.partitions,
           configured_at = CASE WHEN (c.partition_count, c.partitions) = (excluded.partition_count, excluded.partitions)
                                THEN c.configured_at ELSE excluded.configured_at END;
    RETURN QUERY SELECT parts, n, nexts[1], nexts[2];
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_shard_configure(integer, integer[]) IS
    'make this database the shard of the given partitions of partition_count: checks its rows, moves id sequences into the range of its first partition; owner only';
REVOKE ALL ON FUNCTION @extschema@.bidguard_shard_configure(integer, integer[]) FROM PUBLIC;

--
-- The sweeper: a trade reserved through the proxy is committed at once, open,
-- and stays open until bidguard_fill_trade or bidguard_fail_trade.  One whose
-- worker never came back is failed here, with reason 'expired', once it has
-- been open longer than older_than AND longer than the cooldown it was
-- admitted under: by then it no longer holds the bot's cooldown, so failing
-- it can never let a trade in that the guard would refuse.  A fill that comes
-- after the sweep is refused (23514: a failed trade cannot be filled), so the
-- worker learns that its reservation expired.  Schedule it on each
-- shard (pg_cron: SELECT cron.schedule('bidguard-sweep', '* * * * *',
-- 'SELECT count(*) FROM bidguard_sweep_open_trades()')) or through the proxy.
--
CREATE FUNCTION @extschema@.bidguard_sweep_open_trades(
    older_than interval DEFAULT '15 minutes', max_trades integer DEFAULT 1000)
RETURNS TABLE (trade_id bigint, bot_id bigint, created_at timestamptz, open_for interval)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r record;
BEGIN
    IF older_than IS NULL OR max_trades IS NULL THEN
        RAISE EXCEPTION '% must not be null', CASE WHEN older_than IS NULL THEN 'older_than' ELSE 'max_trades' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF older_than < '0'::interval OR NOT isfinite(older_than) OR max_trades < 1 THEN
        RAISE EXCEPTION '%', CASE WHEN max_trades < 1 THEN 'max_trades must be at least 1'
                                  ELSE 'older_than must be a finite interval of at least 0' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR r IN
        SELECT t.trade_id, t.bot_id, t.created_at
          FROM @extschema@.bidguard_trades AS t
          JOIN @extschema@.bidguard_bots AS b ON b.bot_id = t.bot_id
         WHERE t.status = 'open'
           AND t.created_at < clock_timestamp() - older_than
           AND t.created_at < clock_timestamp() - coalesce(t.cooldown, b.cooldown)
         ORDER BY t.created_at
         LIMIT max_trades
           FOR UPDATE OF t SKIP LOCKED
    LOOP
        open_for := clock_timestamp() - r.created_at;
        -- the row is locked: a fill waiting for it finds it failed
        PERFORM @extschema@.bidguard_fail_trade(r.trade_id,
            format('expired: open for %s, swept by bidguard_sweep_open_trades', date_trunc('second', open_for)));
        trade_id := r.trade_id;
        bot_id := r.bot_id;
        created_at := r.created_at;
        RETURN NEXT;
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_sweep_open_trades(interval, integer) IS
    'fails trades left open longer than older_than and than their cooldown (reason expired); returns them';
REVOKE ALL ON FUNCTION @extschema@.bidguard_sweep_open_trades(interval, integer) FROM PUBLIC;
