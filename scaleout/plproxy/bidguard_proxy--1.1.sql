-- bidguard_proxy 1.1 (install script; 1.0 is frozen in bidguard_proxy--1.0.sql, upgrades in bidguard_proxy--A--B.sql): bidguard's functions on a PL/Proxy proxy database.
--
-- Every function has bidguard's name, arguments and result columns, and runs
-- on the shard that owns its key, in cluster 'bidguard' (CREATE SERVER bidguard
-- FOREIGN DATA WRAPPER plproxy OPTIONS (p0 '…', p1 '…', …)):
--   a posting:  bidguard_shard_key(marketplace_id, posting_id) & (partitions - 1)
--   a bot:      bidguard_shard_key(bot_id) & (partitions - 1)
--   an id:      id >> 48 (the shard allocated it in its partition's range)
-- Each proxied call commits on its shard before it returns (PL/Proxy runs it
-- in a transaction of its own): doc/scaleout.md, With PL/Proxy, says what that means
-- for a trade, and why bidguard_lock() is refused here.

\echo Use "CREATE EXTENSION bidguard_proxy" to load this file. \quit

DO $check$
BEGIN
    IF pg_catalog.to_regclass('@extschema@.bidguard_bids') IS NOT NULL THEN
        RAISE EXCEPTION 'bidguard_proxy cannot share a schema with extension bidguard'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'A proxy database holds no bidguard data: the shards do.';
    END IF;
END
$check$;

--
-- Computed here, the same on every server (the shards' C functions).
--
CREATE FUNCTION @extschema@.bidguard_shard_key(key text) RETURNS integer
AS 'MODULE_PATHNAME', 'bidguard_shard_key_text' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.bidguard_shard_key(namespace text, key text) RETURNS integer
AS 'MODULE_PATHNAME', 'bidguard_shard_key_pair' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.bidguard_shard_key(key bigint) RETURNS integer
AS 'MODULE_PATHNAME', 'bidguard_shard_key_int8' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.bidguard_lock_key(namespace text, key text) RETURNS bigint
AS 'MODULE_PATHNAME', 'bidguard_lock_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.bidguard_uuid_v7() RETURNS uuid
AS 'MODULE_PATHNAME', 'bidguard_uuid_v7' LANGUAGE C VOLATILE PARALLEL SAFE;

-- The partition that allocated an id.
CREATE FUNCTION @extschema@.bidguard_id_partition(id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (id OPERATOR(pg_catalog.>>) 48)::integer;

COMMENT ON FUNCTION @extschema@.bidguard_id_partition(bigint) IS
    'the partition whose shard allocated a bid_id or trade_id: id >> 48';

-- What RUN ON calls: the routing key, or bidguard's own error for a NULL key
-- (PL/Proxy would otherwise report "hash function returned NULL", XX000).
-- bidguard_null_key is VOLATILE so that the planner never folds it early.
CREATE FUNCTION @extschema@.bidguard_null_key(argname text) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION '% must not be null', argname USING ERRCODE = 'null_value_not_allowed';
END
$fn$;

CREATE FUNCTION @extschema@.bidguard_route_posting(marketplace_id text, posting_id text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(@extschema@.bidguard_shard_key(marketplace_id, posting_id),
                @extschema@.bidguard_null_key(CASE WHEN marketplace_id IS NULL THEN 'marketplace_id' ELSE 'posting_id' END));
CREATE FUNCTION @extschema@.bidguard_route_bot(bot_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(@extschema@.bidguard_shard_key(bot_id), @extschema@.bidguard_null_key('bot_id'));
CREATE FUNCTION @extschema@.bidguard_route_key(key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(@extschema@.bidguard_shard_key(key), @extschema@.bidguard_null_key('key'));
CREATE FUNCTION @extschema@.bidguard_route_id(id bigint, argname text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(@extschema@.bidguard_id_partition(id), @extschema@.bidguard_null_key(argname));

--
-- Bids, routed by posting or by id.
--
CREATE FUNCTION @extschema@.bidguard_create_bid(
    marketplace_id text, posting_id text, bid_data jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (bid_id bigint, created boolean, status text, atomic_event_id uuid)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_posting(marketplace_id, posting_id);
$$;

CREATE FUNCTION @extschema@.bidguard_set_bid_status(
    bid_id bigint, new_status text, reason text DEFAULT NULL)
RETURNS TABLE (bid_id bigint, changed boolean, old_status text, status text)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_id(bid_id, 'bid_id');
$$;

CREATE FUNCTION @extschema@.bidguard_withdraw_bid(bid_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (bid_id bigint, withdrawn boolean, status text)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_id(bid_id, 'bid_id');
$$;

CREATE FUNCTION @extschema@.bidguard_withdraw_posting(
    marketplace_id text, posting_id text, reason text DEFAULT NULL)
RETURNS TABLE (bid_id bigint, withdrawn boolean, status text)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_posting(marketplace_id, posting_id);
$$;

--
-- Bots and trades, routed by bot or by id.
--
CREATE FUNCTION @extschema@.bidguard_set_cooldown(bot_id bigint, cooldown interval)
RETURNS void
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_bot(bot_id);
$$;

CREATE FUNCTION @extschema@.bidguard_try_trade(
    bot_id bigint, trade_data jsonb DEFAULT '{}'::jsonb, wait interval DEFAULT '0')
RETURNS TABLE (trade_id bigint, executed boolean, reason text,
               retry_after interval, atomic_event_id uuid)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_bot(bot_id);
$$;

CREATE FUNCTION @extschema@.bidguard_fill_trade(trade_id bigint, filled_at timestamptz DEFAULT NULL)
RETURNS TABLE (trade_id bigint, changed boolean, status text)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_id(trade_id, 'trade_id');
$$;

CREATE FUNCTION @extschema@.bidguard_fail_trade(trade_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (trade_id bigint, changed boolean, status text)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_id(trade_id, 'trade_id');
$$;

COMMENT ON FUNCTION @extschema@.bidguard_try_trade(bigint, jsonb, interval) IS
    'bidguard_try_trade on the bot''s shard; commits there at once: an executed trade stays open (holding the cooldown) until filled, failed or swept, whatever this transaction does';

--
-- Rate limits, routed by key: the key's window lives on its shard.  The
-- units an admitted call takes commit there when the proxied call returns,
-- so a transaction on the proxy that rolls back afterwards does not give
-- them back (on a shard, or without PL/Proxy, it does).
--
CREATE FUNCTION @extschema@.bidguard_rate_limit(
    key text, max_count integer, per interval, cost integer DEFAULT 1)
RETURNS TABLE (allowed boolean, remaining integer, retry_after interval, reset_after interval)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_key(key);
$$;

CREATE FUNCTION @extschema@.bidguard_rate_limit(key text, cost integer DEFAULT 1)
RETURNS TABLE (allowed boolean, remaining integer, retry_after interval, reset_after interval)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_key(key);
$$;

COMMENT ON FUNCTION @extschema@.bidguard_rate_limit(text, integer, interval, integer) IS
    'bidguard_rate_limit on the key''s shard; the units commit there when the call returns';

-- who holds a key's slots, on the key's shard (read-only)
CREATE FUNCTION @extschema@.bidguard_slot_holders(key text, max_slots integer)
RETURNS TABLE (slot integer, pid integer, granted boolean, wait_start timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON bidguard_route_key(key);
$$;

--
-- Refused: a lock taken through the proxy would be released when the proxied
-- call commits, before it returns.
--
CREATE FUNCTION @extschema@.bidguard_lock(namespace text, key text, wait interval DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'bidguard_lock cannot be used through PL/Proxy'
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'Each proxied call commits on its shard before it returns, so the lock would be released at once.',
              HINT = 'Take the lock in a function that runs on the shard, or use bidguard_try_trade, whose open trade holds the cooldown.';
END
$fn$;

-- Slots: refused for the same reason (a transaction slot would be released
-- as the proxied call commits; a session slot would belong to the proxy's
-- connection to the shard, not to the client).
CREATE FUNCTION @extschema@.bidguard_slot_refused(what text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION '% cannot be used through PL/Proxy', what
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'Each proxied call commits on its shard before it returns, so a slot would be released at once, or held by the proxy''s connection.',
              HINT = 'Take slots in a function that runs on the shard.';
END
$fn$;

CREATE FUNCTION @extschema@.bidguard_acquire_slot(key text, max_slots integer, wait interval DEFAULT '0')
RETURNS TABLE (acquired boolean, slot integer, reason text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@.bidguard_slot_refused('bidguard_acquire_slot');
END
$fn$;

CREATE FUNCTION @extschema@.bidguard_acquire_session_slot(key text, max_slots integer, wait interval DEFAULT '0')
RETURNS TABLE (acquired boolean, slot integer, reason text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@.bidguard_slot_refused('bidguard_acquire_session_slot');
END
$fn$;

CREATE FUNCTION @extschema@.bidguard_release_slot(key text, slot integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@.bidguard_slot_refused('bidguard_release_slot');
    RETURN false;
END
$fn$;

--
-- Guarding application tables: on every shard.  The table is named by text
-- here (a regclass would be resolved in this database, which has no such table).
--
CREATE FUNCTION @extschema@.bidguard_guard_cooldown(tbl text, key_column name, time_column name,
    cooldown interval, fill_column name DEFAULT NULL)
RETURNS SETOF integer[]
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions FROM bidguard_guard_cooldown(tbl::regclass, key_column, time_column, cooldown, fill_column),
           bidguard_shard_info AS i;
$$;

CREATE FUNCTION @extschema@.bidguard_unguard_cooldown(tbl text)
RETURNS SETOF integer[]
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions FROM bidguard_unguard_cooldown(tbl::regclass), bidguard_shard_info AS i;
$$;

CREATE FUNCTION @extschema@.bidguard_guard_unique_active(tbl text, key_columns name[],
    status_column name, active_statuses text[])
RETURNS TABLE (partitions integer[], index_name name)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, g AS index_name
      FROM bidguard_guard_unique_active(tbl::regclass, key_columns, status_column, active_statuses) AS g,
           bidguard_shard_info AS i;
$$;

CREATE FUNCTION @extschema@.bidguard_stats_reset()
RETURNS SETOF integer[]
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions FROM bidguard_stats_reset(), bidguard_shard_info AS i;
$$;
REVOKE ALL ON FUNCTION @extschema@.bidguard_stats_reset() FROM PUBLIC;

--
-- The sweeper, on every shard.
--
CREATE FUNCTION @extschema@.bidguard_sweep_open_trades(
    older_than interval DEFAULT '15 minutes', max_trades integer DEFAULT 1000)
RETURNS TABLE (trade_id bigint, bot_id bigint, created_at timestamptz, open_for interval)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
$$;
REVOKE ALL ON FUNCTION @extschema@.bidguard_sweep_open_trades(interval, integer) FROM PUBLIC;

--
-- Cluster-wide views: each shard's rows (RUN ON ALL), and their sums.
--
CREATE FUNCTION @extschema@.bidguard_shard_rows_info()
RETURNS TABLE (partition_count integer, partitions integer[], configured_at timestamptz,
               database text, system_identifier bigint, server_version text, in_recovery boolean)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT partition_count, partitions, configured_at, database, system_identifier,
           server_version, in_recovery
      FROM bidguard_shard_info;
$$;

CREATE VIEW @extschema@.bidguard_shards AS
SELECT * FROM @extschema@.bidguard_shard_rows_info();

CREATE FUNCTION @extschema@.bidguard_shard_rows_stats()
RETURNS TABLE (partitions integer[], bids_created bigint, bids_deduplicated bigint,
               bids_withdrawn bigint, transitions_rejected bigint, trades_executed bigint,
               trades_rejected_cooldown bigint, trades_rejected_busy bigint,
               lock_acquired bigint, lock_waited bigint, lock_wait_total_ms double precision,
               lock_wait_max_ms double precision, lock_timeouts bigint,
               rate_allowed bigint, rate_limited bigint, slots_acquired bigint,
               slots_busy bigint, slot_waits bigint, stats_reset timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, s.bids_created, s.bids_deduplicated, s.bids_withdrawn,
           s.transitions_rejected, s.trades_executed, s.trades_rejected_cooldown,
           s.trades_rejected_busy, s.lock_acquired, s.lock_waited, s.lock_wait_total_ms,
           s.lock_wait_max_ms, s.lock_timeouts, s.rate_allowed, s.rate_limited,
           s.slots_acquired, s.slots_busy, s.slot_waits, s.stats_reset
      FROM bidguard_stats AS s, bidguard_shard_info AS i;
$$;

CREATE VIEW @extschema@.bidguard_shard_stats AS
SELECT * FROM @extschema@.bidguard_shard_rows_stats();

CREATE VIEW @extschema@.bidguard_stats AS
SELECT pg_catalog.sum(bids_created)::bigint AS bids_created,
       pg_catalog.sum(bids_deduplicated)::bigint AS bids_deduplicated,
       pg_catalog.sum(bids_withdrawn)::bigint AS bids_withdrawn,
       pg_catalog.sum(transitions_rejected)::bigint AS transitions_rejected,
       pg_catalog.sum(trades_executed)::bigint AS trades_executed,
       pg_catalog.sum(trades_rejected_cooldown)::bigint AS trades_rejected_cooldown,
       pg_catalog.sum(trades_rejected_busy)::bigint AS trades_rejected_busy,
       pg_catalog.sum(lock_acquired)::bigint AS lock_acquired,
       pg_catalog.sum(lock_waited)::bigint AS lock_waited,
       pg_catalog.sum(lock_wait_total_ms) AS lock_wait_total_ms,
       pg_catalog.max(lock_wait_max_ms) AS lock_wait_max_ms,
       pg_catalog.sum(lock_timeouts)::bigint AS lock_timeouts,
       pg_catalog.sum(rate_allowed)::bigint AS rate_allowed,
       pg_catalog.sum(rate_limited)::bigint AS rate_limited,
       pg_catalog.sum(slots_acquired)::bigint AS slots_acquired,
       pg_catalog.sum(slots_busy)::bigint AS slots_busy,
       pg_catalog.sum(slot_waits)::bigint AS slot_waits,
       pg_catalog.min(stats_reset) AS stats_reset
  FROM @extschema@.bidguard_shard_rows_stats();

COMMENT ON VIEW @extschema@.bidguard_stats IS
    'bidguard_stats summed over every shard (lock_wait_max_ms: the largest; stats_reset: the oldest)';

CREATE FUNCTION @extschema@.bidguard_shard_rows_histogram()
RETURNS TABLE (le_ms double precision, count bigint)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT le_ms, count FROM bidguard_lock_wait_histogram;
$$;

CREATE VIEW @extschema@.bidguard_lock_wait_histogram AS
SELECT le_ms, pg_catalog.sum(count)::bigint AS count
  FROM @extschema@.bidguard_shard_rows_histogram()
 GROUP BY le_ms;

CREATE FUNCTION @extschema@.bidguard_shard_rows_locks()
RETURNS TABLE (partitions integer[], pid integer, kind text, key bigint, granted boolean,
               wait_start timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, l.pid, l.kind, l.key, l.granted, l.wait_start
      FROM bidguard_locks AS l, bidguard_shard_info AS i;
$$;

CREATE VIEW @extschema@.bidguard_locks AS
SELECT * FROM @extschema@.bidguard_shard_rows_locks();

CREATE FUNCTION @extschema@.bidguard_shard_rows_active_bids()
RETURNS TABLE (partitions integer[], marketplace_id text, posting_id text, bid_id bigint)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, b.marketplace_id, b.posting_id, b.bid_id
      FROM bidguard_bids AS b, bidguard_shard_info AS i
     WHERE b.status IN ('pending', 'submitted');
$$;

-- Across shards: a posting active twice anywhere (ships every active bid here).
CREATE VIEW @extschema@.bidguard_duplicate_active_bids AS
SELECT marketplace_id, posting_id, pg_catalog.count(*) AS active_bids,
       pg_catalog.array_agg(bid_id ORDER BY bid_id) AS bid_ids
  FROM @extschema@.bidguard_shard_rows_active_bids()
 GROUP BY marketplace_id, posting_id
HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1;

CREATE FUNCTION @extschema@.bidguard_shard_rows_violations()
RETURNS TABLE (partitions integer[], bot_id bigint, prev_trade_id bigint, trade_id bigint,
               prev_effective_at timestamptz, admitted_at timestamptz, gap interval, cooldown interval)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, v.bot_id, v.prev_trade_id, v.trade_id, v.prev_effective_at,
           v.admitted_at, v.gap, v.cooldown
      FROM bidguard_cooldown_violations AS v, bidguard_shard_info AS i;
$$;

CREATE VIEW @extschema@.bidguard_cooldown_violations AS
SELECT * FROM @extschema@.bidguard_shard_rows_violations();

CREATE FUNCTION @extschema@.bidguard_shard_rows_misplaced()
RETURNS TABLE (partitions integer[], table_name text, id bigint, key_partition integer,
               id_partition integer)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, m.table_name::text, m.id, m.key_partition, m.id_partition
      FROM bidguard_shard_misplaced AS m, bidguard_shard_info AS i;
$$;

-- Rows on a shard their key or id does not route to; and bots on two shards.
CREATE VIEW @extschema@.bidguard_misplaced_rows AS
SELECT * FROM @extschema@.bidguard_shard_rows_misplaced();

CREATE FUNCTION @extschema@.bidguard_shard_rows_guards()
RETURNS TABLE (partitions integer[], kind text, table_name text, key_columns name[],
               time_column name, fill_column name, cooldown interval, condition text,
               index_name text, trigger_name name)
LANGUAGE plproxy AS $$
    CLUSTER 'bidguard';
    RUN ON ALL;
    SELECT i.partitions, g.kind, g.table_name::text, g.key_columns, g.time_column,
           g.fill_column, g.cooldown, g.condition, g.index_name::text, g.trigger_name
      FROM bidguard_guards AS g, bidguard_shard_info AS i;
$$;

CREATE VIEW @extschema@.bidguard_guards AS
SELECT * FROM @extschema@.bidguard_shard_rows_guards();

-- As on a single server: no data for PUBLIC; the owner grants what roles need.
REVOKE ALL ON @extschema@.bidguard_duplicate_active_bids, @extschema@.bidguard_cooldown_violations,
              @extschema@.bidguard_locks, @extschema@.bidguard_misplaced_rows FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.bidguard_shard_rows_active_bids(),
              @extschema@.bidguard_shard_rows_violations(),
              @extschema@.bidguard_shard_rows_locks(),
              @extschema@.bidguard_shard_rows_misplaced() FROM PUBLIC;
