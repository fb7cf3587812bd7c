--
-- bidguard_lock, bidguard_lock_key and bidguard_locks
--
BEGIN;
SELECT bidguard_lock('orders', 'order-42') AS held;
-- taking it again in the same transaction is fine
SELECT bidguard_lock('orders', 'order-42', '0') AS held_again;
SELECT pid = pg_backend_pid() AS mine, kind, key = bidguard_lock_key('orders', 'order-42') AS key_matches,
       granted, wait_start IS NULL AS not_waiting
  FROM bidguard_locks;
-- the underlying lock: advisory, exclusive, bidguard's class 25091
SELECT locktype, mode, objsubid FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
-- released at commit ...
SELECT count(*) AS after_commit FROM bidguard_locks;
-- ... and at rollback; there is no session lock and no unlock
BEGIN;
SELECT bidguard_lock('orders', 'order-42', NULL);
ROLLBACK;
SELECT count(*) AS after_rollback FROM bidguard_locks;

-- kinds: a posting's lock, a bot's lock and a user lock
SELECT bidguard_set_cooldown(77, '0');
BEGIN;
SELECT created FROM bidguard_create_bid('lk', 'p1');
SELECT executed FROM bidguard_try_trade(77);
SELECT bidguard_lock('lk', 'p1');
SELECT kind, key = CASE kind WHEN 'bot' THEN 77 ELSE bidguard_lock_key('lk', 'p1') END AS key_matches
  FROM bidguard_locks ORDER BY kind;
ROLLBACK;

-- allowed in a read-only transaction, like pg_advisory_xact_lock()
BEGIN READ ONLY;
SELECT bidguard_lock('ro', 'k', '0');
COMMIT;

-- NULL namespace or key, negative wait (error)
SELECT bidguard_lock(NULL, 'k');
SELECT bidguard_lock('n', NULL);
SELECT bidguard_lock('n', 'k', '-1 second');

-- Two sessions: bidguard's locks and the application's pg_advisory_lock()
-- with the same numbers never block each other, nor does one class block
-- another.  The second session is a dblink connection to this database.
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
    split_part(current_setting('unix_socket_directories'), ',', 1),
    current_setting('port'), current_database(), current_user));
SELECT bidguard_lock_key('shared', 'k') AS k \gset
BEGIN;
SELECT bidguard_lock('shared', 'k') AS mine;
-- the other session's advisory locks on the same 64-bit number, and on its
-- two halves, are granted at once
SELECT * FROM dblink('other', format('SELECT pg_try_advisory_lock(%s)', :k)) AS t(granted boolean);
SELECT * FROM dblink('other', format('SELECT pg_try_advisory_lock(%s, %s)', :k >> 32, :k & 4294967295)) AS t(granted boolean);
-- but bidguard_lock on the same (namespace, key) is not
SELECT * FROM dblink('other', $$SELECT bidguard_lock('shared', 'k', '0')$$) AS t(granted boolean);
COMMIT;
-- and it is, once this transaction has ended
SELECT * FROM dblink('other', $$SELECT bidguard_lock('shared', 'k', '0')$$) AS t(granted boolean);
SELECT * FROM dblink('other', 'SELECT pg_advisory_unlock_all()') AS t(x text);
SELECT dblink_disconnect('other');
DROP EXTENSION dblink;

SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
