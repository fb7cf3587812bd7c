-- bidguard_proxy 1.0 to 1.1: rate limits routed by key, slots refused, the
-- new counters in the summed statistics.
--
-- Update the shards' bidguard to 1.1 first: the 1.1 proxy reads the new
-- counters from each shard's bidguard_stats.  Every statement below is the
-- install script's (bidguard_proxy--1.1.sql), so that an updated proxy and a
-- fresh one have the same catalog (test/t/021_upgrade.pl).

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bidguard_proxy UPDATE TO '1.1'" to load this file. \quit

CREATE FUNCTION @extschema@.bidguard_route_key(key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(@extschema@.bidguard_shard_key(key), @extschema@.bidguard_null_key('key'));

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
-- The summed statistics gain the rate-limit and slot counters: the function
-- under them changes its result columns, so it and its views are made again.
--
DROP VIEW @extschema@.bidguard_stats;
DROP VIEW @extschema@.bidguard_shard_stats;
DROP FUNCTION @extschema@.bidguard_shard_rows_stats();

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
