/* sql/bidguard--1.0--1.1.sql — bidguard 1.0 to 1.1: rate limits and concurrency slots */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION bidguard UPDATE TO '1.1'" to load this file. \quit

/*
 * Every statement below is the install script's (sql/bidguard.sql) as of
 * 1.1, so that an updated database and a fresh 1.1 install have the same
 * catalog (test/t/021_upgrade.pl compares them object by object).  Views
 * whose columns only grow are replaced in place, keeping their grants; the
 * bidguard_stats view gains columns in the middle and is dropped and made
 * again, with its function, which 1.1 binds to the C symbol
 * bidguard_stats_1_1 (the 1.0 symbol bidguard_stats stays in the library,
 * so a 1.0 database keeps working against the 1.1 library until it is
 * updated).  A view of your own over bidguard_stats makes this update fail
 * with 2BP01: drop it first and make it again afterwards.
 */

--
-- bidguard_locks: the two new lock classes, rate (25093) and slot (25094).
--
CREATE OR REPLACE VIEW @extschema@.bidguard_locks AS
SELECT l.pid,
       CASE l.objsubid WHEN 25089 THEN 'bid' WHEN 25090 THEN 'bot' WHEN 25091 THEN 'user'
                       WHEN 25092 THEN 'guard' WHEN 25093 THEN 'rate' ELSE 'slot' END AS kind,
       (l.classid::pg_catalog.int8 OPERATOR(pg_catalog.<<) 32)
           OPERATOR(pg_catalog.|) l.objid::pg_catalog.int8 AS key,
       l.granted,
       l.waitstart AS wait_start,
       l.database
  FROM pg_catalog.pg_locks AS l
 WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'
   AND l.objsubid OPERATOR(pg_catalog.=) ANY ('{25089,25090,25091,25092,25093,25094}'::pg_catalog.int2[]);

COMMENT ON VIEW @extschema@.bidguard_locks IS
    'bidguard locks held or awaited now: kind bid (key = bidguard_lock_key(marketplace_id, posting_id)), bot (key = bot_id), user (key = bidguard_lock_key(namespace, key)) guard (a key of a table guarded with bidguard_guard_cooldown), rate (key = bidguard_lock_key(''rate'', key) of bidguard_rate_limit) or slot (key = bidguard_lock_key(key, slot::text) of bidguard_acquire_slot)';

--
-- Rate limits and concurrency slots (src/rate_limit.c, src/rate_guard.c, src/slots.c).
--
-- A rate limit is a sliding window log: every admitted unit of a key is a
-- row of bidguard_rate_events, written in the caller's transaction, so a
-- rollback gives its quota back and the log is the audit of what was let
-- through.  Configured limits are matched by the longest key prefix.
--
CREATE TABLE @extschema@.bidguard_rate_limits (
    key_prefix  text        NOT NULL,
    max_count   integer     NOT NULL,
    per         interval    NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    CONSTRAINT bidguard_rate_limits_pkey PRIMARY KEY (key_prefix),
    CONSTRAINT bidguard_rate_limits_key_prefix_check
        CHECK (pg_catalog.length(key_prefix) OPERATOR(pg_catalog.<=) 256),
    CONSTRAINT bidguard_rate_limits_max_count_check
        CHECK (max_count OPERATOR(pg_catalog.>) 0),
    CONSTRAINT bidguard_rate_limits_per_check
        CHECK (per OPERATOR(pg_catalog.>) '0'::pg_catalog.interval AND pg_catalog.isfinite(per))
);

COMMENT ON TABLE @extschema@.bidguard_rate_limits IS
    'configured rate limits: a key is limited by the row with the longest key_prefix it starts with';

CREATE TABLE @extschema@.bidguard_rate_events (
    key         text        NOT NULL,
    at          timestamptz NOT NULL,
    cost        integer     NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT bidguard_rate_events_cost_check CHECK (cost OPERATOR(pg_catalog.>) 0),
    CONSTRAINT bidguard_rate_events_expires_check CHECK (expires_at OPERATOR(pg_catalog.>) at)
);

CREATE INDEX bidguard_rate_events_key_at_idx ON @extschema@.bidguard_rate_events (key, at);

COMMENT ON TABLE @extschema@.bidguard_rate_events IS
    'the units each rate-limited key was granted, one row per admitted call, kept until expires_at (at + the window)';

CREATE FUNCTION @extschema@.bidguard_rate_limit(
    key text,
    max_count integer,
    per interval,
    cost integer DEFAULT 1)
RETURNS TABLE (allowed boolean, remaining integer, retry_after interval, reset_after interval)
AS 'MODULE_PATHNAME', 'bidguard_rate_limit'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_rate_limit(text, integer, interval, integer) IS
    'admits cost units of key unless that would make more than max_count within per (sliding window); the units are given back if the transaction rolls back';

CREATE FUNCTION @extschema@.bidguard_rate_limit(
    key text,
    cost integer DEFAULT 1)
RETURNS TABLE (allowed boolean, remaining integer, retry_after interval, reset_after interval)
AS 'MODULE_PATHNAME', 'bidguard_rate_limit_configured'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_rate_limit(text, integer) IS
    'bidguard_rate_limit under the limit of bidguard_rate_limits whose key_prefix is the longest that key starts with';

CREATE FUNCTION @extschema@.bidguard_prune_rate_events()
RETURNS bigint
AS 'MODULE_PATHNAME', 'bidguard_prune_rate_events'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_prune_rate_events() IS
    'deletes the rate events whose window has passed; returns how many';

CREATE FUNCTION @extschema@.bidguard_rate_limit_guard_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'bidguard_rate_limit_guard_trigger'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.bidguard_guard_rate_limit(tbl pg_catalog.regclass, key_column name,
    max_count integer DEFAULT NULL, per interval DEFAULT NULL, key_prefix text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'bidguard_guard_rate_limit'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_guard_rate_limit(pg_catalog.regclass, name, integer, interval, text) IS
    'limits plain INSERTs into tbl to max_count rows per key_column value within per (or the configured limit of key_prefix); returns the key prefix';

CREATE FUNCTION @extschema@.bidguard_unguard_rate_limit(tbl pg_catalog.regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'bidguard_unguard_rate_limit'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_unguard_rate_limit(pg_catalog.regclass) IS
    'removes the rate-limit guard of tbl; its rate events stay until they expire';

--
-- Concurrency slots: at most max_slots holders of a key at once, each slot
-- one of bidguard's locks (class slot, key = bidguard_lock_key(key, slot)).
--
CREATE FUNCTION @extschema@.bidguard_acquire_slot(key text, max_slots integer,
    wait interval DEFAULT '0')
RETURNS TABLE (acquired boolean, slot integer, reason text)
AS 'MODULE_PATHNAME', 'bidguard_acquire_slot'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_acquire_slot(text, integer, interval) IS
    'takes one of max_slots slots of key until the end of the transaction, waiting at most wait; reason acquired or busy';

CREATE FUNCTION @extschema@.bidguard_acquire_session_slot(key text, max_slots integer,
    wait interval DEFAULT '0')
RETURNS TABLE (acquired boolean, slot integer, reason text)
AS 'MODULE_PATHNAME', 'bidguard_acquire_session_slot'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_acquire_session_slot(text, integer, interval) IS
    'as bidguard_acquire_slot, held until bidguard_release_slot or the end of the session; refused when bidguard.pool_mode is transaction or statement';

CREATE FUNCTION @extschema@.bidguard_release_slot(key text, slot integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bidguard_release_slot'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_release_slot(text, integer) IS
    'releases a session slot this session holds; false when it holds none of that key and number';

CREATE FUNCTION @extschema@.bidguard_slot_holders(key text, max_slots integer)
RETURNS TABLE (slot integer, pid integer, granted boolean, wait_start timestamptz)
AS 'MODULE_PATHNAME', 'bidguard_slot_holders'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.bidguard_slot_holders(text, integer) IS
    'who holds or awaits each of the max_slots slots of key now (from pg_locks)';

CREATE FUNCTION @extschema@.bidguard_slot_guard_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'bidguard_slot_guard_trigger'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.bidguard_guard_slots(tbl pg_catalog.regclass, key_column name,
    max_slots integer, wait interval DEFAULT '0', key_prefix text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'bidguard_guard_slots'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_guard_slots(pg_catalog.regclass, name, integer, interval, text) IS
    'lets at most max_slots transactions at once insert rows of the same key_column value into tbl (55P03 after wait); returns the key prefix';

CREATE FUNCTION @extschema@.bidguard_unguard_slots(tbl pg_catalog.regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'bidguard_unguard_slots'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.bidguard_unguard_slots(pg_catalog.regclass) IS
    'removes the slot guard of tbl';

--
-- bidguard_guards: the rate-limit and slot guards, in three new columns.
--
CREATE OR REPLACE VIEW @extschema@.bidguard_guards AS
SELECT 'cooldown'::pg_catalog.text AS kind,
       t.tgrelid::pg_catalog.regclass AS table_name,
       ARRAY[k.attname] AS key_columns,
       tm.attname AS time_column,
       f.attname AS fill_column,
       pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1)::pg_catalog.interval AS cooldown,
       NULL::pg_catalog.text AS condition,
       (SELECT i.indexrelid::pg_catalog.regclass
          FROM pg_catalog.pg_index AS i
          JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid
          JOIN pg_catalog.pg_am AS am ON am.oid OPERATOR(pg_catalog.=) c.relam
          CROSS JOIN LATERAL (SELECT COALESCE(pg_catalog.obj_description(i.indexrelid, 'pg_class')
                                              OPERATOR(pg_catalog.~~) 'bidguard_guard_cooldown:%', false)
                                     AS made) AS m
         WHERE i.indrelid OPERATOR(pg_catalog.=) t.tgrelid AND i.indisvalid
           AND i.indkey[0] OPERATOR(pg_catalog.=) t.tgattr[0]
           AND (m.made OR
                (am.amname OPERATOR(pg_catalog.=) 'btree' AND i.indpred IS NULL
                 AND i.indnkeyatts OPERATOR(pg_catalog.>=) 2
                 AND CASE WHEN f.attname IS NULL
                          THEN i.indkey[1] OPERATOR(pg_catalog.=) t.tgattr[1]
                          ELSE i.indkey[1] OPERATOR(pg_catalog.=) 0 AND
                               pg_catalog.pg_get_indexdef(i.indexrelid, 2, false) OPERATOR(pg_catalog.=)
                               pg_catalog.format('COALESCE(%s, %s)', pg_catalog.quote_ident(f.attname),
                                                 pg_catalog.quote_ident(tm.attname)) END))
         ORDER BY m.made DESC, i.indexrelid
         LIMIT 1) AS index_name,
       t.tgname AS trigger_name,
       NULL::pg_catalog.int4 AS max_count,
       NULL::pg_catalog.interval AS per,
       NULL::pg_catalog.text AS key_prefix
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_attribute AS k
    ON k.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND k.attnum OPERATOR(pg_catalog.=) t.tgattr[0]
  JOIN pg_catalog.pg_attribute AS tm
    ON tm.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND tm.attnum OPERATOR(pg_catalog.=) t.tgattr[1]
  LEFT JOIN pg_catalog.pg_attribute AS f
    ON f.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND f.attnum OPERATOR(pg_catalog.=) t.tgattr[2]
 WHERE t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.bidguard_cooldown_guard_trigger()'::pg_catalog.regprocedure
UNION ALL
SELECT 'unique_active',
       i.indrelid::pg_catalog.regclass,
       ARRAY(SELECT a.attname
               FROM pg_catalog.generate_subscripts(i.indkey, 1) AS s(n)
               JOIN pg_catalog.pg_attribute AS a
                 ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                AND a.attnum OPERATOR(pg_catalog.=) i.indkey[s.n]
              ORDER BY s.n),
       NULL, NULL, NULL,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid),
       i.indexrelid::pg_catalog.regclass,
       NULL, NULL, NULL, NULL
  FROM pg_catalog.pg_index AS i
 WHERE i.indisunique
   AND pg_catalog.obj_description(i.indexrelid, 'pg_class') OPERATOR(pg_catalog.~~) 'bidguard_guard_unique_active:%'
UNION ALL
SELECT 'rate_limit',
       t.tgrelid::pg_catalog.regclass,
       ARRAY[k.attname],
       NULL, NULL, NULL, NULL, NULL,
       t.tgname,
       NULLIF(pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1), '')::pg_catalog.int4,
       NULLIF(pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 2), '')::pg_catalog.interval,
       pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 3)
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_attribute AS k
    ON k.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND k.attnum OPERATOR(pg_catalog.=) t.tgattr[0]
 WHERE t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.bidguard_rate_limit_guard_trigger()'::pg_catalog.regprocedure
UNION ALL
SELECT 'slots',
       t.tgrelid::pg_catalog.regclass,
       ARRAY[k.attname],
       NULL, NULL, NULL, NULL, NULL,
       t.tgname,
       pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 1)::pg_catalog.int4,
       NULL,
       pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 3)
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_attribute AS k
    ON k.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND k.attnum OPERATOR(pg_catalog.=) t.tgattr[0]
 WHERE t.tgfoid OPERATOR(pg_catalog.=) '@extschema@.bidguard_slot_guard_trigger()'::pg_catalog.regprocedure;

COMMENT ON VIEW @extschema@.bidguard_guards IS
    'the guards on application tables: kind cooldown (a trigger, and the index serving it), unique_active (a partial unique index), rate_limit (a trigger; max_count and per NULL: the configured limit of key_prefix) or slots (a trigger; max_count: the slots)';

--
-- bidguard_stats: the rate-limit and slot counters, before stats_reset.
--
DROP VIEW @extschema@.bidguard_stats;
DROP FUNCTION @extschema@.bidguard_stats();

CREATE FUNCTION @extschema@.bidguard_stats(
    OUT bids_created bigint,
    OUT bids_deduplicated bigint,
    OUT bids_withdrawn bigint,
    OUT transitions_rejected bigint,
    OUT trades_executed bigint,
    OUT trades_rejected_cooldown bigint,
    OUT trades_rejected_busy bigint,
    OUT lock_acquired bigint,
    OUT lock_waited bigint,
    OUT lock_timeouts bigint,
    OUT rate_allowed bigint,
    OUT rate_limited bigint,
    OUT slots_acquired bigint,
    OUT slots_busy bigint,
    OUT slot_waits bigint,
    OUT lock_wait_total_ms double precision,
    OUT lock_wait_max_ms double precision,
    OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'bidguard_stats_1_1'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE VIEW @extschema@.bidguard_stats AS
SELECT bids_created, bids_deduplicated, bids_withdrawn, transitions_rejected,
       trades_executed, trades_rejected_cooldown, trades_rejected_busy,
       lock_acquired, lock_waited, lock_wait_total_ms, lock_wait_max_ms,
       lock_timeouts, rate_allowed, rate_limited, slots_acquired, slots_busy, slot_waits,
       stats_reset
  FROM @extschema@.bidguard_stats();

COMMENT ON VIEW @extschema@.bidguard_stats IS
    'what bidguard''s guards did since the last reset (shared_preload_libraries = ''bidguard'')';

--
-- The new tables hold user data (pg_dump keeps their rows) and give PUBLIC
-- nothing, as the others.
--
SELECT pg_catalog.pg_extension_config_dump('@extschema@.bidguard_rate_limits', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.bidguard_rate_events', '');

REVOKE ALL ON @extschema@.bidguard_rate_limits, @extschema@.bidguard_rate_events FROM PUBLIC;
