-- test/pgtap/guards.sql
--	  The contract of SPEC §6 (guarding existing tables): the functions with
--	  their signatures and result types, the bidguard_guards view and its
--	  columns, the audit functions, and every SQLSTATE a caller can cause:
--	  22004 (NULL argument), 22023 (negative cooldown, empty arrays), 23505
--	  (rows already break the unique-active rule; a second active row),
--	  23P01 (inside the cooldown, constraint bidguard_cooldown_guard), 23514
--	  (fill outside [time, now]), 42501 (not the owner), 42703 (no such
--	  column), 42704 (no guard to remove), 42710 (a second unique-active
--	  guard), 42804 (time column not timestamptz), 42809 (not a table),
--	  42883 (key type without a hash opclass).  A refused call changes
--	  nothing.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(46);

-- the objects
SELECT has_function('bidguard_guard_cooldown',
                    ARRAY['regclass', 'name', 'name', 'interval', 'name']);
SELECT function_returns('bidguard_guard_cooldown',
                        ARRAY['regclass', 'name', 'name', 'interval', 'name'], 'void');
SELECT has_function('bidguard_unguard_cooldown', ARRAY['regclass']);
SELECT function_returns('bidguard_unguard_cooldown', ARRAY['regclass'], 'void');
SELECT has_function('bidguard_guard_unique_active', ARRAY['regclass', 'name[]', 'name', 'text[]']);
SELECT function_returns('bidguard_guard_unique_active', ARRAY['regclass', 'name[]', 'name', 'text[]'], 'name');
SELECT has_function('bidguard_duplicate_active', ARRAY['regclass', 'name[]', 'name', 'text[]']);
SELECT has_function('bidguard_cooldown_violations',
                    ARRAY['regclass', 'name', 'name', 'interval', 'name']);
SELECT has_view('bidguard_guards');
SELECT columns_are('bidguard_guards',
                   ARRAY['kind', 'table_name', 'key_columns', 'time_column', 'fill_column',
                         'cooldown', 'condition', 'index_name', 'trigger_name',
                         'max_count', 'per', 'key_prefix']);

-- the constraint name a driver sees with the error a statement raises
CREATE FUNCTION pg_temp.constraint_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME;
    RETURN c;
END
$$;

-- a table to guard, owned by a role that is not the caller
CREATE ROLE regress_guard_owner;
CREATE ROLE regress_guard_stranger;
CREATE TABLE g_trades (id int GENERATED ALWAYS AS IDENTITY, bot_id int NOT NULL,
                       at timestamptz, filled timestamptz, naive timestamp, p point);
CREATE TABLE g_bids (id int GENERATED ALWAYS AS IDENTITY, m text, p text, status text);
INSERT INTO g_bids (m, p, status) VALUES ('m', '1', 'pending'), ('m', '1', 'pending');
GRANT CREATE ON SCHEMA public TO regress_guard_owner;   -- guards make indexes
ALTER TABLE g_trades OWNER TO regress_guard_owner;
ALTER TABLE g_bids OWNER TO regress_guard_owner;
CREATE VIEW g_view AS SELECT 1 AS x;

SET LOCAL ROLE regress_guard_stranger;
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'at', '1 minute')$$,
                 '42501', NULL, 'a stranger cannot guard a table');
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{pending}')$$,
                 '42501', NULL, 'nor put a unique-active guard on it');
SELECT throws_ok($$SELECT bidguard_unguard_cooldown('g_trades')$$,
                 '42501', NULL, 'nor unguard it');
RESET ROLE;
SET LOCAL ROLE regress_guard_owner;

SELECT throws_ok($$SELECT bidguard_guard_cooldown(NULL, 'bot_id', 'at', '1 minute')$$,
                 '22004', NULL, 'NULL table');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', NULL, 'at', '1 minute')$$,
                 '22004', NULL, 'NULL key column');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', NULL, '1 minute')$$,
                 '22004', NULL, 'NULL time column');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'at', NULL)$$,
                 '22004', NULL, 'NULL cooldown');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'at', '-1 second')$$,
                 '22023', NULL, 'negative cooldown');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'nope', 'at', '1 minute')$$,
                 '42703', NULL, 'no such key column');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'naive', '1 minute')$$,
                 '42804', NULL, 'a timestamp without time zone');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'p', 'at', '1 minute')$$,
                 '42883', NULL, 'a key type without a hash opclass');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'at', '1 minute', 'at')$$,
                 '42701', NULL, 'the time column as fill column too');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'g_trades'::regclass), 0::bigint,
          'refused calls left no trigger');
SELECT is((SELECT count(*) FROM pg_index WHERE indrelid = 'g_trades'::regclass), 0::bigint,
          'and no index');
SELECT throws_ok($$SELECT bidguard_unguard_cooldown('g_trades')$$,
                 '42704', NULL, 'no guard to remove');

-- the cooldown guard
SELECT lives_ok($$SELECT bidguard_guard_cooldown('g_trades', 'bot_id', 'at', '1 minute', 'filled')$$,
                'the owner guards the table');
SELECT is((SELECT kind || ' ' || table_name::text || ' ' || cooldown::text FROM bidguard_guards),
          'cooldown g_trades 00:01:00', 'bidguard_guards lists it');
SELECT lives_ok($$INSERT INTO g_trades (bot_id) VALUES (1)$$, 'a first row');
SELECT throws_ok($$INSERT INTO g_trades (bot_id) VALUES (1)$$, '23P01', NULL,
                 'a second row of the key inside the cooldown');
SELECT is(pg_temp.constraint_of($$INSERT INTO g_trades (bot_id) VALUES (1)$$),
          'bidguard_cooldown_guard', 'drivers see the constraint bidguard_cooldown_guard');
SELECT throws_ok($$INSERT INTO g_trades (bot_id, at) VALUES (1, now() - interval '30 seconds')$$,
                 '23P01', NULL, 'back-dated inside the cooldown');
SELECT lives_ok($$INSERT INTO g_trades (bot_id) VALUES (2)$$, 'another key');
SELECT throws_ok($$UPDATE g_trades SET filled = now() + interval '1 hour' WHERE bot_id = 2$$,
                 '23514', NULL, 'a fill in the future');
SELECT is((SELECT count(*) FROM g_trades), 2::bigint, 'the refused rows are not there');

-- the unique-active guard
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{pending,submitted}')$$,
                 '23505', NULL, 'rows already break the rule');
SELECT is((SELECT count(*) FROM pg_index WHERE indrelid = 'g_bids'::regclass), 0::bigint,
          'and nothing was made');
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{}', 'status', '{pending}')$$,
                 '22023', NULL, 'no key columns');
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{}')$$,
                 '22023', NULL, 'no active statuses');
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{pending,NULL}')$$,
                 '22004', NULL, 'a NULL status');
DELETE FROM g_bids WHERE id = 2;
SELECT is(bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{pending,submitted}'),
          'g_bids_m_p_active'::name, 'then it makes the index, and names it');
SELECT throws_ok($$INSERT INTO g_bids (m, p, status) VALUES ('m', '1', 'submitted')$$,
                 '23505', NULL, 'a second active row');
SELECT throws_ok($$SELECT bidguard_guard_unique_active('g_bids', '{m,p}', 'status', '{pending}')$$,
                 '42710', NULL, 'a second guard on the same columns');
RESET ROLE;
SELECT throws_ok($$SELECT bidguard_guard_cooldown('g_view', 'x', 'x', '1 minute')$$,
                 '42809', NULL, 'a view cannot be guarded');

-- the audits
SELECT throws_ok($$SELECT * FROM bidguard_duplicate_active('g_bids', NULL, 'status', '{pending}')$$,
                 '22004', NULL, 'audit: NULL argument');
SELECT is((SELECT count(*) FROM bidguard_duplicate_active('g_bids', '{m,p}', 'status', '{pending}')),
          0::bigint, 'audit: no duplicates left');
SELECT is((SELECT count(*) FROM bidguard_cooldown_violations('g_trades', 'bot_id', 'at', '1 minute', 'filled')),
          0::bigint, 'audit: no violations on guarded data');

SELECT * FROM finish();
ROLLBACK;
