--
-- Guards on the application's own tables: bidguard_guard_cooldown,
-- bidguard_unguard_cooldown, bidguard_guard_unique_active, bidguard_guards
--
-- Time is pinned with the superuser-only bidguard.test_clock (the guard
-- stamps a NULL time with it) so that the boundaries are exact.

-- err(q): run q; show the SQLSTATE, the constraint a driver would see, the
-- message and the detail.  Every name in it is schema-qualified, so that it
-- runs no look-alike under the hostile search_path further down.
CREATE FUNCTION pg_temp.err(q text, with_detail boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; con text; msg text; det text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, con = CONSTRAINT_NAME,
                            msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN pg_catalog.concat(st,
        CASE WHEN con OPERATOR(pg_catalog.=) '' THEN '' ELSE pg_catalog.concat(' constraint=', con) END,
        ': ', msg,
        CASE WHEN det OPERATOR(pg_catalog.=) '' OR NOT with_detail THEN ''
             ELSE pg_catalog.concat(E'\nDETAIL: ', det) END);
END
$$;

-- a canary: no argument below may drop it
CREATE TABLE canary (alive boolean);
INSERT INTO canary VALUES (true);

SET bidguard.test_clock = '2026-03-01 10:10:00+00';

--
-- bidguard_guard_cooldown: the trigger, the index, bidguard_guards
--
CREATE TABLE orders (
    id serial PRIMARY KEY,
    bot_id int,
    placed_at timestamptz,
    filled_at timestamptz,
    note text
);
SELECT bidguard_guard_cooldown('orders', 'bot_id', 'placed_at', '1 minute', 'filled_at');
SELECT tgname, tgenabled, pg_get_triggerdef(oid) AS definition
  FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal;
-- an index on (key, effective time) serves the check; bidguard marks it as its own
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition,
       obj_description(indexrelid, 'pg_class') AS comment
  FROM pg_index WHERE indrelid = 'orders'::regclass ORDER BY 1::text;
SELECT * FROM bidguard_guards ORDER BY table_name::text, kind;

-- the first row of a key is admitted
INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:00:00+00');

-- inside the cooldown (error: 23P01 bidguard_cooldown_guard)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:00:30+00')$$);
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:00:59.999999+00')$$);
-- the same instant (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:00:00+00')$$);
-- back-dated inside the cooldown (error): the rule holds in both directions
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 09:59:30+00')$$);
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 09:59:00.000001+00')$$);
-- a gap of exactly the cooldown, on either side, is allowed
INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:01:00+00');
INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 09:59:00+00');
-- keys do not share a cooldown
INSERT INTO orders (bot_id, placed_at) VALUES (2, '2026-03-01 10:00:30+00');
-- NULL keys are not guarded (as UNIQUE does not guard NULLs)
INSERT INTO orders (bot_id, placed_at) VALUES (NULL, '2026-03-01 10:00:00+00'), (NULL, '2026-03-01 10:00:00+00');
-- two rows of one key in one statement (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (3, '2026-03-01 10:00:00+00'), (3, '2026-03-01 10:00:10+00')$$);
-- ... or in one transaction (error)
BEGIN;
INSERT INTO orders (bot_id, placed_at) VALUES (3, '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (3, '2026-03-01 10:00:10+00')$$);
-- the key's lock (kind guard) is held to the end of the transaction
SELECT kind, granted FROM bidguard_locks WHERE pid = pg_backend_pid();
ROLLBACK;
SELECT count(*) AS locks_after_rollback FROM bidguard_locks;
SELECT count(*) AS bot3_rows FROM orders WHERE bot_id = 3;

-- a NULL time is stamped with the clock (here bidguard.test_clock)
SET bidguard.test_clock = '2026-03-01 10:03:00+00';
INSERT INTO orders (bot_id) VALUES (1) RETURNING bot_id, placed_at;
INSERT INTO orders (bot_id, placed_at) VALUES (4, NULL) RETURNING bot_id, placed_at;
-- ... and judged at that time (error)
SET bidguard.test_clock = '2026-03-01 10:03:30+00';
SELECT pg_temp.err($$INSERT INTO orders (bot_id) VALUES (1)$$);
SET bidguard.test_clock = '2026-03-01 10:04:00+00';
INSERT INTO orders (bot_id) VALUES (1) RETURNING placed_at;

-- a deleted row no longer counts
DELETE FROM orders WHERE bot_id = 2;
INSERT INTO orders (bot_id, placed_at) VALUES (2, '2026-03-01 10:00:00+00');

--
-- The fill column: the effective time is COALESCE(fill, time)
--
SET bidguard.test_clock = '2026-03-01 10:10:00+00';
INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (5, '2026-03-01 10:00:00+00', '2026-03-01 10:00:50+00');
-- 60 s after the time but 10 s after the fill (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (5, '2026-03-01 10:01:00+00')$$);
-- a minute after the fill is fine
INSERT INTO orders (bot_id, placed_at) VALUES (5, '2026-03-01 10:01:50+00');
-- a row whose fill lands inside another row's cooldown (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (5, '2026-03-01 09:58:00+00', '2026-03-01 09:59:55+00')$$);

-- a fill lies between the row's time and now (error: 23514)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (6, '2026-03-01 10:00:00+00', '2026-03-01 09:59:59+00')$$);
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (6, '2026-03-01 10:00:00+00', '2026-03-01 10:10:00.000001+00')$$);
-- ... both ends included
INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (6, '2026-03-01 10:00:00+00', '2026-03-01 10:00:00+00');
INSERT INTO orders (bot_id, placed_at, filled_at) VALUES (7, '2026-03-01 10:00:00+00', '2026-03-01 10:10:00+00');
-- a NULL time is stamped first, then the fill is checked against it (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, filled_at) VALUES (8, '2026-03-01 10:09:00+00')$$);
INSERT INTO orders (bot_id, filled_at) VALUES (8, '2026-03-01 10:10:00+00') RETURNING placed_at, filled_at;
-- filling a row later: checked against [time, now] (error), not judged for
-- the cooldown (a fill is a fact, as for bidguard_trades)
INSERT INTO orders (bot_id, placed_at) VALUES (9, '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$UPDATE orders SET filled_at = '2026-03-01 09:00:00+00' WHERE bot_id = 9$$);
SELECT pg_temp.err($$UPDATE orders SET filled_at = '2026-03-01 11:00:00+00' WHERE bot_id = 9$$);
UPDATE orders SET filled_at = '2026-03-01 10:00:20+00' WHERE bot_id = 9;

--
-- UPDATEs
--
-- moving a row to another key is judged (error)
SELECT pg_temp.err($$UPDATE orders SET bot_id = 2 WHERE bot_id = 1 AND placed_at = '2026-03-01 10:00:00+00'$$);
-- moving a row to another time is judged (error)
SELECT pg_temp.err($$UPDATE orders SET placed_at = '2026-03-01 10:02:30+00' WHERE bot_id = 1 AND placed_at = '2026-03-01 10:01:00+00'$$);
-- a row does not collide with itself
UPDATE orders SET placed_at = '2026-03-01 10:00:10+00' WHERE bot_id = 2;
-- a move that keeps the cooldown is fine
UPDATE orders SET bot_id = 10 WHERE bot_id = 2;
SELECT bot_id, placed_at FROM orders WHERE bot_id IN (2, 10) ORDER BY bot_id;

-- calling it again changes the cooldown (re-guard): one trigger, one index
SELECT bidguard_guard_cooldown('orders', 'bot_id', 'placed_at', '1 hour', 'filled_at');
SELECT table_name, cooldown, index_name, trigger_name FROM bidguard_guards ORDER BY table_name::text, kind;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'orders'::regclass;
-- new rows are judged under the new cooldown (error)
SELECT pg_temp.err($$INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 10:30:00+00')$$);
INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 11:04:00+00');
-- UPDATEs of other columns are not judged, though the older rows of bot 1
-- are closer than the new cooldown
UPDATE orders SET note = 'checked' WHERE bot_id = 1;
-- nor are UPDATEs that leave the key and the time as they are
UPDATE orders SET bot_id = bot_id, placed_at = placed_at, note = 'again' WHERE bot_id = 1;
SELECT count(*) FILTER (WHERE note = 'again') AS updated FROM orders WHERE bot_id = 1;
-- a zero cooldown admits every row
SELECT bidguard_guard_cooldown('orders', 'bot_id', 'placed_at', '0', 'filled_at');
INSERT INTO orders (bot_id, placed_at) VALUES (1, '2026-03-01 11:04:00+00');
SELECT bidguard_guard_cooldown('orders', 'bot_id', 'placed_at', '1 minute', 'filled_at');

--
-- Key types: any type with a hash operator class
--
CREATE DOMAIN account_code AS text CHECK (VALUE <> '');
CREATE TABLE k_text (k text, at timestamptz);
CREATE TABLE k_uuid (k uuid, at timestamptz);
CREATE TABLE k_domain (k account_code, at timestamptz);
SELECT bidguard_guard_cooldown('k_text', 'k', 'at', '1 minute');
SELECT bidguard_guard_cooldown('k_uuid', 'k', 'at', '1 minute');
SELECT bidguard_guard_cooldown('k_domain', 'k', 'at', '1 minute');
INSERT INTO k_text VALUES ('acct-1', '2026-03-01 10:00:00+00'), ('ACCT-1', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO k_text VALUES ('acct-1', '2026-03-01 10:00:30+00')$$);
INSERT INTO k_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-03-01 10:00:00+00'),
                          ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO k_uuid VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '2026-03-01 10:00:30+00')$$);
INSERT INTO k_domain VALUES ('acct-1', '2026-03-01 10:00:00+00'), ('acct-2', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO k_domain VALUES ('acct-1', '2026-03-01 10:00:30+00')$$);
SELECT table_name, key_columns, time_column, fill_column, cooldown, index_name
  FROM bidguard_guards WHERE table_name::text LIKE 'k\_%' ORDER BY table_name::text;
-- a key type with hash equality but no btree (xid): a hash index on the key,
-- and the check runs in SQL, as the owner, instead of reading the index
CREATE TABLE k_xid (k xid, at timestamptz, fill timestamptz);
SELECT bidguard_guard_cooldown('k_xid', 'k', 'at', '1 minute', 'fill');
SELECT indexdef FROM pg_indexes WHERE tablename = 'k_xid';
INSERT INTO k_xid VALUES ('100', '2026-03-01 10:00:00+00', NULL), ('101', '2026-03-01 10:00:00+00', NULL);
SELECT pg_temp.err($$INSERT INTO k_xid VALUES ('100', '2026-03-01 10:00:30+00', NULL)$$);
SELECT pg_temp.err($$INSERT INTO k_xid VALUES ('100', '2026-03-01 09:59:01+00', NULL)$$);
INSERT INTO k_xid VALUES ('100', '2026-03-01 10:01:00+00', NULL);
UPDATE k_xid SET fill = '2026-03-01 10:01:30+00' WHERE k = '101';
SELECT pg_temp.err($$INSERT INTO k_xid VALUES ('101', '2026-03-01 10:02:00+00', NULL)$$);
SELECT k, at FROM k_xid ORDER BY k::text, at;
DROP TABLE k_xid;

--
-- Arguments bidguard_guard_cooldown refuses (error)
--
CREATE TABLE bad (id int, k point, local_at timestamp, at timestamptz, at2 timestamptz);
CREATE VIEW bad_view AS SELECT * FROM bad;
CREATE SEQUENCE bad_seq;
-- a key type without a hash operator class: 42883
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'k', 'at', '1 minute')$$);
-- a time or fill column that is not timestamptz: 42804
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'local_at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 minute', 'local_at')$$);
-- the same column twice: 42701
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'id', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'at', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 minute', 'at')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 minute', 'id')$$);
-- a column that does not exist: 42703
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'nope', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'nope', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 minute', 'nope')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'ID', 'at', '1 minute')$$);
-- NULL arguments: 22004
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown(NULL, 'id', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', NULL, 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', NULL, '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', NULL)$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown(NULL)$$);
-- a negative cooldown: 22023
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '-1 second')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 day -25 hours')$$);
-- not an ordinary table: 42809
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad_view', 'id', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad_seq', 'last_value', 'is_called', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('bad_view')$$);
-- bidguard's own tables are guarded already: 55000
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bidguard_trades', 'bot_id', 'created_at', '1 minute')$$);
-- in a read-only transaction: 25006
BEGIN READ ONLY;
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('bad', 'id', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('orders')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('bad', '{id}', 'at', '{x}')$$);
ROLLBACK;
-- none of these left a trigger or an index behind
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'bad'::regclass;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'bad'::regclass;

--
-- An index that serves is reused, and unguarding leaves it alone
--
CREATE TABLE fills (k int, at timestamptz, fill timestamptz);
CREATE INDEX fills_mine ON fills (k, at DESC);
SELECT bidguard_guard_cooldown('fills', 'k', 'at', '1 minute');
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'fills'::regclass ORDER BY 1::text;
-- bidguard_guards names the index that serves the guard
SELECT table_name, key_columns, time_column, index_name FROM bidguard_guards WHERE table_name = 'fills'::regclass;
SELECT bidguard_unguard_cooldown('fills');
-- an expression index on (key, COALESCE(fill, time)) serves a guard with a fill
CREATE INDEX fills_eff ON fills (k, (COALESCE(fill, at)));
SELECT bidguard_guard_cooldown('fills', 'k', 'at', '1 minute', 'fill');
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'fills'::regclass ORDER BY 1::text;
SELECT table_name, key_columns, time_column, fill_column, index_name FROM bidguard_guards WHERE table_name = 'fills'::regclass;
INSERT INTO fills VALUES (1, '2026-03-01 10:00:00+00', '2026-03-01 10:00:40+00');
SELECT pg_temp.err($$INSERT INTO fills VALUES (1, '2026-03-01 10:01:00+00')$$);
SELECT bidguard_unguard_cooldown('fills');
-- a partial index does not serve: one is made, and dropped on unguarding
DROP INDEX fills_mine, fills_eff;
CREATE INDEX fills_partial ON fills (k, at) WHERE k > 0;
SELECT bidguard_guard_cooldown('fills', 'k', 'at', '1 minute');
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'fills'::regclass ORDER BY 1::text;
SELECT bidguard_unguard_cooldown('fills');
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'fills'::regclass ORDER BY 1::text;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'fills'::regclass;
-- unguarded, the table takes any row
INSERT INTO fills VALUES (1, '2026-03-01 10:00:01+00');
-- unguarding a table without a guard (error: 42704)
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('fills')$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('bad')$$);
-- ... also when the table has a trigger of its own that happens to have the
-- guard's name: it is left alone (error: 42704)
CREATE FUNCTION fills_own_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER bidguard_cooldown_guard BEFORE INSERT ON fills FOR EACH ROW EXECUTE FUNCTION fills_own_trigger();
SELECT count(*) AS guards FROM bidguard_guards WHERE table_name = 'fills'::regclass;
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('fills')$$);
SELECT tgname, tgfoid::regproc AS function FROM pg_trigger WHERE tgrelid = 'fills'::regclass;
DROP TRIGGER bidguard_cooldown_guard ON fills;
DROP FUNCTION fills_own_trigger();

-- calling it again with other columns moves the guard to them; bidguard_guards
-- names the index that serves the new columns
DROP INDEX fills_partial;
SELECT bidguard_guard_cooldown('fills', 'k', 'at', '1 minute');
SELECT bidguard_guard_cooldown('fills', 'k', 'at', '1 minute', 'fill');
SELECT pg_get_triggerdef(oid) AS definition FROM pg_trigger WHERE tgrelid = 'fills'::regclass;
SELECT table_name, key_columns, time_column, fill_column,
       pg_get_indexdef(index_name, 1, false) AS index_key, pg_get_indexdef(index_name, 2, false) AS index_time
  FROM bidguard_guards WHERE table_name = 'fills'::regclass;
SELECT pg_temp.err($$INSERT INTO fills VALUES (1, '2026-03-01 09:59:00+00', '2026-03-01 10:00:30+00')$$);
-- unguarding drops every index bidguard made for the table
SELECT bidguard_unguard_cooldown('fills');
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'fills'::regclass;

--
-- bidguard_guard_unique_active
--
CREATE TABLE jobs (id int PRIMARY KEY, tenant text, name text, state text NOT NULL);
INSERT INTO jobs VALUES
    (1, 'a', 'x', 'running'), (2, 'a', 'x', 'queued'),
    (3, 'a', 'y', 'running'), (4, 'a', 'y', 'running'),
    (5, 'b', 'x', 'running'), (6, 'b', 'x', 'done'),
    (7, 'c', 'z', 'done'), (8, 'c', 'z', 'done');
-- rows already break the rule (error: 23505): how many groups, the first
-- ones, and nothing changed
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,name}', 'state', '{queued,running}')$$);
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'jobs'::regclass;
SELECT count(*) AS guards FROM bidguard_guards WHERE table_name = 'jobs'::regclass;
-- more than five groups: the first five are listed (error)
INSERT INTO jobs SELECT 100 + i, 'm', 'n' || (i % 7), 'running' FROM generate_series(1, 14) AS i;
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,name}', 'state', '{queued,running}')$$);
DELETE FROM jobs WHERE tenant = 'm';
-- once cleaned up, the guard is made: it returns the index's name
UPDATE jobs SET state = 'done' WHERE id IN (2, 4);
SELECT bidguard_guard_unique_active('jobs', '{tenant,name}', 'state', '{queued,running}');
SELECT indexrelid::regclass AS index, indisunique, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid = 'jobs'::regclass AND NOT indisprimary;
SELECT kind, table_name, key_columns, time_column, cooldown, condition, index_name, trigger_name
  FROM bidguard_guards WHERE table_name = 'jobs'::regclass;
-- a second active row (error: 23505 on the index)
SELECT pg_temp.err($$INSERT INTO jobs VALUES (9, 'a', 'x', 'queued')$$);
SELECT pg_temp.err($$UPDATE jobs SET state = 'running' WHERE id = 6$$);
-- inactive rows do not count; NULL keys are not guarded
INSERT INTO jobs VALUES (10, 'a', 'x', 'done'), (11, 'a', 'x', 'failed'),
                        (12, NULL, 'x', 'running'), (13, NULL, 'x', 'running');
-- ON CONFLICT infers the index from the keys and the statuses
INSERT INTO jobs VALUES (14, 'a', 'x', 'queued')
    ON CONFLICT (tenant, name) WHERE state IN ('queued', 'running') DO NOTHING;
INSERT INTO jobs VALUES (15, 'a', 'x', 'queued')
    ON CONFLICT (tenant, name) WHERE state IN ('queued', 'running') DO UPDATE SET state = 'queued'
    RETURNING id, state;
SELECT id, tenant, name, state FROM jobs WHERE tenant = 'a' AND name = 'x' ORDER BY id;
-- a second guard (error: 42710)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,name}', 'state', '{queued}')$$);
-- empty arrays (error: 22023)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{}', 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant}', 'state', '{}')$$);
-- NULL elements and arguments (error: 22004)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,NULL}', 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant}', 'state', '{queued,NULL}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active(NULL, '{tenant}', 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', NULL, 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant}', NULL, '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant}', 'state', NULL)$$);
-- unknown or repeated columns, not a table (error: 42703, 42701, 42809)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,nope}', 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant}', 'nope', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('jobs', '{tenant,tenant}', 'state', '{queued}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('bad_view', '{id}', 'at', '{x}')$$);
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'jobs'::regclass;

-- an enum status column
CREATE TYPE job_state AS ENUM ('queued', 'running', 'done');
CREATE TABLE ejobs (id int, owner_id bigint, state job_state);
INSERT INTO ejobs VALUES (1, 7, 'running'), (2, 7, 'done'), (3, 8, 'queued');
SELECT bidguard_guard_unique_active('ejobs', '{owner_id}', 'state', '{queued,running}');
SELECT condition FROM bidguard_guards WHERE table_name = 'ejobs'::regclass;
SELECT pg_temp.err($$INSERT INTO ejobs VALUES (4, 7, 'queued')$$);
INSERT INTO ejobs VALUES (4, 7, 'queued')
    ON CONFLICT (owner_id) WHERE state IN ('queued', 'running') DO NOTHING;
INSERT INTO ejobs VALUES (5, 7, 'done'), (6, 9, 'queued');
-- a status that is no value of the enum (error: 22P02)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('ejobs', '{id}', 'state', '{paused}')$$);
SELECT id, owner_id, state FROM ejobs ORDER BY id;

--
-- Only the table's owner may guard it or unguard it (error: 42501)
--
CREATE ROLE regress_bidguard_owner;
CREATE ROLE regress_bidguard_other;
-- (the owner needs CREATE on the schema for the index, as for CREATE INDEX)
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
GRANT CREATE ON SCHEMA app TO regress_bidguard_owner;
CREATE TABLE app.owned (k int, at timestamptz, status text);
ALTER TABLE app.owned OWNER TO regress_bidguard_owner;
GRANT SELECT, INSERT, UPDATE ON app.owned TO regress_bidguard_other;
SET ROLE regress_bidguard_other;
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('app.owned', 'k', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('app.owned', '{k}', 'status', '{open}')$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('app.owned')$$);
RESET ROLE;
-- a non-owner is refused before any lock is taken on the table: while
-- another session writes to it, the answer is still 42501, not a lock wait
-- (a queued ShareRowExclusiveLock would hold up every writer behind it)
CREATE EXTENSION dblink;
SELECT dblink_connect('writer', format('host=%s port=%s dbname=%s user=%s',
    split_part(current_setting('unix_socket_directories'), ',', 1),
    current_setting('port'), current_database(), current_user));
SELECT dblink_exec('writer', 'BEGIN');
SELECT dblink_exec('writer', 'LOCK TABLE app.owned IN ROW EXCLUSIVE MODE');
SET ROLE regress_bidguard_other;
SET lock_timeout = '200ms';
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('app.owned', 'k', 'at', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('app.owned', '{k}', 'status', '{open}')$$);
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('app.owned')$$);
RESET lock_timeout;
RESET ROLE;
SELECT dblink_exec('writer', 'ROLLBACK');
SELECT dblink_disconnect('writer');
DROP EXTENSION dblink;
SELECT count(*) AS guards FROM bidguard_guards WHERE table_name = 'app.owned'::regclass;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'app.owned'::regclass;
-- the owner (no superuser) may
SET ROLE regress_bidguard_owner;
SELECT bidguard_guard_cooldown('app.owned', 'k', 'at', '1 minute');
RESET ROLE;
SET ROLE regress_bidguard_other;
SELECT pg_temp.err($$SELECT bidguard_unguard_cooldown('app.owned')$$);
-- ... nor change the cooldown
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('app.owned', 'k', 'at', '0')$$);
-- whoever writes the table is judged (the check runs as the owner)
INSERT INTO app.owned VALUES (1, '2026-03-01 10:00:00+00', 'open');
SELECT pg_temp.err($$INSERT INTO app.owned VALUES (1, '2026-03-01 10:00:30+00', 'open')$$);
-- ... even without the right to read it
RESET ROLE;
REVOKE SELECT ON app.owned FROM regress_bidguard_other;
SET ROLE regress_bidguard_other;
SELECT pg_temp.err($$INSERT INTO app.owned VALUES (1, '2026-03-01 10:00:40+00', 'open')$$);
INSERT INTO app.owned VALUES (1, '2026-03-01 10:01:00+00', 'open');
RESET ROLE;
-- nothing changed
SELECT table_name, cooldown, index_name FROM bidguard_guards WHERE table_name = 'app.owned'::regclass;
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'app.owned'::regclass ORDER BY 1::text;
SELECT count(*) AS owned_rows FROM app.owned;

--
-- No argument can inject SQL; odd but real names work
--
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."My Trades" (
    "Bot Id" text,
    "Placed ""At""" timestamptz,
    "x""; DROP TABLE canary; --" timestamptz,
    "a'b" text,
    "Status" text
);
SELECT bidguard_guard_cooldown('"Odd Schema"."My Trades"', 'Bot Id', 'Placed "At"', '1 minute',
                               'x"; DROP TABLE canary; --');
SELECT table_name, key_columns, time_column, fill_column, index_name
  FROM bidguard_guards WHERE table_name = '"Odd Schema"."My Trades"'::regclass;
SELECT pg_get_triggerdef(oid) AS definition FROM pg_trigger
 WHERE tgrelid = '"Odd Schema"."My Trades"'::regclass AND NOT tgisinternal;
SELECT pg_get_indexdef(indexrelid) AS definition FROM pg_index
 WHERE indrelid = '"Odd Schema"."My Trades"'::regclass ORDER BY 1;
INSERT INTO "Odd Schema"."My Trades" ("Bot Id", "Placed ""At""") VALUES ('b''1', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO "Odd Schema"."My Trades" ("Bot Id", "Placed ""At""") VALUES ('b''1', '2026-03-01 10:00:30+00')$$);
SELECT pg_temp.err($$INSERT INTO "Odd Schema"."My Trades" ("Bot Id", "Placed ""At""", "x""; DROP TABLE canary; --")
                     VALUES ('b''1', '2026-03-01 10:00:00+00', '2026-03-01 09:00:00+00')$$);
-- hostile names that are no column (error: 42703)
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('"Odd Schema"."My Trades"', 'Bot Id"; DROP TABLE canary; --', 'Placed "At"', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('"Odd Schema"."My Trades"', 'Bot Id', 'at"); DROP TABLE canary; --', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('"Odd Schema"."My Trades"', 'Bot Id', 'Placed "At"', '1 minute', $q$a'); DROP TABLE canary; --$q$)$$);
SELECT pg_temp.err($$SELECT bidguard_guard_cooldown('"Odd Schema"."My Trades"', '"Bot Id"', 'Placed "At"', '1 minute')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('"Odd Schema"."My Trades"', ARRAY['x"); DROP TABLE canary; --'], 'Status', '{open}')$$);
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('"Odd Schema"."My Trades"', '{Bot Id}', $q$st'; DROP TABLE canary; --$q$, '{open}')$$);
-- hostile statuses are values, and hostile names are names
SELECT bidguard_guard_unique_active('"Odd Schema"."My Trades"', ARRAY['Bot Id', 'a''b'], 'Status',
                                    ARRAY['open', $q$x'); DROP TABLE canary; --$q$, 'it''s "on"']);
SELECT key_columns, condition, index_name FROM bidguard_guards
 WHERE table_name = '"Odd Schema"."My Trades"'::regclass AND kind = 'unique_active';
INSERT INTO "Odd Schema"."My Trades" ("Bot Id", "a'b", "Status", "Placed ""At""")
VALUES ('u', 'v', $q$x'); DROP TABLE canary; --$q$, '2026-03-01 11:00:00+00');
SELECT pg_temp.err($$INSERT INTO "Odd Schema"."My Trades" ("Bot Id", "a'b", "Status", "Placed ""At""")
                     VALUES ('u', 'v', 'it''s "on"', '2026-03-01 12:00:00+00')$$);
-- a table named like an attack, in a schema named like one
CREATE SCHEMA "a'b";
CREATE TABLE "a'b"."x""; DROP TABLE canary; --" (k text, at timestamptz, st text);
SELECT bidguard_guard_cooldown(format('%I.%I', 'a''b', 'x"; DROP TABLE canary; --')::regclass, 'k', 'at', '1 minute');
INSERT INTO "a'b"."x""; DROP TABLE canary; --" VALUES ('k', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO "a'b"."x""; DROP TABLE canary; --" VALUES ('k', '2026-03-01 10:00:30+00')$$);
SELECT bidguard_guard_unique_active(format('%I.%I', 'a''b', 'x"; DROP TABLE canary; --')::regclass, '{k}', 'st',
                                    '{open}');
SELECT table_name, kind, index_name FROM bidguard_guards WHERE table_name::text LIKE '"a''b".%' ORDER BY kind;
SELECT bidguard_unguard_cooldown(format('%I.%I', 'a''b', 'x"; DROP TABLE canary; --')::regclass);
SELECT bidguard_unguard_cooldown('"Odd Schema"."My Trades"');
SELECT indexrelid::regclass AS index FROM pg_index
 WHERE indrelid IN ('"Odd Schema"."My Trades"'::regclass, format('%I.%I', 'a''b', 'x"; DROP TABLE canary; --')::regclass)
 ORDER BY 1::text;
-- the canary lives
SELECT alive FROM canary;

--
-- A hostile search_path: look-alikes of what bidguard's SQL uses, in a
-- schema ahead of pg_catalog, that would record their call
--
CREATE SCHEMA hostile;
CREATE TABLE hostile.hostile_calls (what text);
CREATE FUNCTION hostile.called(what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hostile.hostile_calls VALUES (what);
    RAISE NOTICE 'hostile % called', what;
    RETURN true;
END
$$;
-- operators: =, <>, <, >, >=, ~~ answer true; +, -, || answer NULL
DO $$
DECLARE
    o record;
    n int := 0;
BEGIN
    FOR o IN SELECT * FROM (VALUES
        ('=', 'integer', 'integer', 'boolean'), ('=', 'bigint', 'bigint', 'boolean'),
        ('=', 'smallint', 'smallint', 'boolean'), ('=', 'text', 'text', 'boolean'),
        ('=', 'name', 'name', 'boolean'), ('=', 'oid', 'oid', 'boolean'),
        ('=', 'uuid', 'uuid', 'boolean'), ('=', 'job_state', 'job_state', 'boolean'),
        ('=', 'account_code', 'account_code', 'boolean'),
        ('=', 'timestamptz', 'timestamptz', 'boolean'),
        ('<>', 'tid', 'tid', 'boolean'), ('<>', 'text', 'text', 'boolean'),
        ('<', 'timestamptz', 'timestamptz', 'boolean'), ('>', 'timestamptz', 'timestamptz', 'boolean'),
        ('>', 'bigint', 'bigint', 'boolean'), ('>=', 'smallint', 'integer', 'boolean'),
        ('~~', 'text', 'text', 'boolean'),
        ('+', 'timestamptz', 'interval', 'timestamptz'), ('-', 'timestamptz', 'interval', 'timestamptz'),
        ('-', 'timestamptz', 'timestamptz', 'interval'), ('||', 'text', 'text', 'text'))
        AS v(op, l, r, res)
    LOOP
        n := n + 1;
        EXECUTE format('CREATE FUNCTION hostile.op%s(%s, %s) RETURNS %s LANGUAGE sql AS %L',
                       n, o.l, o.r, o.res,
                       format('SELECT CASE WHEN hostile.called(%L) THEN %s END',
                              format('operator %s(%s, %s)', o.op, o.l, o.r),
                              CASE o.res WHEN 'boolean' THEN 'true' ELSE format('NULL::%s', o.res) END));
        EXECUTE format('CREATE OPERATOR hostile.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = hostile.op%s)',
                       o.op, o.l, o.r, n);
    END LOOP;
END
$$;
SELECT count(*) AS hostile_operators FROM pg_operator WHERE oprnamespace = 'hostile'::regnamespace;
-- functions and aggregates
CREATE FUNCTION hostile.max_step(timestamptz, timestamptz) RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('max') THEN NULL::timestamptz END $$;
CREATE AGGREGATE hostile.max(timestamptz) (SFUNC = hostile.max_step, STYPE = timestamptz);
CREATE FUNCTION hostile.count_step(bigint) RETURNS bigint
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('count') THEN 0::bigint END $$;
CREATE AGGREGATE hostile.count(*) (SFUNC = hostile.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION hostile.coalesce(timestamptz, timestamptz) RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('coalesce') THEN NULL::timestamptz END $$;
CREATE FUNCTION hostile.obj_description(oid, name) RETURNS text
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('obj_description') THEN 'x' END $$;
CREATE FUNCTION hostile.quote_ident(text) RETURNS text
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('quote_ident') THEN 'canary' END $$;
CREATE FUNCTION hostile.pg_get_indexdef(oid, integer, boolean) RETURNS text
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('pg_get_indexdef') THEN 'x' END $$;
CREATE FUNCTION hostile.split_part(text, text, integer) RETURNS text
    LANGUAGE sql AS $$ SELECT CASE WHEN hostile.called('split_part') THEN '1 year' END $$;
-- catalog look-alikes: reading them is recorded
CREATE VIEW hostile.pg_index AS SELECT * FROM pg_catalog.pg_index WHERE hostile.called('pg_index');
CREATE VIEW hostile.pg_class AS SELECT * FROM pg_catalog.pg_class WHERE hostile.called('pg_class');
CREATE VIEW hostile.pg_trigger AS SELECT * FROM pg_catalog.pg_trigger WHERE hostile.called('pg_trigger');
CREATE VIEW hostile.pg_attribute AS SELECT attrelid, attname, attnum, atttypid FROM pg_catalog.pg_attribute WHERE hostile.called('pg_attribute');
CREATE VIEW hostile.pg_namespace AS SELECT * FROM pg_catalog.pg_namespace WHERE hostile.called('pg_namespace');
CREATE VIEW hostile.pg_am AS SELECT * FROM pg_catalog.pg_am WHERE hostile.called('pg_am');
-- tables named like the application's, in the hostile schema
CREATE TABLE hostile.hp_orders (bot_id int, placed_at timestamptz, filled_at timestamptz);
CREATE TABLE hostile.hp_jobs (owner_id bigint, state text);
GRANT USAGE ON SCHEMA hostile TO PUBLIC;
GRANT INSERT ON hostile.hostile_calls TO PUBLIC;

CREATE TABLE hp_orders (bot_id int, placed_at timestamptz, filled_at timestamptz);
CREATE INDEX hp_orders_mine ON hp_orders (bot_id, (COALESCE(filled_at, placed_at)));
CREATE TABLE hp_keys (k account_code, at timestamptz);
CREATE TABLE app.hp_jobs (owner_id bigint, state job_state);
INSERT INTO app.hp_jobs VALUES (1, 'running'), (1, 'running'), (2, 'queued');
ALTER TABLE app.hp_jobs OWNER TO regress_bidguard_owner;
GRANT INSERT ON hp_orders, hp_keys, app.hp_jobs TO regress_bidguard_other;

SET search_path = hostile, pg_catalog, public;
-- guarding under that search_path: the expression index is found and reused
SELECT bidguard_guard_cooldown('public.hp_orders', 'bot_id', 'placed_at', '1 minute', 'filled_at');
SELECT bidguard_guard_cooldown('public.hp_keys', 'k', 'at', '1 minute');
-- rows are judged right
INSERT INTO public.hp_orders VALUES (1, '2026-03-01 10:00:00+00', '2026-03-01 10:00:30+00');
SELECT pg_temp.err($$INSERT INTO public.hp_orders VALUES (1, '2026-03-01 10:01:00+00')$$);
SELECT pg_temp.err($$INSERT INTO public.hp_orders VALUES (1, '2026-03-01 09:59:40+00')$$);
INSERT INTO public.hp_orders VALUES (1, '2026-03-01 10:01:30+00'), (2, '2026-03-01 10:00:00+00');
INSERT INTO public.hp_orders (bot_id) VALUES (3);
SELECT pg_temp.err($$INSERT INTO public.hp_orders VALUES (1, '2026-03-01 10:00:00+00', '2026-03-01 10:20:00+00')$$);
INSERT INTO public.hp_keys VALUES ('k1', '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO public.hp_keys VALUES ('k1', '2026-03-01 10:00:30+00')$$);
INSERT INTO public.hp_keys VALUES ('k2', '2026-03-01 10:00:30+00');
-- ... by a role that writes with the same search_path
SET ROLE regress_bidguard_other;
SELECT pg_temp.err($$INSERT INTO public.hp_orders VALUES (2, '2026-03-01 10:00:50+00')$$);
INSERT INTO public.hp_orders VALUES (2, '2026-03-01 10:01:00+00');
RESET ROLE;
-- the unique-active guard finds the duplicates, and is made once they are gone
SET ROLE regress_bidguard_owner;
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('app.hp_jobs', '{owner_id}', 'state', '{queued,running}')$$);
TRUNCATE app.hp_jobs;
SELECT bidguard_guard_unique_active('app.hp_jobs', '{owner_id}', 'state', '{queued,running}');
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('app.hp_jobs', '{owner_id}', 'state', '{queued}')$$);
RESET ROLE;
INSERT INTO app.hp_jobs VALUES (1, 'running');
SELECT pg_temp.err($$INSERT INTO app.hp_jobs VALUES (1, 'queued')$$);
INSERT INTO app.hp_jobs VALUES (1, 'done');
-- the view, and unguarding, under that search_path
SELECT table_name, kind, key_columns, cooldown, index_name FROM public.bidguard_guards
 WHERE table_name::text OPERATOR(pg_catalog.~~) '%hp\_%' ORDER BY table_name::text, kind;
SELECT bidguard_unguard_cooldown('public.hp_keys');
SELECT bidguard_unguard_cooldown('public.hp_orders');
RESET search_path;
-- nothing hostile ran, and the hostile look-alike tables are untouched
SELECT count(*) AS hostile_calls FROM hostile.hostile_calls;
SELECT count(*) AS hostile_rows FROM hostile.hp_orders, hostile.hp_jobs;
-- (the look-alikes do catch unqualified SQL)
BEGIN;
SET LOCAL search_path = hostile, pg_catalog, public;
SELECT 1 = 1 AS caught;
ROLLBACK;
SELECT bot_id, placed_at, filled_at FROM hp_orders ORDER BY bot_id, placed_at;
SELECT owner_id, state FROM app.hp_jobs ORDER BY owner_id, state;
-- the index bidguard made for hp_keys went; the one it reused stayed
SELECT indexrelid::regclass AS index FROM pg_index
 WHERE indrelid IN ('hp_orders'::regclass, 'hp_keys'::regclass) ORDER BY 1::text;

--
-- Renames: the guard follows the table and its columns
--
ALTER TABLE orders RENAME TO robot_orders;
ALTER TABLE robot_orders RENAME COLUMN bot_id TO robot_id;
ALTER TABLE robot_orders RENAME COLUMN placed_at TO "Placed At";
SELECT table_name, key_columns, time_column, fill_column, cooldown, index_name
  FROM bidguard_guards WHERE kind = 'cooldown' AND table_name = 'robot_orders'::regclass;
INSERT INTO robot_orders (robot_id, "Placed At") VALUES (20, '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO robot_orders (robot_id, "Placed At") VALUES (20, '2026-03-01 10:00:30+00')$$);
SELECT pg_temp.err($$UPDATE robot_orders SET robot_id = 20 WHERE robot_id = 1 AND "Placed At" = '2026-03-01 10:00:00+00'$$);
-- ... and its schema
ALTER TABLE robot_orders SET SCHEMA "Odd Schema";
SELECT table_name FROM bidguard_guards WHERE kind = 'cooldown' AND table_name::text LIKE '%robot_orders';
SELECT pg_temp.err($$INSERT INTO "Odd Schema".robot_orders (robot_id, "Placed At") VALUES (20, '2026-03-01 10:00:40+00')$$);
INSERT INTO "Odd Schema".robot_orders (robot_id, "Placed At") VALUES (20, '2026-03-01 10:01:00+00');
-- a guarded column cannot be dropped (error: 2BP01); another can, and the
-- guard goes on (error)
SELECT pg_temp.err($$ALTER TABLE "Odd Schema".robot_orders DROP COLUMN robot_id$$);
SELECT pg_temp.err($$ALTER TABLE "Odd Schema".robot_orders DROP COLUMN "Placed At"$$);
SELECT pg_temp.err($$ALTER TABLE "Odd Schema".robot_orders DROP COLUMN filled_at$$);
ALTER TABLE "Odd Schema".robot_orders DROP COLUMN note;
SELECT pg_temp.err($$INSERT INTO "Odd Schema".robot_orders (robot_id, "Placed At") VALUES (20, '2026-03-01 10:01:30+00')$$);
-- a unique-active guard follows renames too
ALTER TABLE jobs RENAME COLUMN tenant TO customer;
SELECT table_name, key_columns, condition FROM bidguard_guards WHERE table_name = 'jobs'::regclass;

--
-- A day is 24 hours in every session time zone: across a DST change (New
-- York, 2026-03-08) a '1 day' cooldown is judged alike (error both times)
--
CREATE TABLE dst (k int NOT NULL, at timestamptz);
SELECT bidguard_guard_cooldown('dst', 'k', 'at', '1 day');
INSERT INTO dst VALUES (1, '2026-03-08 04:00:00+00');
SET TimeZone = 'America/New_York';
SELECT pg_temp.err($$INSERT INTO dst VALUES (1, '2026-03-09 03:30:00+00')$$, false);
SET TimeZone = 'UTC';
SELECT pg_temp.err($$INSERT INTO dst VALUES (1, '2026-03-09 03:30:00+00')$$, false);
RESET TimeZone;
SELECT pg_temp.err($$INSERT INTO dst VALUES (1, '2026-03-09 04:00:00+00')$$, false);
-- and so is bidguard_trades' (at a clock after both: admission times are
-- never in the future)
SELECT pg_catalog.current_setting('bidguard.test_clock') AS saved_clock \gset
SET bidguard.test_clock = '2026-03-10 00:00:00+00';
SELECT bidguard_set_cooldown(990001, '1 day');
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (990001, '2026-03-08 04:00:00+00');
SET TimeZone = 'America/New_York';
SELECT pg_temp.err($$INSERT INTO bidguard_trades (bot_id, created_at) VALUES (990001, '2026-03-09 03:30:00+00')$$, false);
RESET TimeZone;
SET bidguard.test_clock = :'saved_clock';
DROP TABLE dst;
DELETE FROM bidguard_trades WHERE bot_id = 990001;
DELETE FROM bidguard_bots WHERE bot_id = 990001;

--
-- An extension update replaces bidguard's functions with CREATE OR REPLACE,
-- which keeps their OIDs.  A guard references nothing of bidguard's but the
-- trigger function, so it survives: here the replacement an update script
-- would make, made by hand (1.0 is the only version so far)
--
CREATE TABLE upd (k int NOT NULL, at timestamptz);
SELECT bidguard_guard_cooldown('upd', 'k', 'at', '1 minute');
SELECT 'bidguard_cooldown_guard_trigger()'::regprocedure::oid AS fn_before \gset
CREATE OR REPLACE FUNCTION bidguard_cooldown_guard_trigger() RETURNS trigger
AS '$libdir/bidguard', 'bidguard_cooldown_guard_trigger' LANGUAGE C VOLATILE PARALLEL UNSAFE;
SELECT 'bidguard_cooldown_guard_trigger()'::regprocedure::oid = :fn_before AS same_function,
       (SELECT count(*) FROM pg_depend WHERE objid = :fn_before AND deptype = 'e') AS still_a_member;
INSERT INTO upd VALUES (1, '2026-03-01 10:00:00+00');
SELECT pg_temp.err($$INSERT INTO upd VALUES (1, '2026-03-01 10:00:30+00')$$, false);
SELECT kind, table_name, cooldown FROM bidguard_guards WHERE table_name = 'upd'::regclass;
DROP TABLE upd;

--
-- The extension cannot be dropped from under a guard (error: 2BP01)
--
SELECT pg_temp.err($$DROP EXTENSION bidguard$$, false);
SELECT count(*) AS still_there FROM pg_extension WHERE extname = 'bidguard';

--
-- Audits of an application's table: bidguard_duplicate_active and
-- bidguard_cooldown_violations list the rows a guard would refuse (on
-- legacy data, before guarding it), and nothing on guarded data.  They run
-- under the hostile search_path again, read legacy timestamp columns as UTC
-- whatever the session's TimeZone (here New York, four or five hours behind
-- UTC), and read the table as the caller.
--
CREATE TABLE audit_bids (id int PRIMARY KEY, marketplace_id text, posting_id text, status text NOT NULL);
INSERT INTO audit_bids VALUES
    (1, 'upwork', 'job-1', 'pending'), (2, 'upwork', 'job-1', 'pending'),
    (3, 'upwork', 'job-2', 'submitted'), (4, 'upwork', 'job-2', 'pending'),
    (5, 'upwork', 'job-2', 'pending'),
    (6, 'upwork', 'job-3', 'lost'), (7, 'upwork', 'job-3', 'pending'),
    (8, 'ebay', 'job-1', 'pending'),
    (9, 'upwork', 'job-4', 'won'), (10, 'upwork', 'job-4', 'lost');
-- the migration guide's trades table: timestamp columns holding UTC
CREATE TABLE audit_trades (id int PRIMARY KEY, bot_id int, created_at timestamp, filled_at timestamp, note text);
INSERT INTO audit_trades VALUES
    -- bot 4: the incident, two trades 0.8 s apart, filled 0.7 s apart
    (1, 4, '2025-09-07 20:28:53.39595', '2025-09-07 20:28:53.9', NULL),
    (2, 4, '2025-09-07 20:28:54.212493', '2025-09-07 20:28:54.6', NULL),
    (3, 4, '2025-09-07 21:10:00', NULL, NULL),
    -- bot 5: 80 minutes apart in UTC, across New York's DST change (read as
    -- New York time they would be 20 minutes apart)
    (4, 5, '2026-03-08 01:50:00', NULL, NULL),
    (5, 5, '2026-03-08 03:10:00', NULL, NULL),
    -- bot 6: an hour apart by their times, 20 minutes by the fill
    (6, 6, '2025-09-07 10:00:00', '2025-09-07 10:40:00', NULL),
    (7, 6, '2025-09-07 11:00:00', NULL, NULL),
    -- NULL keys are not guarded, nor are rows without any time
    (8, NULL, '2025-09-07 10:00:00', NULL, NULL), (9, NULL, '2025-09-07 10:00:00', NULL, NULL),
    (10, 7, NULL, NULL, NULL), (11, 7, '2025-09-07 10:00:00', NULL, NULL);
-- a timestamptz time with a legacy timestamp fill, and a text key
CREATE TABLE audit_mixed (k text, at timestamptz, done timestamp);
INSERT INTO audit_mixed VALUES
    ('a', '2026-03-08 04:00:00+00', NULL), ('a', '2026-03-09 03:30:00+00', NULL),
    ('b', '2026-03-08 04:00:00+00', '2026-03-08 05:00:00'), ('b', '2026-03-09 04:30:00+00', NULL),
    ('c', '2026-03-08 04:00:00+00', NULL), ('c', '2026-03-09 04:00:00+00', NULL);
-- names that try to break out of their quotes
CREATE TABLE "Odd Schema"."Audit ""Rows""; DROP TABLE canary; --" (
    "Bot Id" text,
    "at'); DROP TABLE canary; --" timestamp,
    "Fill ""At""" timestamptz,
    "St atus" text
);
INSERT INTO "Odd Schema"."Audit ""Rows""; DROP TABLE canary; --" VALUES
    ('b''1', '2026-03-01 10:00:00', NULL, $q$it's "on"$q$),
    ('b''1', '2026-03-01 10:00:30', NULL, $q$it's "on"$q$),
    ('b''1', '2026-03-01 10:05:00', '2026-03-01 10:05:50+00', 'off'),
    ('b"2', '2026-03-01 10:00:00', NULL, 'off'),
    ('b"2', '2026-03-01 10:10:00', '2026-03-01 10:59:59+00', $q$x'); DROP TABLE canary; --$q$),
    ('b"2', '2026-03-01 11:00:00', NULL, $q$x'); DROP TABLE canary; --$q$);

SET search_path = hostile, pg_catalog, public;
SET TimeZone = 'America/New_York';

-- bidguard_duplicate_active: each key with more than one active row
SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{marketplace_id,posting_id}', 'status',
                                        '{pending,submitted}') ORDER BY 1;
SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id}', 'status',
                                        '{pending,submitted}') ORDER BY 1;
SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{marketplace_id,posting_id}', 'status',
                                        '{pending}') ORDER BY 1;
-- the guard refuses the same groups (error: 23505)
SELECT pg_temp.err($$SELECT bidguard_guard_unique_active('public.audit_bids', '{marketplace_id,posting_id}',
                                                         'status', '{pending,submitted}')$$);
-- an enum status and a bigint key; data the guard admitted: no rows
SELECT * FROM bidguard_duplicate_active('public.ejobs', '{owner_id}', 'state', '{queued,running}');
SELECT * FROM bidguard_duplicate_active('app.hp_jobs', '{owner_id}', 'state', '{queued,running}');
-- once cleaned up, no rows, and the guard is made
RESET search_path;
UPDATE audit_bids SET status = 'withdrawn' WHERE id IN (2, 4, 5);
SET search_path = hostile, pg_catalog, public;
SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{marketplace_id,posting_id}', 'status',
                                        '{pending,submitted}');
SELECT bidguard_guard_unique_active('public.audit_bids', '{marketplace_id,posting_id}', 'status',
                                    '{pending,submitted}');
-- rows with a NULL key are not guarded: the guard admits them, and they are
-- no duplicates (no rows)
INSERT INTO public.audit_bids VALUES (11, NULL, 'job-5', 'pending'), (12, NULL, 'job-5', 'pending'),
                                     (13, 'ebay', NULL, 'pending'), (14, 'ebay', NULL, 'pending');
SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{marketplace_id,posting_id}', 'status',
                                        '{pending,submitted}');

-- bidguard_cooldown_violations: each pair of consecutive rows of a key
-- closer than the cooldown, by coalesce(fill, time); legacy timestamps are
-- read as UTC (the results show in New York time)
SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', '30 seconds',
                                           'filled_at') ORDER BY 1, 3, 2;
SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', '1 hour',
                                           'filled_at') ORDER BY 1, 3, 2;
-- without the fill column bot 6's rows are exactly the cooldown apart: no
-- violation (an explicit NULL fill_column is the same as none)
SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', '1 hour')
 ORDER BY 1, 3, 2;
SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', '1 hour', NULL)
 ORDER BY 1, 3, 2;
-- a day is 24 hours whatever the TimeZone ('a': 23.5 hours, 'b': 23.5 hours
-- after the fill, 'c': exactly a day); a timestamptz time, a timestamp fill
SELECT * FROM bidguard_cooldown_violations('public.audit_mixed', 'k', 'at', '1 day', 'done') ORDER BY 1, 3, 2;
-- rows the guard admitted: no rows (and with a longer cooldown, some)
SELECT * FROM bidguard_cooldown_violations('public.hp_orders', 'bot_id', 'placed_at', '1 minute', 'filled_at');
SELECT * FROM bidguard_cooldown_violations('public.hp_orders', 'bot_id', 'placed_at', '2 minutes', 'filled_at')
 ORDER BY 1, 3, 2;

-- hostile names are names, hostile statuses values
SELECT * FROM bidguard_duplicate_active('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"', '{Bot Id}',
                                        'St atus', ARRAY[$q$it's "on"$q$, $q$x'); DROP TABLE canary; --$q$])
 ORDER BY 1;
SELECT * FROM bidguard_cooldown_violations('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"', 'Bot Id',
                                           $q$at'); DROP TABLE canary; --$q$, '1 hour', 'Fill "At"')
 ORDER BY 1, 3, 2;
-- ... and names that are no column (error: 42703, 42804)
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     ARRAY['Bot Id', 'x"); DROP TABLE canary; --'], 'St atus', '{off}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     '{Bot Id}', $q$St atus'; DROP TABLE canary; --$q$, '{off}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     '{"\"Bot Id\""}', 'St atus', '{off}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     'Bot Id"); DROP TABLE canary; --', $q$at'); DROP TABLE canary; --$q$, '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     'Bot Id', 'at"); DROP TABLE canary; --', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('"Odd Schema"."Audit ""Rows""; DROP TABLE canary; --"',
                     'Bot Id', $q$at'); DROP TABLE canary; --$q$, '1 hour', $q$Fill "At"'); DROP TABLE canary; --$q$)$$);

-- a time or fill column that is no timestamp (error: 42804)
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'note', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'id', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'created_at', 'bot_id', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', '1 hour', 'note')$$);
-- NULL arguments (error: 22004)
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active(NULL, '{posting_id}', 'status', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', NULL, 'status', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id}', NULL, '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id}', 'status', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id,NULL}', 'status', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations(NULL, 'bot_id', 'created_at', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', NULL, 'created_at', '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', NULL, '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id', 'created_at', NULL)$$);
-- empty arrays (error: 22023)
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{}', 'status', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id}', 'status', '{}')$$);
-- a negative cooldown (error: 22023, SPEC 8), not an empty answer
SELECT pg_catalog.left(pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'bot_id',
                                     'created_at', '-1 hour')$$), 5) AS sqlstate;
-- unknown columns (error: 42703)
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{nope}', 'status', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('public.audit_bids', '{posting_id}', 'nope', '{pending}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('public.audit_trades', 'nope', 'created_at', '1 hour')$$);
-- they read the table as the caller, who needs SELECT on it (error: 42501)
SET ROLE regress_bidguard_other;
SELECT pg_temp.err($$SELECT * FROM bidguard_duplicate_active('app.owned', '{k}', 'status', '{open}')$$);
SELECT pg_temp.err($$SELECT * FROM bidguard_cooldown_violations('app.owned', 'k', 'at', '1 minute')$$);
RESET ROLE;
SET ROLE regress_bidguard_owner;
SELECT * FROM bidguard_duplicate_active('app.owned', '{k}', 'status', '{open}');
SELECT * FROM bidguard_cooldown_violations('app.owned', 'k', 'at', '1 minute');
RESET ROLE;

RESET TimeZone;
RESET search_path;
-- nothing hostile ran, and the canary lives
SELECT count(*) AS hostile_calls FROM hostile.hostile_calls;
SELECT alive FROM canary;
DROP TABLE audit_bids, audit_trades, audit_mixed, "Odd Schema"."Audit ""Rows""; DROP TABLE canary; --";

--
-- Clean up, and leave the database as the other tests expect it
--
SELECT bidguard_unguard_cooldown('"Odd Schema".robot_orders');
SELECT bidguard_unguard_cooldown('app.owned');
DROP VIEW bad_view;
DROP SEQUENCE bad_seq;
DROP TABLE canary, bad, fills, jobs, ejobs, k_text, k_uuid, k_domain, hp_orders, hp_keys;
SET client_min_messages = warning;
DROP SCHEMA "Odd Schema", "a'b", app, hostile CASCADE;
RESET client_min_messages;
DROP TYPE job_state;
DROP DOMAIN account_code;
SELECT count(*) AS guards_left FROM bidguard_guards;
DROP ROLE regress_bidguard_owner;
DROP ROLE regress_bidguard_other;
RESET bidguard.test_clock;
SELECT count(*) FROM bidguard_locks;
