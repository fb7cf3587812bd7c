-- test/pgtap/intervals.sql
--	  Infinite intervals, which PostgreSQL 17 and later accept ('infinity',
--	  '-infinity'): no cooldown and no wait may be infinite.  The functions
--	  raise 22023 with PostgreSQL's wording, bidguard_bots' CHECK constraint
--	  refuses a plain INSERT or UPDATE (23514), and a rejected call changes
--	  nothing.  On 15 and 16 such a value cannot be written at all (the
--	  interval input function refuses it, 22007): the file says so and skips
--	  the version-specific assertions, so the plan is the same everywhere.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(17);

SELECT bidguard_set_cooldown(7001, '1 hour');
CREATE TABLE iv_trades (bot int NOT NULL, at timestamptz);

-- On every version: the finite bounds still work.
SELECT lives_ok($$SELECT bidguard_set_cooldown(7002, '0')$$, 'a zero cooldown is accepted');
SELECT is((SELECT reason FROM bidguard_try_trade(7001, '{}', '1 ms')), 'executed',
          'a finite wait is accepted');

SELECT pg_catalog.current_setting('server_version_num')::int >= 170000 AS infinite_intervals \gset
\if :infinite_intervals
SELECT throws_ok($$SELECT bidguard_set_cooldown(7001, 'infinity')$$,
                 '22023', 'cooldown must be finite',
                 'set_cooldown: an infinite cooldown is 22023');
SELECT throws_ok($$SELECT bidguard_set_cooldown(7003, 'infinity')$$,
                 '22023', 'cooldown must be finite',
                 'set_cooldown: an infinite cooldown of a new bot is 22023');
SELECT throws_ok($$SELECT bidguard_set_cooldown(7001, '-infinity')$$,
                 '22023', 'cooldown must not be negative',
                 'set_cooldown: -infinity is a negative cooldown');
SELECT is((SELECT cooldown FROM bidguard_bots WHERE bot_id = 7001), '1 hour'::interval,
          'a refused set_cooldown leaves the cooldown as it was');
SELECT is((SELECT count(*) FROM bidguard_bots WHERE bot_id = 7003), 0::bigint,
          'a refused set_cooldown registers no bot');
SELECT throws_ok($$INSERT INTO bidguard_bots (bot_id, cooldown) VALUES (7004, 'infinity')$$,
                 '23514', NULL, 'plain INSERT of an infinite cooldown is 23514');
SELECT throws_ok($$UPDATE bidguard_bots SET cooldown = 'infinity' WHERE bot_id = 7001$$,
                 '23514', NULL, 'plain UPDATE to an infinite cooldown is 23514');
SELECT throws_ok($$SELECT * FROM bidguard_try_trade(7002, '{}', 'infinity')$$,
                 '22023', 'wait must be finite',
                 'try_trade: an infinite wait is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_try_trade(7002, '{}', '-infinity')$$,
                 '22023', 'wait must not be negative',
                 'try_trade: -infinity is a negative wait');
SELECT is((SELECT count(*) FROM bidguard_trades WHERE bot_id = 7002), 0::bigint,
          'a refused try_trade admits nothing');
SELECT throws_ok($$SELECT bidguard_lock('iv', 'k', 'infinity')$$,
                 '22023', 'wait must be finite',
                 'bidguard_lock: an infinite wait is 22023');
SELECT throws_ok($$SELECT bidguard_guard_cooldown('iv_trades', 'bot', 'at', 'infinity')$$,
                 '22023', 'cooldown must be finite',
                 'guard_cooldown: an infinite cooldown is 22023');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'iv_trades'::regclass),
          0::bigint, 'a refused guard_cooldown creates no trigger');
-- A trigger made by hand with an infinite argument refuses rows instead of
-- judging them by it.
CREATE TRIGGER bidguard_cooldown_guard BEFORE INSERT OR UPDATE OF bot, at ON iv_trades
    FOR EACH ROW EXECUTE FUNCTION bidguard_cooldown_guard_trigger('infinity');
SELECT throws_ok($$INSERT INTO iv_trades VALUES (1, now())$$,
                 '22023', 'cooldown must be finite',
                 'a hand-made guard trigger with an infinite cooldown refuses the row');
\else
SELECT throws_ok($$SELECT 'infinity'::interval$$, '22007', NULL,
                 'before PostgreSQL 17 an interval cannot be infinite');
SELECT skip('intervals can be infinite only from PostgreSQL 17 on', 13);
\endif

SELECT is((SELECT count(*) FROM bidguard_bots WHERE bot_id IN (7003, 7004)), 0::bigint,
          'no refused statement registered a bot');

SELECT * FROM finish();
ROLLBACK;
