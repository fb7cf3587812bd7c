--
-- Concurrency slots: bidguard_acquire_slot, bidguard_acquire_session_slot,
-- bidguard_release_slot, bidguard_slot_holders.
--
-- Each acquire is one more holder: a transaction can take every slot, and
-- then the next acquire is busy at once (waiting on itself would be forever).
BEGIN;
SELECT acquired, slot BETWEEN 1 AND 3 AS in_range, reason FROM bidguard_acquire_slot('sl:a', 3);
SELECT acquired, reason FROM bidguard_acquire_slot('sl:a', 3);
SELECT acquired, reason FROM bidguard_acquire_slot('sl:a', 3);
SELECT acquired, slot, reason FROM bidguard_acquire_slot('sl:a', 3, '1 second');
SELECT array_agg(slot ORDER BY slot) AS slots, bool_and(pid = pg_backend_pid()) AS mine,
       bool_and(granted) AS granted
  FROM bidguard_slot_holders('sl:a', 3);
-- each slot is a bidguard lock of kind slot, key bidguard_lock_key(key, slot)
SELECT count(*) AS slot_locks FROM bidguard_locks WHERE kind = 'slot';
SELECT count(*) AS keys_match FROM bidguard_locks AS l, generate_series(1, 3) AS n
 WHERE l.kind = 'slot' AND l.key = bidguard_lock_key('sl:a', n::text);
-- transaction slots cannot be released early
SELECT bidguard_release_slot('sl:a', 1);
COMMIT;
-- released at commit, and at rollback
SELECT count(*) AS after_commit FROM bidguard_slot_holders('sl:a', 3);
BEGIN;
SELECT acquired FROM bidguard_acquire_slot('sl:a', 1);
ROLLBACK;
SELECT count(*) AS after_rollback FROM bidguard_slot_holders('sl:a', 1);
-- allowed in a read-only transaction, as locks are
BEGIN READ ONLY;
SELECT acquired FROM bidguard_acquire_slot('sl:ro', 1);
COMMIT;

-- session slots: held across transactions until released
SELECT acquired, slot FROM bidguard_acquire_session_slot('sl:s', 1);
SELECT count(*) AS held FROM bidguard_slot_holders('sl:s', 1);
SELECT acquired, reason FROM bidguard_acquire_session_slot('sl:s', 1);
SELECT acquired, reason FROM bidguard_acquire_slot('sl:s', 1);
SELECT bidguard_release_slot('sl:s', 1) AS released;
SELECT bidguard_release_slot('sl:s', 1) AS released_again;
SELECT bidguard_release_slot('sl:s', 2) AS never_held;
SELECT count(*) AS held FROM bidguard_slot_holders('sl:s', 1);
-- DISCARD ALL (a session pooler's reset) releases them, as advisory locks
SELECT acquired FROM bidguard_acquire_session_slot('sl:d', 1);
DISCARD ALL;
SELECT count(*) AS after_discard FROM bidguard_slot_holders('sl:d', 1);

-- behind a transaction pooler, session slots are refused
SET bidguard.pool_mode = transaction;
SELECT * FROM bidguard_acquire_session_slot('sl:s', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT acquired FROM bidguard_acquire_slot('sl:s', 1);
SET bidguard.pool_mode = statement;
\set VERBOSITY terse
SELECT * FROM bidguard_acquire_session_slot('sl:s', 1);
RESET bidguard.pool_mode;
SET bidguard.pool_mode = 'none';

-- errors: 22004 for NULLs, 22023 out of range
\set VERBOSITY sqlstate
SELECT * FROM bidguard_acquire_slot(NULL, 1);
SELECT * FROM bidguard_acquire_slot('k', NULL);
SELECT * FROM bidguard_acquire_slot('', 1);
SELECT * FROM bidguard_acquire_slot(repeat('k', 257), 1);
SELECT * FROM bidguard_acquire_slot('k', 0);
SELECT * FROM bidguard_acquire_slot('k', 10001);
SELECT * FROM bidguard_acquire_slot('k', 1, '-1 second');
SELECT * FROM bidguard_release_slot(NULL, 1);
SELECT * FROM bidguard_release_slot('k', NULL);
SELECT * FROM bidguard_slot_holders('k', 0);
\set VERBOSITY default
-- the largest number of slots works
SELECT acquired FROM bidguard_acquire_slot('sl:big', 10000);

--
-- The slot guard on plain INSERTs: bidguard_guard_slots.
--
CREATE TABLE sl_jobs (job_id int GENERATED ALWAYS AS IDENTITY, customer text, note text);
SELECT bidguard_guard_slots('sl_jobs', 'customer', 1) AS key_prefix;
-- one transaction, many rows of a key: one slot for them all
BEGIN;
INSERT INTO sl_jobs (customer) VALUES ('alice'), ('alice'), ('bob');
SELECT count(*) AS held_slots FROM bidguard_locks WHERE kind = 'slot';
SELECT slot, pid = pg_backend_pid() AS mine FROM bidguard_slot_holders('public.sl_jobs:alice', 1);
-- the slots are shared with bidguard_acquire_slot callers of the same key
SELECT acquired, reason FROM bidguard_acquire_slot('public.sl_jobs:bob', 1);
COMMIT;
SELECT count(*) AS after_commit FROM bidguard_locks WHERE kind = 'slot';
-- NULL keys take no slot; UPDATEs neither
BEGIN;
INSERT INTO sl_jobs (customer) VALUES (NULL);
UPDATE sl_jobs SET note = 'x';
SELECT count(*) AS no_slots FROM bidguard_locks WHERE kind = 'slot';
COMMIT;
SELECT kind, table_name, key_columns, max_count, key_prefix FROM bidguard_guards WHERE kind = 'slots';
-- errors of guarding
\set VERBOSITY sqlstate
SELECT bidguard_guard_slots('sl_jobs', 'customer', 0);
SELECT bidguard_guard_slots('sl_jobs', 'customer', NULL);
SELECT bidguard_guard_slots('sl_jobs', 'customer', 1, '-1 second');
SELECT bidguard_guard_slots('sl_jobs', 'nope', 1);
\set VERBOSITY default
-- a trigger made by hand with the function is refused at its first row
CREATE TABLE sl_hand (k text);
CREATE TRIGGER t BEFORE INSERT ON sl_hand FOR EACH ROW EXECUTE FUNCTION bidguard_slot_guard_trigger();
INSERT INTO sl_hand VALUES ('x');
DROP TABLE sl_hand;
SELECT bidguard_unguard_slots('sl_jobs');
SELECT bidguard_unguard_slots('sl_jobs');
DROP TABLE sl_jobs;
