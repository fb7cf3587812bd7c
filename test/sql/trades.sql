--
-- Trades and cooldowns: bidguard_set_cooldown, bidguard_try_trade,
-- bidguard_fill_trade, bidguard_fail_trade, and the cooldown trigger
--
-- Time is pinned with the superuser-only bidguard.test_clock so that the
-- boundaries are exact.  Trade ids start at 1000, whatever earlier files
-- did (stats.sql makes trades only when bidguard is preloaded).
SELECT setval(pg_catalog.pg_get_serial_sequence('bidguard_trades', 'trade_id'), 1000, false) AS first_trade_id;

-- err(q): run q, show the SQLSTATE, table and constraint a driver would see
CREATE FUNCTION pg_temp.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; tbl text; con text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, tbl = TABLE_NAME, con = CONSTRAINT_NAME;
    RETURN st || ' table=' || coalesce(nullif(tbl, ''), '-') || ' constraint=' || coalesce(nullif(con, ''), '-');
END
$$;

-- registering bots, and changing a cooldown
SELECT bidguard_set_cooldown(1, '1 minute');
SELECT bidguard_set_cooldown(2, '0');
SELECT bidguard_set_cooldown(3, '1 hour');
SELECT bidguard_set_cooldown(3, '10 minutes');
SELECT bot_id, cooldown FROM bidguard_bots ORDER BY bot_id;

SET bidguard.test_clock = '2026-01-01 10:00:00+00';

-- the first trade is executed; retry_after is the cooldown
SELECT trade_id, executed, reason, retry_after, atomic_event_id IS NOT NULL AS has_event_id
  FROM bidguard_try_trade(1, '{"symbol": "BTC-EUR"}');
SELECT bot_id, status, trade_data, created_at, filled_at FROM bidguard_trades;

-- inside the cooldown: how long to wait
SET bidguard.test_clock = '2026-01-01 10:00:20+00';
SELECT trade_id, executed, reason, retry_after, atomic_event_id FROM bidguard_try_trade(1);
SET bidguard.test_clock = '2026-01-01 10:00:59.999999+00';
SELECT executed, reason, retry_after FROM bidguard_try_trade(1);

-- a gap of exactly the cooldown is allowed
SET bidguard.test_clock = '2026-01-01 10:01:00+00';
SELECT executed, reason, retry_after FROM bidguard_try_trade(1);

-- the wait argument does not matter when the lock is free
SET bidguard.test_clock = '2026-01-01 10:01:30+00';
SELECT executed, reason, retry_after FROM bidguard_try_trade(1, '{}', '5 seconds');
SELECT executed, reason, retry_after FROM bidguard_try_trade(1, '{}', NULL);

-- ROLLBACK gives the cooldown back
SET bidguard.test_clock = '2026-01-01 10:05:00+00';
BEGIN;
SELECT executed, reason FROM bidguard_try_trade(1);
ROLLBACK;
SELECT executed, reason FROM bidguard_try_trade(1);

-- a zero cooldown admits every trade
SELECT executed, reason, retry_after FROM bidguard_try_trade(2);
SELECT executed, reason, retry_after FROM bidguard_try_trade(2);

-- bots do not share cooldowns
SELECT executed, reason FROM bidguard_try_trade(3);

-- a failed trade does not count
SET bidguard.test_clock = '2026-01-01 11:00:00+00';
SELECT trade_id AS t1 FROM bidguard_try_trade(1) \gset
SET bidguard.test_clock = '2026-01-01 11:00:10+00';
SELECT executed, reason, retry_after FROM bidguard_try_trade(1);
SELECT trade_id = :t1 AS same_trade, changed, status FROM bidguard_fail_trade(:t1, 'exchange rejected the order');
SELECT executed, reason FROM bidguard_try_trade(1);

-- the effective time is filled_at once filled: a late fill moves the cooldown
SET bidguard.test_clock = '2026-01-01 12:00:00+00';
SELECT trade_id AS t2 FROM bidguard_try_trade(1) \gset
SET bidguard.test_clock = '2026-01-01 12:00:45+00';
SELECT changed, status FROM bidguard_fill_trade(:t2, '2026-01-01 12:00:40+00');
SET bidguard.test_clock = '2026-01-01 12:01:10+00';
SELECT executed, reason, retry_after FROM bidguard_try_trade(1);
-- filled_at defaults to now
SET bidguard.test_clock = '2026-01-01 13:00:00+00';
SELECT trade_id AS t3 FROM bidguard_try_trade(1) \gset
SET bidguard.test_clock = '2026-01-01 13:00:05+00';
SELECT changed, status FROM bidguard_fill_trade(:t3);
SELECT filled_at FROM bidguard_trades WHERE trade_id = :t3;

-- a trade fills between its admission and now (error): a fill time outside
-- that range would move it out of the cooldown's way
SET bidguard.test_clock = '2026-01-01 13:30:00+00';
SELECT trade_id AS t4 FROM bidguard_try_trade(1) \gset
SELECT * FROM bidguard_fill_trade(:t4, '2026-01-01 13:29:59+00');
SELECT * FROM bidguard_fill_trade(:t4, '2026-01-01 13:30:01+00');
SELECT pg_temp.err(format('SELECT bidguard_fill_trade(%s, %L)', :t4, '2026-01-01 08:00:00+00'));
UPDATE bidguard_trades SET status = 'filled', filled_at = '2026-01-01 08:00:00+00' WHERE trade_id = :t4;
SELECT pg_temp.err(format('UPDATE bidguard_trades SET filled_at = %L WHERE trade_id = %s', '2026-01-01 14:00:00+00', :t4));
SELECT changed, status FROM bidguard_fill_trade(:t4, '2026-01-01 13:30:00+00');
-- moving created_at past the fill is refused too (error)
SET bidguard.test_clock = '2026-01-01 13:31:00+00';
UPDATE bidguard_trades SET created_at = '2026-01-01 13:30:00.5+00' WHERE trade_id = :t4;

-- fill and fail are no-ops on a trade already there, and refuse the other way (error)
SELECT changed, status FROM bidguard_fill_trade(:t3);
SELECT changed, status FROM bidguard_fail_trade(:t1);
SELECT * FROM bidguard_fail_trade(:t3);
SELECT * FROM bidguard_fill_trade(:t1);
SELECT pg_temp.err(format('SELECT bidguard_fill_trade(%s)', :t1));

-- unknown trades and bots (error)
SELECT * FROM bidguard_fill_trade(-1);
SELECT * FROM bidguard_fail_trade(424242);
SELECT * FROM bidguard_try_trade(99);
SELECT pg_temp.err('SELECT bidguard_try_trade(99)');

-- NULL required arguments (error)
SELECT bidguard_set_cooldown(NULL, '1 minute');
SELECT bidguard_set_cooldown(1, NULL);
SELECT * FROM bidguard_try_trade(NULL);
SELECT * FROM bidguard_try_trade(1, NULL);
SELECT * FROM bidguard_fill_trade(NULL);
SELECT * FROM bidguard_fail_trade(NULL);

-- bad values (error)
SELECT bidguard_set_cooldown(1, '-1 second');
SELECT bidguard_set_cooldown(1, '1 day -25 hours');
SELECT * FROM bidguard_try_trade(1, '[]');
SELECT * FROM bidguard_try_trade(1, '"x"');
SELECT * FROM bidguard_try_trade(1, '{}', '-1 ms');

-- read-only transactions (error)
BEGIN READ ONLY;
SELECT * FROM bidguard_try_trade(1);
ROLLBACK;
BEGIN READ ONLY;
SELECT bidguard_set_cooldown(1, '1 minute');
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM bidguard_fill_trade(:t3);
ROLLBACK;

-- none of the errors changed anything
SELECT bot_id, count(*), count(*) FILTER (WHERE status = 'failed') AS failed
  FROM bidguard_trades GROUP BY bot_id ORDER BY bot_id;

--
-- Plain SQL is guarded by the trigger
--
SET bidguard.test_clock = '2026-01-02 10:00:00+00';
SELECT bidguard_set_cooldown(10, '1 minute');
-- created_at is stamped with the (test) clock when not given
INSERT INTO bidguard_trades (bot_id) VALUES (10) RETURNING status, created_at;

-- inside the cooldown (error: 23P01 bidguard_trade_cooldown)
SET bidguard.test_clock = '2026-01-02 10:00:30+00';
INSERT INTO bidguard_trades (bot_id) VALUES (10);
SELECT pg_temp.err('INSERT INTO bidguard_trades (bot_id) VALUES (10)');
-- back-dating past the guard, before or after the other trade (error)
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 09:59:30+00');
SET bidguard.test_clock = '2026-01-02 10:02:00+00';
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 10:00:59+00');
-- an admission time in the future is refused (error: 23514
-- bidguard_trade_admission_time): it would hold the cooldown from now on
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 10:30:00+00');
SELECT pg_temp.err($$INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 10:30:00+00')$$);
SELECT pg_temp.err($$UPDATE bidguard_trades SET created_at = '2026-01-03 00:00:00+00' WHERE bot_id = 10$$);
-- a gap of exactly the cooldown, either side, is fine
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 09:59:00+00');
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (10, '2026-01-02 10:01:00+00');
SET bidguard.test_clock = '2026-01-02 10:00:30+00';
-- a failed trade may be recorded anywhere
INSERT INTO bidguard_trades (bot_id, status, created_at) VALUES (10, 'failed', '2026-01-02 10:00:10+00');
-- the function sees trades inserted by plain SQL
SELECT executed, reason, retry_after FROM bidguard_try_trade(10);

-- UPDATEs that could break the rule are judged (error)
UPDATE bidguard_trades SET status = 'open' WHERE bot_id = 10 AND status = 'failed';
UPDATE bidguard_trades SET created_at = '2026-01-02 10:00:20+00' WHERE bot_id = 10 AND created_at = '2026-01-02 09:59:00+00';
SELECT bidguard_set_cooldown(11, '1 minute');
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (11, '2026-01-02 10:00:30+00');
UPDATE bidguard_trades SET bot_id = 11 WHERE bot_id = 10 AND created_at = '2026-01-02 10:00:00+00';
-- ... and those that cannot, are not
UPDATE bidguard_trades SET trade_data = '{"note": "x"}' WHERE bot_id = 10;
UPDATE bidguard_trades SET created_at = '2026-01-02 09:58:00+00', filled_at = '2026-01-02 09:58:30+00'
 WHERE bot_id = 10 AND created_at = '2026-01-02 09:59:00+00';

-- unknown bot by plain SQL (error: 23503)
INSERT INTO bidguard_trades (bot_id) VALUES (12345);
SELECT pg_temp.err('INSERT INTO bidguard_trades (bot_id) VALUES (12345)');

-- the table's own constraints (error)
\set VERBOSITY terse
INSERT INTO bidguard_trades (bot_id, status) VALUES (10, 'cancelled');
INSERT INTO bidguard_trades (bot_id, trade_data, created_at) VALUES (10, '[]', '2026-01-02 08:00:00+00');
INSERT INTO bidguard_trades (bot_id) VALUES (NULL);
INSERT INTO bidguard_bots (bot_id, cooldown) VALUES (20, '-1 s');
\set VERBOSITY default

-- what the guarded data looks like: no violations
SELECT trade_id IS NOT NULL AS has_id, bot_id, status, created_at, filled_at
  FROM bidguard_trades WHERE bot_id IN (10, 11) ORDER BY created_at;
SELECT count(*) AS violations FROM bidguard_cooldown_violations;

--
-- bidguard_cooldown_violations judges each trade at its admission
--
SELECT bidguard_set_cooldown(30, '1 hour');
SELECT bidguard_set_cooldown(31, '1 hour');
SET bidguard.test_clock = '2026-01-03 09:00:00+00';
SELECT trade_id AS v1 FROM bidguard_try_trade(30) \gset
SELECT trade_id AS v3 FROM bidguard_try_trade(31) \gset
SET bidguard.test_clock = '2026-01-03 10:05:00+00';
SELECT trade_id AS v2 FROM bidguard_try_trade(30) \gset
SELECT trade_id AS v4 FROM bidguard_try_trade(31) \gset
-- a fill recorded when it happens, after the later admission: at that
-- admission the first trade was open, so no violation
SET bidguard.test_clock = '2026-01-03 10:30:00+00';
SELECT changed FROM bidguard_fill_trade(:v1);
SELECT count(*) AS violations FROM bidguard_cooldown_violations;
-- a fill reported late, for a time before the later admission: the bot had
-- traded at 09:30, so the 10:05 trade came 35 minutes after a trade; the
-- guard admitted it on what it knew, and the audit shows it
SELECT changed FROM bidguard_fill_trade(:v3, '2026-01-03 09:30:00+00');
SELECT prev_trade_id = :v3 AS prev_is_v3, trade_id = :v4 AS is_v4, gap, cooldown
  FROM bidguard_cooldown_violations;
-- data loaded past the guard (triggers off) shows up too
ALTER TABLE bidguard_trades DISABLE TRIGGER bidguard_trades_cooldown;
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (30, '2026-01-03 10:20:00+00');
ALTER TABLE bidguard_trades ENABLE TRIGGER bidguard_trades_cooldown;
SELECT prev_trade_id = :v2 AS prev_is_v2, gap, cooldown
  FROM bidguard_cooldown_violations WHERE bot_id = 30;
DELETE FROM bidguard_trades WHERE bot_id IN (30, 31);

-- each admitted trade records the cooldown it was admitted under, so that
-- raising a bot's cooldown later does not make its history a violation
SELECT bidguard_set_cooldown(32, '1 hour');
SET bidguard.test_clock = '2026-01-04 09:00:00+00';
SELECT trade_id AS c1 FROM bidguard_try_trade(32) \gset
SELECT cooldown FROM bidguard_trades WHERE trade_id = :c1;
SET bidguard.test_clock = '2026-01-04 10:00:00+00';
INSERT INTO bidguard_trades (bot_id) VALUES (32) RETURNING cooldown;
SELECT bidguard_set_cooldown(32, '1 day');
SELECT count(*) AS violations_after_raise FROM bidguard_cooldown_violations WHERE bot_id = 32;
-- rows without one (legacy data) are judged by the bot's current cooldown
UPDATE bidguard_trades SET cooldown = NULL WHERE bot_id = 32;
SELECT count(*) AS violations_legacy FROM bidguard_cooldown_violations WHERE bot_id = 32;
DELETE FROM bidguard_trades WHERE bot_id = 32;

--
-- The audit trail
--
SELECT kind, old_status, new_status, detail
  FROM bidguard_events WHERE trade_id = :t1 ORDER BY occurred_at, kind;
SELECT kind, old_status, new_status
  FROM bidguard_events WHERE trade_id = :t3 ORDER BY occurred_at, kind;
SELECT count(*) AS trades_without_admission_event
  FROM bidguard_trades AS t
 WHERE NOT EXISTS (SELECT 1 FROM bidguard_events AS e
                    WHERE e.event_id = t.atomic_event_id AND e.kind = 'trade_executed'
                      AND e.trade_id = t.trade_id);

-- a restored trade (a COPY of every column by the table's owner, as
-- pg_restore loads it) is kept as it was and not judged again, even under a
-- longer cooldown; it writes no event (its events are restored with
-- bidguard_events)
SELECT bidguard_set_cooldown(10, '1 day');
SELECT count(*) AS events_before FROM bidguard_events \gset
COPY bidguard_trades (trade_id, bot_id, status, trade_data, status_reason, atomic_event_id, created_at, filled_at, cooldown) FROM stdin;
900001	10	filled	{}	\N	00000000-0000-0000-0000-000000900011	2026-01-03 10:00:00+00	2026-01-03 10:00:30+00	00:01:00
900002	10	open	{"r": 2}	\N	00000000-0000-0000-0000-000000900012	2026-01-03 10:01:00+00	\N	00:01:00
\.
SELECT trade_id, status, created_at, filled_at, cooldown
  FROM bidguard_trades WHERE trade_id >= 900001 ORDER BY trade_id;
SELECT count(*) - :events_before AS events_written FROM bidguard_events;
-- a new trade is judged under the new cooldown (error)
INSERT INTO bidguard_trades (bot_id) VALUES (10);
-- ... also when it follows a restoring COPY in the same query string: the
-- restore rule is judged per statement (error; the string's implicit
-- transaction takes the restored row back with it)
COPY bidguard_trades FROM PROGRAM $$printf '900009\t10\topen\t{}\t\\N\t00000000-0000-0000-0000-000000900019\t2026-01-03 09:00:00+00\t\\N\t00:01:00\n'$$ \; INSERT INTO bidguard_trades (bot_id) VALUES (10);
SELECT count(*) AS after_the_string FROM bidguard_trades WHERE trade_id = 900009;
-- so is an INSERT of every column, and a COPY of some (error)
CREATE TEMP TABLE saved AS SELECT * FROM bidguard_trades WHERE trade_id = 900002;
DELETE FROM bidguard_trades WHERE trade_id = 900002;
INSERT INTO bidguard_trades SELECT * FROM saved;
COPY bidguard_trades (trade_id, bot_id, created_at) FROM stdin;
900003	10	2026-01-03 10:02:00+00
\.
SELECT count(*) AS left_after_copy FROM bidguard_trades WHERE trade_id >= 900001;

-- A back-dated plain INSERT answers to the trades admitted after it by
-- their admission times, not by their fills: bot 20, cooldown 40 s, a trade
-- admitted at 12:00:00 and filled at 12:01:00.
SELECT bidguard_set_cooldown(20, '40 seconds');
SET bidguard.test_clock = '2026-01-04 12:00:00+00';
SELECT reason FROM bidguard_try_trade(20);
SET bidguard.test_clock = '2026-01-04 12:01:00+00';
SELECT changed FROM bidguard_fill_trade((SELECT max(trade_id) FROM bidguard_trades WHERE bot_id = 20));
-- 10 s before that admission: inside its cooldown (error)
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (20, '2026-01-04 11:59:50+00');
-- 40 s before it: clear
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (20, '2026-01-04 11:59:20+00') RETURNING status;
-- filled 10 s before that admission, created long before: the fill counts (error)
INSERT INTO bidguard_trades (bot_id, created_at, filled_at, status)
VALUES (20, '2026-01-04 11:00:00+00', '2026-01-04 11:59:55+00', 'filled');
-- 20 s after the 12:00:00 admission, before its fill at 12:01:00: the
-- admission counts there, not the later fill (error)
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (20, '2026-01-04 12:00:20+00');
-- 50 s after it, 10 s before its fill: clear of the admission, and the fill
-- came later, so it does not count against this one
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (20, '2026-01-04 12:00:50+00') RETURNING status;
-- the audit agrees: no violation among bot 20's trades
SELECT count(*) AS bot_20_violations FROM bidguard_cooldown_violations WHERE bot_id = 20;
RESET bidguard.test_clock;

-- only superusers may stop the clock (error)
CREATE ROLE regress_bidguard_trader;
SET ROLE regress_bidguard_trader;
SET bidguard.test_clock = '2030-01-01 00:00:00+00';
RESET ROLE;
DROP ROLE regress_bidguard_trader;

-- bidguard.* is reserved for bidguard's own settings (error)
SET bidguard.no_such_setting = 'x';

RESET bidguard.test_clock;
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
