--
-- bidguard_rate_limit: a sliding window of per, at most max_count units.
-- The clock is bidguard.test_clock, so every figure below is exact.
--
SET bidguard.test_clock = '2026-03-01 12:00:00+00';
-- three units per 10 seconds: 1 + 2 fit, the next does not
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds', 2);
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
-- cost 0 asks without taking anything
SET bidguard.test_clock = '2026-03-01 12:00:04+00';
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds', 0);
SELECT count(*) AS events FROM bidguard_rate_events WHERE key = 'rl:a';
-- a unit at :04 does not fit: the three of :00 leave the window at :10
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
-- the window is (now - per, now]: at :10 the units of :00 have left it
SET bidguard.test_clock = '2026-03-01 12:00:10+00';
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds', 2);
SELECT * FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
-- retry_after of a refused call: until enough units have left
SELECT allowed, retry_after FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
SET bidguard.test_clock = '2026-03-01 12:00:14+00';
SELECT allowed, remaining FROM bidguard_rate_limit('rl:a', 3, '10 seconds');
-- an admitted call deletes the key's rows whose window has passed
SELECT at, cost, expires_at FROM bidguard_rate_events WHERE key = 'rl:a' ORDER BY at;
-- keys are independent
SELECT allowed, remaining FROM bidguard_rate_limit('rl:b', 3, '10 seconds', 3);

-- a rolled-back transaction gives its units back
BEGIN;
SELECT allowed, remaining FROM bidguard_rate_limit('rl:rb', 1, '1 hour');
ROLLBACK;
SELECT allowed, remaining FROM bidguard_rate_limit('rl:rb', 1, '1 hour');
SELECT allowed, remaining FROM bidguard_rate_limit('rl:rb', 1, '1 hour');
-- so does a rolled-back savepoint
BEGIN;
SAVEPOINT s;
SELECT allowed FROM bidguard_rate_limit('rl:sp', 1, '1 hour');
ROLLBACK TO SAVEPOINT s;
SELECT allowed FROM bidguard_rate_limit('rl:sp', 1, '1 hour');
COMMIT;
SELECT count(*) AS sp_events FROM bidguard_rate_events WHERE key = 'rl:sp';

-- the key's lock is held to the end of the transaction, shown in bidguard_locks
BEGIN;
SELECT allowed FROM bidguard_rate_limit('rl:lock', 5, '1 minute');
SELECT kind, key = bidguard_lock_key('rate', 'rl:lock') AS key_matches FROM bidguard_locks;
COMMIT;

-- months and days are on the UTC wall clock, as cooldowns are
SELECT allowed, retry_after, reset_after FROM bidguard_rate_limit('rl:month', 1, '1 month');
SELECT allowed, retry_after FROM bidguard_rate_limit('rl:month', 1, '1 month');

--
-- Configured limits: the longest key_prefix a key starts with.
--
INSERT INTO bidguard_rate_limits (key_prefix, max_count, per) VALUES
    ('api:', 2, '1 minute'), ('api:premium:', 5, '1 minute'), ('', 100, '1 second');
SELECT allowed, remaining FROM bidguard_rate_limit('api:alice');
SELECT allowed, remaining FROM bidguard_rate_limit('api:alice', 1);
SELECT allowed, remaining, retry_after FROM bidguard_rate_limit('api:alice');
SELECT allowed, remaining FROM bidguard_rate_limit('api:premium:bob', 2);
SELECT allowed, remaining FROM bidguard_rate_limit('other');
-- no match: 42704
DELETE FROM bidguard_rate_limits WHERE key_prefix = '';
\set VERBOSITY terse
\set SHOW_CONTEXT never
SELECT * FROM bidguard_rate_limit('other');
-- the table checks its rows
INSERT INTO bidguard_rate_limits VALUES ('bad:', 0, '1 minute');
INSERT INTO bidguard_rate_limits VALUES ('bad:', 1, '0 seconds');
INSERT INTO bidguard_rate_limits VALUES ('bad:', 1, '-1 minute');

--
-- Errors: 22004 for NULLs, 22023 for values out of range.
--
\set VERBOSITY sqlstate
SELECT * FROM bidguard_rate_limit(NULL, 1, '1 minute');
SELECT * FROM bidguard_rate_limit('k', NULL, '1 minute');
SELECT * FROM bidguard_rate_limit('k', 1, NULL);
SELECT * FROM bidguard_rate_limit('k', 1, '1 minute', NULL);
SELECT * FROM bidguard_rate_limit('', 1, '1 minute');
SELECT * FROM bidguard_rate_limit(repeat('k', 257), 1, '1 minute');
SELECT * FROM bidguard_rate_limit('k', 0, '1 minute');
SELECT * FROM bidguard_rate_limit('k', -1, '1 minute');
SELECT * FROM bidguard_rate_limit('k', 1, '0');
SELECT * FROM bidguard_rate_limit('k', 1, '-1 second');
SELECT * FROM bidguard_rate_limit('k', 1, '1 minute', -1);
SELECT * FROM bidguard_rate_limit('k', 2, '1 minute', 3);
SELECT * FROM bidguard_rate_limit(NULL::text);
SELECT * FROM bidguard_rate_limit('api:x', NULL::integer);
-- not in a read-only transaction (it writes its units)
BEGIN READ ONLY;
SELECT * FROM bidguard_rate_limit('k', 1, '1 minute');
ROLLBACK;
\set VERBOSITY default

--
-- Privileges: INSERT on bidguard_rate_events is what a caller needs; the
-- rows are written as the table's owner, so DELETE is not.
--
CREATE ROLE regress_bidguard_limited;
GRANT INSERT ON bidguard_rate_events TO regress_bidguard_limited;
CREATE ROLE regress_bidguard_nobody;
SET ROLE regress_bidguard_limited;
SELECT allowed FROM bidguard_rate_limit('rl:role', 1, '1 minute');
SELECT allowed FROM bidguard_rate_limit('rl:role', 1, '1 minute');
DELETE FROM bidguard_rate_events WHERE key = 'rl:role';
SET ROLE regress_bidguard_nobody;
SELECT allowed FROM bidguard_rate_limit('rl:role', 1, '1 minute');
RESET ROLE;

--
-- Maintenance: rows whose window has passed.
--
SET bidguard.test_clock = '2026-03-02 12:00:00+00';
SELECT bidguard_prune_rate_events() > 0 AS pruned;
SELECT count(*) AS left_after_prune FROM bidguard_rate_events WHERE expires_at <= '2026-03-02 12:00:00+00';
SELECT bidguard_prune_rate_events() AS pruned_again;

--
-- The guard on a plain INSERT: bidguard_guard_rate_limit.
--
CREATE TABLE rl_orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text, note text);
SELECT bidguard_guard_rate_limit('rl_orders', 'customer', 2, '1 hour') AS key_prefix;
INSERT INTO rl_orders (customer) VALUES ('alice'), ('alice'), ('bob');
INSERT INTO rl_orders (customer) VALUES ('alice');
SELECT count(*) AS alice_rows FROM rl_orders WHERE customer = 'alice';
-- the driver sees the constraint name and SQLSTATE 23P01
DO $$
DECLARE
    state text;
    cname text;
BEGIN
    INSERT INTO rl_orders (customer) VALUES ('alice');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, cname = CONSTRAINT_NAME;
    RAISE NOTICE 'sqlstate %, constraint %', state, cname;
END
$$;
\set VERBOSITY terse
-- NULL keys are not limited; UPDATEs take no units
INSERT INTO rl_orders (customer) VALUES (NULL), (NULL), (NULL);
UPDATE rl_orders SET note = 'x' WHERE customer = 'alice';
UPDATE rl_orders SET customer = 'carol' WHERE customer = 'bob';
-- the rows share their quota with bidguard_rate_limit() callers of the same key
SELECT allowed, remaining FROM bidguard_rate_limit('public.rl_orders:bob', 2, '1 hour', 0);
-- an INSERT that fails later gives its unit back
BEGIN;
INSERT INTO rl_orders (customer) VALUES ('dave');
ROLLBACK;
INSERT INTO rl_orders (customer) VALUES ('dave'), ('dave');
SELECT * FROM bidguard_guards WHERE kind = 'rate_limit';
-- renaming the key column or the table keeps the guard and its quota
ALTER TABLE rl_orders RENAME COLUMN customer TO client;
ALTER TABLE rl_orders RENAME TO rl_orders2;
INSERT INTO rl_orders2 (client) VALUES ('alice');
SELECT table_name, key_columns, key_prefix FROM bidguard_guards WHERE kind = 'rate_limit';
-- the guarded column cannot be dropped under the guard
ALTER TABLE rl_orders2 DROP COLUMN client;
-- re-guarding replaces the guard; NULL limits: the configured one of the prefix
INSERT INTO bidguard_rate_limits VALUES ('orders:', 1, '1 day');
SELECT bidguard_guard_rate_limit('rl_orders2', 'client', key_prefix => 'orders:');
INSERT INTO rl_orders2 (client) VALUES ('erin');
INSERT INTO rl_orders2 (client) VALUES ('erin');
SELECT max_count, per, key_prefix FROM bidguard_guards WHERE kind = 'rate_limit';
-- errors of guarding
SELECT bidguard_guard_rate_limit('rl_orders2', 'client', 5, NULL);
SELECT bidguard_guard_rate_limit('rl_orders2', 'nope', 5, '1 hour');
SELECT bidguard_guard_rate_limit('rl_orders2', 'client', 0, '1 hour');
SELECT bidguard_guard_rate_limit('bidguard_bids', 'posting_id', 5, '1 hour');
SET ROLE regress_bidguard_limited;
SELECT bidguard_guard_rate_limit('rl_orders2', 'client', 5, '1 hour');
RESET ROLE;
-- a trigger made by hand with the function is refused at its first row
CREATE TABLE rl_hand (k text);
CREATE TRIGGER t BEFORE INSERT ON rl_hand FOR EACH ROW EXECUTE FUNCTION bidguard_rate_limit_guard_trigger();
INSERT INTO rl_hand VALUES ('x');
DROP TABLE rl_hand;
-- unguard
SELECT bidguard_unguard_rate_limit('rl_orders2');
INSERT INTO rl_orders2 (client) VALUES ('erin');
SELECT bidguard_unguard_rate_limit('rl_orders2');
SELECT count(*) AS rate_guards FROM bidguard_guards WHERE kind = 'rate_limit';
\set VERBOSITY default
DROP TABLE rl_orders2;
DELETE FROM bidguard_rate_limits;
REVOKE ALL ON bidguard_rate_events FROM regress_bidguard_limited;
DROP ROLE regress_bidguard_limited;
DROP ROLE regress_bidguard_nobody;
RESET bidguard.test_clock;
