-- test/pgtap/inputs.sql
--	  Bad input, as a table: each row is one statement a caller could send,
--	  the role it runs as and the search_path it runs under, and the SQLSTATE
--	  it must end with (NULL: it must succeed).  NULLs, empty, over-long and
--	  huge ids, wrong JSON kinds, wrong types, negative and huge intervals,
--	  injection strings in every name argument, a hostile search_path with
--	  same-named functions and operators ahead of pg_catalog, roles without
--	  privileges calling every function, and a SECURITY DEFINER function of a
--	  role without privileges.  After all of them: the session is alive, no
--	  lock is left, no duplicate active bid and no trade inside a cooldown
--	  got in, and no refused statement left a row behind.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT n.nspname AS bg_schema
  FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'bidguard' \gset

-- The SQLSTATE a statement ends with, run as a role and under a
-- search_path; NULL when it succeeds.
CREATE FUNCTION pg_temp.sqlstate_of(sql text, as_role text, path text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    BEGIN
        IF path IS NOT NULL THEN
            PERFORM set_config('search_path', path, true);
        END IF;
        IF as_role IS NOT NULL THEN
            EXECUTE format('SET LOCAL ROLE %I', as_role);
        END IF;
        EXECUTE sql;
        RAISE EXCEPTION USING ERRCODE = 'XX999';   -- undo what it did, report success
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    END;
    RETURN nullif(st, 'XX999');
END
$$;

-- What the statements aim at.
SELECT bidguard_set_cooldown(8001, '1 hour');
SELECT bidguard_set_cooldown(8002, '0');
SELECT trade_id AS open_trade FROM bidguard_try_trade(8001) \gset
SELECT bid_id AS pending_bid FROM bidguard_create_bid('in', 'pending') \gset
CREATE TABLE in_rows (id int PRIMARY KEY, k int, at timestamptz, fill timestamptz,
                      note text, loose timestamp, pt point, status text);
CREATE VIEW in_view AS SELECT * FROM in_rows;
CREATE ROLE regress_in_nobody;
CREATE ROLE regress_in_definer;
GRANT USAGE ON SCHEMA public TO regress_in_nobody, regress_in_definer;
-- a SECURITY DEFINER function of a role that may not write bids
CREATE FUNCTION public.in_definer_bid() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT bid_id FROM public.bidguard_create_bid('in', 'definer') $$;
ALTER FUNCTION public.in_definer_bid() OWNER TO regress_in_definer;
GRANT EXECUTE ON FUNCTION public.in_definer_bid() TO regress_in_nobody;
-- a hostile schema: same names as pg_catalog's, ahead of it on the path
CREATE SCHEMA in_evil;
CREATE FUNCTION in_evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION in_evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION in_evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR in_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = in_evil.texteq);
CREATE FUNCTION in_evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'object' $$;
CREATE FUNCTION in_evil.char_length(text) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;

CREATE TEMP TABLE inputs (n serial, sql text, want text, as_role text, path text, what text);
INSERT INTO inputs (sql, want, what) VALUES
-- bidguard_create_bid
($$SELECT bidguard_create_bids(NULL, '{p}')$$, '22004', 'create_bids: NULL marketplace_id'),
($$SELECT bidguard_create_bids('m', NULL)$$, '22004', 'create_bids: NULL posting_ids'),
($$SELECT bidguard_create_bids('m', ARRAY['p', NULL])$$, '22004', 'create_bids: a NULL posting_id'),
($$SELECT bidguard_create_bids('m', '{p}', ARRAY[NULL]::jsonb[])$$, '22004', 'create_bids: a NULL bid_data element'),
($$SELECT bidguard_create_bids('m', ARRAY['p', ''])$$, '22023', 'create_bids: an empty posting_id'),
($$SELECT bidguard_create_bids('m', ARRAY[repeat('é', 257)])$$, '22023', 'create_bids: a posting_id of 257 characters'),
($$SELECT bidguard_create_bids('m', '{{p},{q}}')$$, '22023', 'create_bids: a two-dimensional posting_ids'),
($$SELECT bidguard_create_bids('m', '{p,q}', ARRAY['{}']::jsonb[])$$, '22023', 'create_bids: arrays of different lengths'),
($$SELECT bidguard_create_bids('m', '{p}', ARRAY['[1]']::jsonb[])$$, '22023', 'create_bids: a bid_data element that is not an object'),
($$SELECT bidguard_create_bid(NULL, 'p')$$, '22004', 'create_bid: NULL marketplace_id'),
($$SELECT bidguard_create_bid('m', NULL)$$, '22004', 'create_bid: NULL posting_id'),
($$SELECT bidguard_create_bid('m', 'p', NULL)$$, '22004', 'create_bid: NULL bid_data'),
($$SELECT bidguard_create_bid('', 'p')$$, '22023', 'create_bid: empty marketplace_id'),
($$SELECT bidguard_create_bid('m', '')$$, '22023', 'create_bid: empty posting_id'),
($$SELECT bidguard_create_bid(repeat('m', 257), 'p')$$, '22023', 'create_bid: 257 characters'),
($$SELECT bidguard_create_bid('m', repeat('é', 257))$$, '22023', 'create_bid: 257 two-byte characters'),
($$SELECT bidguard_create_bid('m', repeat('x', 1000000))$$, '22023', 'create_bid: a million characters'),
($$SELECT bidguard_create_bid('m', repeat('é', 256))$$, NULL, 'create_bid: 256 two-byte characters are fine'),
($$SELECT bidguard_create_bid('m', 'p', '[]')$$, '22023', 'create_bid: bid_data an array'),
($$SELECT bidguard_create_bid('m', 'p', '"s"')$$, '22023', 'create_bid: bid_data a string'),
($$SELECT bidguard_create_bid('m', 'p', 'null')$$, '22023', 'create_bid: bid_data JSON null'),
($$SELECT bidguard_create_bid('m', 'p', '{bad')$$, '22P02', 'create_bid: bid_data not JSON'),
($$SELECT bidguard_create_bid(1, 2)$$, '42883', 'create_bid: integers for ids'),
($$SELECT bidguard_create_bid('m''; DROP TABLE bidguard_bids; --', 'p')$$, NULL, 'create_bid: an injection string is only an id'),
($$SELECT bidguard_create_bid(E'm\\', E'p"\t\n')$$, NULL, 'create_bid: quotes, tabs and newlines are only an id'),
-- bidguard_set_bid_status, bidguard_withdraw_bid, bidguard_withdraw_posting
($$SELECT bidguard_set_bid_status(NULL, 'won')$$, '22004', 'set_bid_status: NULL bid_id'),
($$SELECT bidguard_set_bid_status(1, NULL)$$, '22004', 'set_bid_status: NULL status'),
($$SELECT bidguard_set_bid_status(1, 'WON')$$, '22023', 'set_bid_status: status in capitals'),
($$SELECT bidguard_set_bid_status(1, '')$$, '22023', 'set_bid_status: empty status'),
($$SELECT bidguard_set_bid_status(1, 'won; DROP TABLE x')$$, '22023', 'set_bid_status: injection as a status'),
($$SELECT bidguard_set_bid_status(-1, 'won')$$, 'P0002', 'set_bid_status: negative bid_id'),
($$SELECT bidguard_set_bid_status(9223372036854775807, 'won')$$, 'P0002', 'set_bid_status: the largest bigint'),
($$SELECT bidguard_set_bid_status(9223372036854775808, 'won')$$, '42883', 'set_bid_status: beyond bigint'),
($$SELECT bidguard_set_bid_status('abc', 'won')$$, '22P02', 'set_bid_status: text for bid_id'),
($$SELECT bidguard_withdraw_bid(NULL)$$, '22004', 'withdraw_bid: NULL'),
($$SELECT bidguard_withdraw_bid(0)$$, 'P0002', 'withdraw_bid: unknown bid'),
($$SELECT bidguard_withdraw_posting(NULL, 'p')$$, '22004', 'withdraw_posting: NULL marketplace_id'),
($$SELECT bidguard_withdraw_posting('m', '')$$, '22023', 'withdraw_posting: empty posting_id'),
-- trades
($$SELECT bidguard_set_cooldown(NULL, '1 s')$$, '22004', 'set_cooldown: NULL bot'),
($$SELECT bidguard_set_cooldown(1, NULL)$$, '22004', 'set_cooldown: NULL cooldown'),
($$SELECT bidguard_set_cooldown(1, '-1 microsecond')$$, '22023', 'set_cooldown: a microsecond below zero'),
($$SELECT bidguard_set_cooldown(1, '1 day -25 hours')$$, '22023', 'set_cooldown: negative by its parts'),
($$SELECT bidguard_set_cooldown(1, 'abc')$$, '22007', 'set_cooldown: not an interval'),
($$SELECT bidguard_set_cooldown(8003, '100000 years')$$, NULL, 'set_cooldown: a huge finite cooldown is a cooldown'),
($$SELECT bidguard_try_trade(NULL)$$, '22004', 'try_trade: NULL bot'),
($$SELECT bidguard_try_trade(8002, NULL)$$, '22004', 'try_trade: NULL trade_data'),
($$SELECT bidguard_try_trade(8002, '[1]')$$, '22023', 'try_trade: trade_data an array'),
($$SELECT bidguard_try_trade(8002, '{}', '-1 s')$$, '22023', 'try_trade: negative wait'),
($$SELECT bidguard_try_trade(8002, '{}', '100 years')$$, NULL, 'try_trade: a huge wait, nothing to wait for'),
($$SELECT bidguard_try_trade(424242)$$, '23503', 'try_trade: unknown bot'),
($$SELECT bidguard_try_trade('abc')$$, '22P02', 'try_trade: text for bot_id'),
($$SELECT bidguard_fill_trade(NULL)$$, '22004', 'fill_trade: NULL'),
($$SELECT bidguard_fill_trade(-5)$$, 'P0002', 'fill_trade: unknown trade'),
($$SELECT bidguard_fill_trade(:open_trade, now() + interval '1 day')$$, '22023', 'fill_trade: in the future'),
($$SELECT bidguard_fill_trade(:open_trade, '1970-01-01')$$, '22023', 'fill_trade: before the admission'),
($$SELECT bidguard_fail_trade(NULL)$$, '22004', 'fail_trade: NULL'),
($$SELECT bidguard_fail_trade(-5)$$, 'P0002', 'fail_trade: unknown trade'),
-- locks
($$SELECT bidguard_lock(NULL, 'k')$$, '22004', 'lock: NULL namespace'),
($$SELECT bidguard_lock('n', NULL)$$, '22004', 'lock: NULL key'),
($$SELECT bidguard_lock('', 'k')$$, '22023', 'lock: empty namespace'),
($$SELECT bidguard_lock('n', '')$$, '22023', 'lock: empty key'),
($$SELECT bidguard_lock('', '')$$, '22023', 'lock: both empty'),
($$SELECT bidguard_lock('n', repeat('k', 257))$$, '22023', 'lock: 257 characters'),
($$SELECT bidguard_lock('n', 'k', '-1 ms')$$, '22023', 'lock: negative wait'),
($$SELECT bidguard_lock_key(1, 2)$$, '42883', 'lock_key: integers'),
-- guards on application tables
($$SELECT bidguard_guard_cooldown(NULL, 'k', 'at', '1 s')$$, '22004', 'guard_cooldown: NULL table'),
($$SELECT bidguard_guard_cooldown('in_rows', NULL, 'at', '1 s')$$, '22004', 'guard_cooldown: NULL key column'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'at', NULL)$$, '22004', 'guard_cooldown: NULL cooldown'),
($$SELECT bidguard_guard_cooldown('no_such_table', 'k', 'at', '1 s')$$, '42P01', 'guard_cooldown: no such table'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k; DROP TABLE in_rows', 'at', '1 s')$$, '42703', 'guard_cooldown: injection as a column'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'at"; DROP TABLE in_rows; --', '1 s')$$, '42703', 'guard_cooldown: quoted injection as a column'),
($$SELECT bidguard_guard_cooldown('in_rows', 'ctid', 'at', '1 s')$$, '22023', 'guard_cooldown: a system column'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'k', '1 s')$$, '42701', 'guard_cooldown: the same column twice'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'note', '1 s')$$, '42804', 'guard_cooldown: a text time column'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'loose', '1 s')$$, '42804', 'guard_cooldown: a timestamp without time zone'),
($$SELECT bidguard_guard_cooldown('in_rows', 'pt', 'at', '1 s')$$, '42883', 'guard_cooldown: a key without a hash opclass'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'at', '-1 s')$$, '22023', 'guard_cooldown: negative cooldown'),
($$SELECT bidguard_guard_cooldown('in_view', 'k', 'at', '1 s')$$, '42809', 'guard_cooldown: a view'),
($$SELECT bidguard_guard_cooldown('bidguard_trades', 'bot_id', 'created_at', '1 s')$$, '55000', 'guard_cooldown: bidguard''s own table'),
($$SELECT bidguard_unguard_cooldown('in_rows')$$, '42704', 'unguard_cooldown: no guard'),
($$SELECT bidguard_guard_unique_active('in_rows', '{}', 'status', '{open}')$$, '22023', 'guard_unique_active: no key columns'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k}', 'status', '{}')$$, '22023', 'guard_unique_active: no statuses'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k,NULL}', 'status', '{open}')$$, '22004', 'guard_unique_active: a NULL key column'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k}', 'status', '{open,NULL}')$$, '22004', 'guard_unique_active: a NULL status'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k,k}', 'status', '{open}')$$, '42701', 'guard_unique_active: a key column twice'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k}', 'nope', '{open}')$$, '42703', 'guard_unique_active: no such status column'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k}', 'status', $q${"o'); DROP TABLE in_rows; --"}$q$)$$, NULL, 'guard_unique_active: an injection string is only a status'),
($$SELECT * FROM bidguard_duplicate_active(NULL, '{k}', 'status', '{open}')$$, '22004', 'duplicate_active: NULL table'),
($$SELECT * FROM bidguard_duplicate_active('in_rows', '{""}', 'status', '{open}')$$, '42703', 'duplicate_active: an empty key column name'),
($$SELECT * FROM bidguard_duplicate_active('in_rows', '{k}', '', '{open}')$$, '42703', 'duplicate_active: an empty status column name'),
($$SELECT * FROM bidguard_duplicate_active('in_rows', '{ctid}', 'status', '{open}')$$, '22023', 'duplicate_active: a system column'),
($$SELECT * FROM bidguard_cooldown_violations('in_rows', 'k', 'at', '-1 s')$$, '22023', 'cooldown_violations: negative cooldown'),
($$SELECT * FROM bidguard_cooldown_violations('in_rows', '', 'at', '1 s')$$, '42703', 'cooldown_violations: an empty key column name'),
-- plain SQL on bidguard's tables
($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('', 'p')$$, '23514', 'INSERT bid: empty marketplace_id'),
($$INSERT INTO bidguard_bids (marketplace_id, posting_id, status) VALUES ('m', 'p9', 'sold')$$, '23514', 'INSERT bid: unknown status'),
($$INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data) VALUES ('m', 'p9', '[]')$$, '23514', 'INSERT bid: bid_data an array'),
($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('in', 'pending')$$, '23505', 'INSERT bid: a second active bid'),
($$INSERT INTO bidguard_trades (bot_id) VALUES (8001)$$, '23P01', 'INSERT trade: inside the cooldown'),
($$INSERT INTO bidguard_trades (bot_id) VALUES (8001) ON CONFLICT DO NOTHING$$, '23P01', 'INSERT trade ... ON CONFLICT DO NOTHING: the cooldown is not an index'),
($$INSERT INTO bidguard_trades (bot_id, created_at) VALUES (8002, now() + interval '1 hour')$$, '23514', 'INSERT trade: created_at in the future'),
($$INSERT INTO bidguard_trades (bot_id, status) VALUES (8002, 'cancelled')$$, '23514', 'INSERT trade: unknown status'),
($$INSERT INTO bidguard_trades (bot_id) VALUES (424242)$$, '23503', 'INSERT trade: unknown bot'),
($$INSERT INTO bidguard_bots (bot_id, cooldown) VALUES (8004, '-1 s')$$, '23514', 'INSERT bot: negative cooldown'),
($$UPDATE bidguard_bids SET bid_id = bid_id + 1 WHERE bid_id = :pending_bid$$, '23514', 'UPDATE bid: a new bid_id'),
($$DELETE FROM bidguard_bots WHERE bot_id = 8001$$, '23503', 'DELETE bot: it has trades');

-- The same calls by a role with no privilege, by the definer function, and
-- under the hostile path.
INSERT INTO inputs (sql, want, as_role, what) VALUES
($$SELECT bidguard_create_bid('in', 'nobody')$$, '42501', 'regress_in_nobody', 'create_bid without privilege'),
($$SELECT bidguard_set_bid_status(:pending_bid, 'submitted')$$, '42501', 'regress_in_nobody', 'set_bid_status without privilege'),
($$SELECT bidguard_withdraw_bid(:pending_bid)$$, '42501', 'regress_in_nobody', 'withdraw_bid without privilege'),
($$SELECT bidguard_withdraw_posting('in', 'pending')$$, '42501', 'regress_in_nobody', 'withdraw_posting without privilege'),
($$SELECT bidguard_set_cooldown(8001, '0')$$, '42501', 'regress_in_nobody', 'set_cooldown without privilege'),
($$SELECT bidguard_try_trade(8002)$$, '42501', 'regress_in_nobody', 'try_trade without privilege'),
($$SELECT bidguard_try_trade(8001)$$, '42501', 'regress_in_nobody', 'try_trade without privilege, for a bot inside its cooldown'),
($$SELECT bidguard_fill_trade(:open_trade)$$, '42501', 'regress_in_nobody', 'fill_trade without privilege'),
($$SELECT bidguard_fail_trade(:open_trade)$$, '42501', 'regress_in_nobody', 'fail_trade without privilege'),
($$SELECT bidguard_stats_reset()$$, '42501', 'regress_in_nobody', 'stats_reset without privilege'),
($$SELECT bidguard_guard_cooldown('in_rows', 'k', 'at', '1 s')$$, '42501', 'regress_in_nobody', 'guard_cooldown by a non-owner'),
($$SELECT bidguard_guard_unique_active('in_rows', '{k}', 'status', '{open}')$$, '42501', 'regress_in_nobody', 'guard_unique_active by a non-owner'),
($$INSERT INTO bidguard_events (kind) VALUES ('forged')$$, '42501', 'regress_in_nobody', 'forging an event'),
($$SELECT public.in_definer_bid()$$, '42501', 'regress_in_nobody', 'a SECURITY DEFINER function of a role without privilege');
INSERT INTO inputs (sql, want, path, what) VALUES
($$SELECT bidguard_create_bid('in', 'evil path')$$, NULL, 'in_evil, ' || :'bg_schema' || ', pg_catalog', 'create_bid under a hostile search_path'),
($$SELECT bidguard_create_bid('', 'p')$$, '22023', 'in_evil, ' || :'bg_schema' || ', pg_catalog', 'an empty id under a hostile search_path'),
($$SELECT bidguard_try_trade(8001)$$, NULL, 'in_evil, ' || :'bg_schema' || ', pg_catalog', 'try_trade under a hostile search_path (answers cooldown)'),
($$INSERT INTO bidguard_trades (bot_id) VALUES (8001)$$, '23P01', 'in_evil, ' || :'bg_schema' || ', pg_catalog', 'plain INSERT under a hostile search_path');

SELECT count(*) AS inputs FROM inputs \gset
-- the setup's own locks (its trade and its bid), held to the end of this transaction
SELECT count(*) AS setup_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid BETWEEN 25089 AND 25092 AND pid = pg_backend_pid() \gset
SELECT plan(:inputs + 9);

SELECT is(pg_temp.sqlstate_of(replace(replace(sql, ':open_trade', :'open_trade'), ':pending_bid', :'pending_bid'),
                               as_role, path),
          want, n || ': ' || what || ' -> ' || coalesce(want, 'succeeds'))
  FROM inputs ORDER BY n;

SELECT cmp_ok(:inputs, '>=', 60, 'at least 60 bad inputs were tried');
SELECT is((SELECT 1), 1, 'the session is alive after every one of them');
SELECT is((SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid BETWEEN 25089 AND 25092
            AND pid = pg_backend_pid()), :setup_locks::bigint,
          'no bidguard lock is left held by any of them (the setup''s own only)');
SELECT is((SELECT count(*) FROM bidguard_duplicate_active_bids), 0::bigint, 'no posting has two active bids');
SELECT is((SELECT count(*) FROM bidguard_cooldown_violations), 0::bigint, 'no trade is inside a cooldown');
SELECT is((SELECT count(*) FROM bidguard_trades WHERE bot_id IN (8001, 8002)), 1::bigint,
          'no refused statement left a trade (the one open trade only)');
SELECT is((SELECT count(*) FROM bidguard_bids WHERE marketplace_id = 'in'), 1::bigint,
          'no refused statement left a bid (the one pending bid only)');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'in_rows'::regclass), 0::bigint,
          'no refused guard left a trigger');
SELECT has_table('in_rows', 'no injection dropped a table');

SELECT * FROM finish();
ROLLBACK;
