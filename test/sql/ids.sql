--
-- Ids: bidguard_uuid_v7(), the default of every atomic_event_id and event_id.
-- Version 7 (RFC 9562): 48 bits of Unix milliseconds, version nibble 7,
-- 12 bits of sub-millisecond fraction, variant 0b10, 62 random bits.
--
CREATE FUNCTION pg_temp.uuid_ms(u uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE AS
$$SELECT ('x' || lpad(replace(substr(u::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint$$;
CREATE FUNCTION pg_temp.uuid_version(u uuid) RETURNS text
LANGUAGE sql IMMUTABLE AS $$SELECT substr(u::text, 15, 1)$$;
-- the variant's two bits are 10: the 17th hex digit is 8, 9, a or b
CREATE FUNCTION pg_temp.uuid_variant_ok(u uuid) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$SELECT substr(u::text, 20, 1) IN ('8', '9', 'a', 'b')$$;

-- version, variant, and the time it carries is now (to the clock's precision)
SELECT pg_temp.uuid_version(u) AS version, pg_temp.uuid_variant_ok(u) AS variant_ok,
       abs(pg_temp.uuid_ms(u) - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 5000
           AS time_is_now
  FROM bidguard_uuid_v7() AS u;

-- in one session, strictly increasing however fast they are made, and unique
WITH g AS (SELECT i, bidguard_uuid_v7() AS u FROM generate_series(1, 20000) AS i)
SELECT count(*) FILTER (WHERE u <= prev) AS not_increasing,
       count(DISTINCT u) AS distinct_ids,
       count(*) FILTER (WHERE pg_temp.uuid_version(u) <> '7'
                           OR NOT pg_temp.uuid_variant_ok(u)) AS malformed
  FROM (SELECT u, lag(u) OVER (ORDER BY i) AS prev FROM g) AS s;

-- the random part is random: 20,000 ids made within a few milliseconds
-- differ in their last 62 bits
SELECT count(DISTINCT substr(u::text, 20)) AS distinct_random_parts
  FROM (SELECT bidguard_uuid_v7() AS u FROM generate_series(1, 20000)) AS g;

-- the defaults: bids, trades and their events get version-7 ids, and a
-- later row's id sorts after an earlier one's
SELECT bid_id AS id_bid1, atomic_event_id AS id_uuid1 FROM bidguard_create_bid('ids', 'p1') \gset
SELECT bid_id AS id_bid2, atomic_event_id AS id_uuid2 FROM bidguard_create_bid('ids', 'p2') \gset
SELECT pg_temp.uuid_version(:'id_uuid1') AS bid_version, :'id_uuid1'::uuid < :'id_uuid2'::uuid AS ordered;
SELECT changed FROM bidguard_set_bid_status(:id_bid1, 'submitted');
SELECT bidguard_set_cooldown(4242, '1 hour');
SELECT pg_temp.uuid_version(atomic_event_id) AS trade_version FROM bidguard_try_trade(4242);
SELECT kind, pg_temp.uuid_version(event_id) AS version, pg_temp.uuid_variant_ok(event_id) AS variant_ok
  FROM bidguard_events WHERE bid_id IN (:id_bid1, :id_bid2) OR bot_id = 4242
 ORDER BY event_id;

-- an id given explicitly is kept, whatever its version
INSERT INTO bidguard_bids (marketplace_id, posting_id, atomic_event_id)
VALUES ('ids', 'p3', '00000000-0000-4000-8000-000000000001');
SELECT kind FROM bidguard_events WHERE event_id = '00000000-0000-4000-8000-000000000001';

-- volatile, parallel restricted (the order is per backend process), executable by anyone
SELECT provolatile, proparallel, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc AS p WHERE p.oid = 'bidguard_uuid_v7()'::regprocedure;
