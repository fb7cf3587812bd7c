-- test/pgtap/rate_slots.sql
--	  Rate limits and concurrency slots (doc/api.md, "Rate limits and concurrency slots"):
--	  the tables and their checks, the functions' exact signatures and
--	  result columns, defaults, privileges (PUBLIC has none on the tables; a
--	  worker needs INSERT on bidguard_rate_events, nothing else), the
--	  SQLSTATEs a caller can cause, the guard's 23P01 with its constraint
--	  name, and the counters in bidguard_stats.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(65);

SELECT n.nspname AS bg_schema
  FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'bidguard' \gset

--
-- Tables.
--
SELECT has_table(:'bg_schema', 'bidguard_rate_limits', 'table bidguard_rate_limits exists');
SELECT columns_are(:'bg_schema', 'bidguard_rate_limits',
                   ARRAY['key_prefix', 'max_count', 'per', 'updated_at']);
SELECT col_is_pk(:'bg_schema', 'bidguard_rate_limits', 'key_prefix', 'key_prefix is the key of bidguard_rate_limits');
SELECT col_type_is(:'bg_schema', 'bidguard_rate_limits', 'max_count', 'integer', 'max_count is integer');
SELECT col_type_is(:'bg_schema', 'bidguard_rate_limits', 'per', 'interval', 'per is interval');
SELECT has_table(:'bg_schema', 'bidguard_rate_events', 'table bidguard_rate_events exists');
SELECT columns_are(:'bg_schema', 'bidguard_rate_events', ARRAY['key', 'at', 'cost', 'expires_at']);
SELECT has_index(:'bg_schema', 'bidguard_rate_events', 'bidguard_rate_events_key_at_idx',
                 ARRAY['key', 'at'], 'the window is read by (key, at)');
SELECT ok((SELECT array['bidguard_rate_limits', 'bidguard_rate_events']::text[] <@ array_agg(c.relname::text)
             FROM pg_extension AS e, unnest(e.extconfig) AS x(oid)
             JOIN pg_class AS c ON c.oid = x.oid
            WHERE e.extname = 'bidguard'),
          'the limits and the units taken are user data, kept by pg_dump');
SELECT throws_ok($$INSERT INTO bidguard_rate_limits VALUES ('x:', 0, '1 minute')$$, '23514', NULL,
                 'max_count must be positive');
SELECT throws_ok($$INSERT INTO bidguard_rate_limits VALUES ('x:', 1, '0')$$, '23514', NULL,
                 'per must be positive');
SELECT throws_ok($$INSERT INTO bidguard_rate_limits VALUES (repeat('x', 257), 1, '1 minute')$$, '23514', NULL,
                 'a key prefix has at most 256 characters');

--
-- Functions: signatures, results, defaults.
--
SELECT has_function('bidguard_rate_limit', ARRAY['text', 'integer', 'interval', 'integer']);
SELECT has_function('bidguard_rate_limit', ARRAY['text', 'integer']);
SELECT is(pg_get_function_result('bidguard_rate_limit(text, integer, interval, integer)'::regprocedure),
          'TABLE(allowed boolean, remaining integer, retry_after interval, reset_after interval)',
          'bidguard_rate_limit returns allowed, remaining, retry_after, reset_after');
SELECT is(pg_get_function_result('bidguard_rate_limit(text, integer)'::regprocedure),
          'TABLE(allowed boolean, remaining integer, retry_after interval, reset_after interval)',
          'the configured form returns the same columns');
SELECT is(pg_get_function_arguments('bidguard_rate_limit(text, integer, interval, integer)'::regprocedure),
          'key text, max_count integer, per interval, cost integer DEFAULT 1',
          'cost defaults to 1');
SELECT is(pg_get_function_arguments('bidguard_rate_limit(text, integer)'::regprocedure),
          'key text, cost integer DEFAULT 1', 'the configured form: key and cost');
SELECT volatility_is('bidguard_rate_limit', ARRAY['text', 'integer', 'interval', 'integer'], 'volatile');
SELECT has_function('bidguard_prune_rate_events', ARRAY[]::text[]);
SELECT function_returns('bidguard_prune_rate_events', ARRAY[]::text[], 'bigint');
SELECT has_function('bidguard_guard_rate_limit', ARRAY['regclass', 'name', 'integer', 'interval', 'text']);
SELECT function_returns('bidguard_guard_rate_limit', ARRAY['regclass', 'name', 'integer', 'interval', 'text'], 'text');
SELECT has_function('bidguard_unguard_rate_limit', ARRAY['regclass']);
SELECT has_function('bidguard_acquire_slot', ARRAY['text', 'integer', 'interval']);
SELECT has_function('bidguard_acquire_session_slot', ARRAY['text', 'integer', 'interval']);
SELECT is(pg_get_function_result('bidguard_acquire_slot(text, integer, interval)'::regprocedure),
          'TABLE(acquired boolean, slot integer, reason text)',
          'bidguard_acquire_slot returns acquired, slot, reason');
SELECT is(pg_get_function_arguments('bidguard_acquire_slot(text, integer, interval)'::regprocedure),
          'key text, max_slots integer, wait interval DEFAULT ''00:00:00''::interval',
          'wait defaults to 0: try once');
SELECT is(pg_get_function_result('bidguard_acquire_session_slot(text, integer, interval)'::regprocedure),
          'TABLE(acquired boolean, slot integer, reason text)', 'the session form returns the same columns');
SELECT has_function('bidguard_release_slot', ARRAY['text', 'integer']);
SELECT function_returns('bidguard_release_slot', ARRAY['text', 'integer'], 'boolean');
SELECT is(pg_get_function_result('bidguard_slot_holders(text, integer)'::regprocedure),
          'TABLE(slot integer, pid integer, granted boolean, wait_start timestamp with time zone)',
          'bidguard_slot_holders returns slot, pid, granted, wait_start');

--
-- Behaviour a caller relies on.
--
SET LOCAL bidguard.test_clock = '2026-05-01 08:00:00+00';
SELECT results_eq($$SELECT allowed, remaining FROM bidguard_rate_limit('tap:a', 2, '1 minute')$$,
                  $$VALUES (true, 1)$$, 'the first unit is admitted, one left');
SELECT results_eq($$SELECT allowed, remaining FROM bidguard_rate_limit('tap:a', 2, '1 minute')$$,
                  $$VALUES (true, 0)$$, 'the second too, none left');
SELECT results_eq($$SELECT allowed, remaining, retry_after FROM bidguard_rate_limit('tap:a', 2, '1 minute')$$,
                  $$VALUES (false, 0, interval '1 minute')$$, 'the third is refused, with retry_after');
SAVEPOINT before_giveback;
SELECT results_eq($$SELECT allowed FROM bidguard_rate_limit('tap:b', 1, '1 minute')$$,
                  $$VALUES (true)$$, 'a unit in a savepoint');
ROLLBACK TO SAVEPOINT before_giveback;
SELECT results_eq($$SELECT allowed FROM bidguard_rate_limit('tap:b', 1, '1 minute')$$,
                  $$VALUES (true)$$, 'rolled back, the unit is given back');
INSERT INTO bidguard_rate_limits VALUES ('tap:', 1, '1 hour'), ('tap:vip:', 3, '1 hour');
SELECT results_eq($$SELECT remaining FROM bidguard_rate_limit('tap:vip:x')$$, $$VALUES (2)$$,
                  'the longest matching prefix wins');
SELECT results_eq($$SELECT remaining FROM bidguard_rate_limit('tap:y')$$, $$VALUES (0)$$,
                  'a shorter prefix for other keys');
SELECT results_eq($$SELECT acquired, slot, reason FROM bidguard_acquire_slot('tap:slot', 1)$$,
                  $$VALUES (true, 1, 'acquired')$$, 'the one slot is had');
SELECT results_eq($$SELECT acquired, slot, reason FROM bidguard_acquire_slot('tap:slot', 1, '10 ms')$$,
                  $$VALUES (false, NULL::integer, 'busy')$$, 'the next is busy: this transaction holds it');

--
-- SQLSTATEs.
--
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit(NULL, 1, '1 minute')$$, '22004', NULL, 'NULL key: 22004');
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('k', 0, '1 minute')$$, '22023', NULL, 'max_count 0: 22023');
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('k', 1, '-1 minute')$$, '22023', NULL, 'negative per: 22023');
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('k', 1, '1 minute', 2)$$, '22023', NULL, 'cost above max_count: 22023');
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('k', 1, '1 minute', -1)$$, '22023', NULL, 'negative cost: 22023');
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('unconfigured')$$, '42704', NULL, 'no configured limit: 42704');
SELECT throws_ok($$SELECT * FROM bidguard_acquire_slot('k', 0)$$, '22023', NULL, 'max_slots 0: 22023');
SELECT throws_ok($$SELECT * FROM bidguard_acquire_slot(NULL, 1)$$, '22004', NULL, 'NULL slot key: 22004');
SET LOCAL bidguard.pool_mode = transaction;
SELECT throws_ok($$SELECT * FROM bidguard_acquire_session_slot('k', 1)$$, '55000', NULL,
                 'session slots behind a transaction pooler: 55000');
SET LOCAL bidguard.pool_mode = session;
CREATE TABLE tap_orders (id int GENERATED ALWAYS AS IDENTITY, customer text);
SELECT is(bidguard_guard_rate_limit('tap_orders', 'customer', 1, '1 hour'), 'public.tap_orders:',
          'the default key prefix is the table''s name');
INSERT INTO tap_orders (customer) VALUES ('c1');
SELECT throws_ok($$INSERT INTO tap_orders (customer) VALUES ('c1')$$, '23P01', NULL,
                 'a plain INSERT past the limit: 23P01');
SELECT throws_ok($$SELECT bidguard_unguard_rate_limit('bidguard_bids')$$, '42704', NULL,
                 'unguarding a table without the guard: 42704');
SELECT has_function('bidguard_guard_slots', ARRAY['regclass', 'name', 'integer', 'interval', 'text']);
CREATE TABLE tap_jobs (id int GENERATED ALWAYS AS IDENTITY, customer text);
SELECT is(bidguard_guard_slots('tap_jobs', 'customer', 2), 'public.tap_jobs:',
          'the slot guard returns its key prefix too');
INSERT INTO tap_jobs (customer) VALUES ('c2'), ('c2'), ('c2');
SELECT results_eq($$SELECT count(*)::int FROM bidguard_slot_holders('public.tap_jobs:c2', 2) WHERE pid = pg_backend_pid()$$,
                  $$VALUES (1)$$, 'three rows of one key in one transaction: one slot');
SELECT throws_ok($$SELECT bidguard_guard_slots('tap_jobs', 'customer', 10001)$$, '22023', NULL,
                 'slot guard with max_slots above 10000: 22023');

--
-- Privileges.
--
SELECT ok(NOT has_table_privilege('public', format('%I.bidguard_rate_events', :'bg_schema'),
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC has no privilege on bidguard_rate_events');
SELECT ok(NOT has_table_privilege('public', format('%I.bidguard_rate_limits', :'bg_schema'),
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'),
          'PUBLIC has no privilege on bidguard_rate_limits');
CREATE ROLE tap_rate_worker;
GRANT INSERT ON bidguard_rate_events TO tap_rate_worker;
GRANT SELECT ON bidguard_rate_limits TO tap_rate_worker;
SET LOCAL ROLE tap_rate_worker;
SELECT results_eq($$SELECT allowed FROM bidguard_rate_limit('tap:w', 1, '1 minute')$$, $$VALUES (true)$$,
                  'a worker granted INSERT on bidguard_rate_events is rate limited');
SELECT results_eq($$SELECT allowed FROM bidguard_rate_limit('tap:vip:w')$$, $$VALUES (true)$$,
                  'and can use the configured limits');
SELECT throws_ok($$DELETE FROM bidguard_rate_events$$, '42501', NULL,
                 'but cannot give itself units back by deleting them');
SELECT results_eq($$SELECT acquired FROM bidguard_acquire_slot('tap:w', 1)$$, $$VALUES (true)$$,
                  'slots need no privilege on any table');
RESET ROLE;
REVOKE INSERT ON bidguard_rate_events FROM tap_rate_worker;
SET LOCAL ROLE tap_rate_worker;
SELECT throws_ok($$SELECT * FROM bidguard_rate_limit('tap:w2', 1, '1 minute')$$, '42501', NULL,
                 'without INSERT on bidguard_rate_events: 42501');
RESET ROLE;

--
-- Counters (shared_preload_libraries = bidguard).
--
SELECT CASE WHEN current_setting('shared_preload_libraries') ~ 'bidguard'
            THEN ok((SELECT rate_allowed > 0 AND rate_limited > 0 AND slots_acquired > 0 AND slots_busy > 0
                       FROM bidguard_stats),
                    'bidguard_stats counts admitted and refused units, acquired and busy slots')
            ELSE skip('bidguard is not preloaded: no counters', 1) END;

SELECT * FROM finish();
ROLLBACK;
