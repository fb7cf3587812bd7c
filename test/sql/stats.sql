--
-- bidguard_stats, bidguard_lock_wait_histogram, bidguard_stats_reset
--
-- They need shared_preload_libraries = 'bidguard'.  make test's cluster
-- preloads it; a server without it (make installcheck on your own server)
-- runs the other branch, which checks that each raises 55000 with its hint,
-- and matches expected/stats_1.out instead.  The first line of the output
-- says which, so neither file can stand in for the other.
--
SELECT pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])bidguard([ ,]|$)' AS preloaded \gset
SELECT :'preloaded' AS preloaded;
\if :preloaded
SELECT bidguard_stats_reset();
SELECT bids_created + bids_deduplicated + trades_executed + lock_acquired AS all_zero,
       stats_reset > now() - interval '1 minute' AS just_reset
  FROM bidguard_stats;

-- every path counts: functions and plain SQL
SELECT created FROM bidguard_create_bid('st', 'p1');
SELECT created FROM bidguard_create_bid('st', 'p1');
SELECT created FROM bidguard_create_bid('st', 'p1');
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('st', 'p2');
SELECT withdrawn FROM bidguard_withdraw_posting('st', 'p1');
UPDATE bidguard_bids SET status = 'withdrawn' WHERE marketplace_id = 'st' AND posting_id = 'p2';
\set VERBOSITY sqlstate
SELECT * FROM bidguard_set_bid_status((SELECT max(bid_id) FROM bidguard_bids WHERE posting_id = 'p1'), 'won');
\set VERBOSITY default
SELECT bidguard_set_cooldown(91, '1 hour');
SELECT reason FROM bidguard_try_trade(91);
SELECT reason FROM bidguard_try_trade(91);
\set VERBOSITY terse
INSERT INTO bidguard_trades (bot_id) VALUES (91);
\set VERBOSITY default
SELECT bids_created, bids_deduplicated, bids_withdrawn, transitions_rejected,
       trades_executed, trades_rejected_cooldown, trades_rejected_busy,
       lock_acquired, lock_waited, lock_timeouts
  FROM bidguard_stats;

-- a counted wait: another session holds the lock, this one waits 100 ms
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
    split_part(current_setting('unix_socket_directories'), ',', 1),
    current_setting('port'), current_database(), current_user));
SELECT dblink_exec('other', 'BEGIN');
SELECT * FROM dblink('other', $$SELECT bidguard_lock('st', 'held')$$) AS t(held boolean);
-- (a cooldown answer holds the bot's lock to the end of the transaction too)
SELECT * FROM dblink('other', $$SELECT reason FROM bidguard_try_trade(91)$$) AS t(reason text);
SELECT bidguard_lock('st', 'held', '100 ms') AS obtained;
SELECT reason FROM bidguard_try_trade(91, '{}', '0');
SELECT dblink_exec('other', 'COMMIT');
SELECT dblink_disconnect('other');
DROP EXTENSION dblink;
SELECT trades_rejected_busy, lock_waited, lock_timeouts,
       lock_wait_total_ms >= 100 AS waited_100ms, lock_wait_max_ms >= 100 AS max_100ms,
       lock_wait_max_ms < 10000 AS max_sane
  FROM bidguard_stats;
-- the histogram is cumulative and ends with Infinity
SELECT le_ms, count FROM bidguard_lock_wait_histogram WHERE le_ms IN (50, 250, 'Infinity') ORDER BY le_ms;

-- only the owner may reset (error)
CREATE ROLE regress_bidguard_watcher;
SET ROLE regress_bidguard_watcher;
SELECT bidguard_stats_reset();
RESET ROLE;
DROP ROLE regress_bidguard_watcher;

-- counting can be switched off (superuser setting)
SELECT bidguard_stats_reset();
SET bidguard.track_stats = off;
SELECT created FROM bidguard_create_bid('st', 'p3');
RESET bidguard.track_stats;
SELECT bids_created, lock_acquired FROM bidguard_stats;

-- leave no bot behind for the other tests
DELETE FROM bidguard_trades WHERE bot_id = 91;
DELETE FROM bidguard_bots WHERE bot_id = 91;
\else
-- not preloaded: every statistics function says why (error)
SELECT * FROM bidguard_stats;
SELECT * FROM bidguard_lock_wait_histogram;
SELECT bidguard_stats_reset();
-- and nothing else depends on it
SELECT created FROM bidguard_create_bid('st', 'p1');
SELECT bidguard_withdraw_posting('st', 'p1') IS NOT NULL AS withdrawn;
\endif

SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
