--
-- upgrade: every released version installs and updates forward along the
-- scripts PostgreSQL finds installed (pg_stat_statements's oldextversions
-- test).  In a database of its own, so that this suite's database keeps the
-- current version.  test/t/021_upgrade.pl compares the updated catalog with
-- a fresh install's, object by object.
--
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_bidguard_upgrade;
\c regress_bidguard_upgrade
SET client_min_messages = warning;

-- the versions installed, and the paths between them
SELECT name, version FROM pg_available_extension_versions
 WHERE name = 'bidguard' ORDER BY version;
SELECT source, target, path FROM pg_extension_update_paths('bidguard')
 WHERE path IS NOT NULL ORDER BY source, target;

CREATE EXTENSION bidguard VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'bidguard';
-- 1.0's SQL works against this library
SELECT created FROM bidguard_create_bid('upgrade', 'posting-1');
SELECT bidguard_set_cooldown(1, '1 hour');
SELECT reason FROM bidguard_try_trade(1);
SELECT reason, retry_after > '59 minutes' AS waits FROM bidguard_try_trade(1);
SELECT count(*) FROM pg_proc WHERE proname = 'bidguard_rate_limit';

ALTER EXTENSION bidguard UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'bidguard';
-- the rows and the guards are still there
SELECT marketplace_id, posting_id, status FROM bidguard_bids;
SELECT created FROM bidguard_create_bid('upgrade', 'posting-1');
SELECT reason FROM bidguard_try_trade(1);
-- and what 1.1 added works
SELECT allowed, remaining FROM bidguard_rate_limit('upgrade:k', 1, '1 hour');
SELECT allowed, remaining FROM bidguard_rate_limit('upgrade:k', 1, '1 hour');
SELECT count(*) FROM pg_proc WHERE proname = 'bidguard_rate_limit';

-- there is no way back (error)
\set VERBOSITY terse
ALTER EXTENSION bidguard UPDATE TO '1.0';
\set VERBOSITY default

-- nothing left locked
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

\c :regress_db
DROP DATABASE regress_bidguard_upgrade;
