-- test/pgtap/errors.sql
--	  Every SQLSTATE of SPEC §8 that applies to bids, with throws_ok():
--	  22004 (NULL required argument), 22023 (empty or over-long id, bid_data
--	  not an object, unknown status), 23505 (second active bid by plain SQL,
--	  constraint bidguard_bids_one_active), 23514 (transition not allowed,
--	  constraint bidguard_bid_transition, by function and by plain UPDATE),
--	  P0002 (unknown bid_id) and 25006 (read-only transaction, last: a
--	  transaction cannot become read-write again).  40001 needs two sessions
--	  and is left to the isolation and TAP suites.  Also: PostgreSQL's message
--	  style, and that a rejected call changes nothing.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(80);

-- The SQLSTATE, constraint name and texts of the error a statement raises
-- (NULLs when it raises none).  throws_ok() cannot see the constraint name.
CREATE FUNCTION pg_temp.error_of(sql text,
    OUT err_sqlstate text, OUT err_constraint text,
    OUT err_message text, OUT err_detail text, OUT err_hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS err_sqlstate = RETURNED_SQLSTATE,
                            err_constraint = CONSTRAINT_NAME,
                            err_message = MESSAGE_TEXT,
                            err_detail = PG_EXCEPTION_DETAIL,
                            err_hint = PG_EXCEPTION_HINT;
    err_constraint := nullif(err_constraint, '');
    err_detail := nullif(err_detail, '');
    err_hint := nullif(err_hint, '');
END
$$;

-- Bids to aim at: one pending, one submitted, one withdrawn, one won.
SELECT bid_id AS pending_bid FROM bidguard_create_bid('err', 'pending') \gset
SELECT bid_id AS submitted_bid FROM bidguard_create_bid('err', 'submitted') \gset
SELECT changed FROM bidguard_set_bid_status(:submitted_bid, 'submitted') \gset
SELECT bid_id AS withdrawn_bid FROM bidguard_create_bid('err', 'withdrawn') \gset
SELECT withdrawn FROM bidguard_withdraw_bid(:withdrawn_bid) \gset
SELECT bid_id AS won_bid FROM bidguard_create_bid('err', 'won') \gset
SELECT changed FROM bidguard_set_bid_status(:won_bid, 'submitted') \gset
SELECT changed FROM bidguard_set_bid_status(:won_bid, 'won') \gset
SELECT coalesce(max(bid_id), 0) + 1000000 AS missing_bid FROM bidguard_bids \gset

SELECT count(*) AS bids_before FROM bidguard_bids \gset
SELECT count(*) AS events_before FROM bidguard_events \gset

--
-- 22004: a required argument is NULL.
--
SELECT throws_ok($$SELECT * FROM bidguard_create_bid(NULL, 'p')$$,
                 '22004', NULL, 'create_bid: NULL marketplace_id is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', NULL)$$,
                 '22004', NULL, 'create_bid: NULL posting_id is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'p', NULL)$$,
                 '22004', NULL, 'create_bid: NULL bid_data is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_set_bid_status(NULL, 'submitted')$$,
                 '22004', NULL, 'set_bid_status: NULL bid_id is 22004');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, NULL)$$, :pending_bid),
                 '22004', NULL, 'set_bid_status: NULL new_status is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_bid(NULL)$$,
                 '22004', NULL, 'withdraw_bid: NULL bid_id is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_bid(NULL, 'why')$$,
                 '22004', NULL, 'withdraw_bid: NULL bid_id with a reason is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting(NULL, 'pending')$$,
                 '22004', NULL, 'withdraw_posting: NULL marketplace_id is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('err', NULL)$$,
                 '22004', NULL, 'withdraw_posting: NULL posting_id is 22004');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid(marketplace_id => NULL, posting_id => NULL, bid_data => NULL)$$,
                 '22004', NULL, 'create_bid: all NULL is 22004');

--
-- 22023: empty or over-long ids (1 to 256 characters, not bytes).
--
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('', 'p')$$,
                 '22023', NULL, 'create_bid: empty marketplace_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', '')$$,
                 '22023', NULL, 'create_bid: empty posting_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('', 'pending')$$,
                 '22023', NULL, 'withdraw_posting: empty marketplace_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('err', '')$$,
                 '22023', NULL, 'withdraw_posting: empty posting_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid(repeat('m', 257), 'p')$$,
                 '22023', NULL, 'create_bid: 257-character marketplace_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', repeat('p', 257))$$,
                 '22023', NULL, 'create_bid: 257-character posting_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting(repeat('m', 257), 'p')$$,
                 '22023', NULL, 'withdraw_posting: 257-character marketplace_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('err', repeat('p', 257))$$,
                 '22023', NULL, 'withdraw_posting: 257-character posting_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid(repeat('m', 1000000), 'p')$$,
                 '22023', NULL, 'create_bid: a megabyte-long marketplace_id is 22023');
SELECT lives_ok($$SELECT * FROM bidguard_create_bid(repeat('m', 256), repeat('p', 256))$$,
                'create_bid: 256-character ids are fine');
SELECT lives_ok($$SELECT * FROM bidguard_withdraw_posting(repeat('m', 256), repeat('p', 256))$$,
                'withdraw_posting: 256-character ids are fine');
-- Characters, not bytes: 256 two-byte (and four-byte) characters are fine.
SELECT lives_ok($$SELECT * FROM bidguard_create_bid(repeat('é', 256), repeat('é', 256))$$,
                'create_bid: 256 two-byte characters are fine');
SELECT lives_ok($$SELECT * FROM bidguard_create_bid(repeat('😀', 256), repeat('😀', 256))$$,
                'create_bid: 256 four-byte characters are fine');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid(repeat('é', 257), 'p')$$,
                 '22023', NULL, 'create_bid: 257 two-byte characters in marketplace_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', repeat('é', 257))$$,
                 '22023', NULL, 'create_bid: 257 two-byte characters in posting_id is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting(repeat('é', 257), 'p')$$,
                 '22023', NULL, 'withdraw_posting: 257 two-byte characters is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', repeat('😀', 257))$$,
                 '22023', NULL, 'create_bid: 257 four-byte characters is 22023');

--
-- 22023: bid_data that is not a JSON object.
--
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', '[]')$$,
                 '22023', NULL, 'create_bid: empty array bid_data is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', '[{"a": 1}]')$$,
                 '22023', NULL, 'create_bid: array bid_data is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', '42')$$,
                 '22023', NULL, 'create_bid: number bid_data is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', '"text"')$$,
                 '22023', NULL, 'create_bid: string bid_data is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', 'true')$$,
                 '22023', NULL, 'create_bid: boolean bid_data is 22023');
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'data', 'null'::jsonb)$$,
                 '22023', NULL, 'create_bid: JSON null bid_data is 22023');
SELECT lives_ok($$SELECT * FROM bidguard_create_bid('err', 'data', '{"nested": {"a": [1, 2]}}')$$,
                'create_bid: an object bid_data is fine');

--
-- 22023: unknown status.
--
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'bogus')$$, :pending_bid),
                 '22023', NULL, 'set_bid_status: unknown status is 22023');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, '')$$, :pending_bid),
                 '22023', NULL, 'set_bid_status: empty status is 22023');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'SUBMITTED')$$, :pending_bid),
                 '22023', NULL, 'set_bid_status: statuses are lower case (22023)');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'submitted ')$$, :pending_bid),
                 '22023', NULL, 'set_bid_status: status with trailing blank is 22023');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'pendingx')$$, :pending_bid),
                 '22023', NULL, 'set_bid_status: status with a known prefix is 22023');

--
-- 23505: a second active bid by plain SQL.
--
SELECT throws_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('err', 'pending')$$,
                 '23505', NULL, 'plain INSERT of a second pending bid is 23505');
SELECT throws_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id, status) VALUES ('err', 'pending', 'submitted')$$,
                 '23505', NULL, 'plain INSERT of a submitted bid next to a pending one is 23505');
SELECT throws_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('err', 'submitted')$$,
                 '23505', NULL, 'plain INSERT of a pending bid next to a submitted one is 23505');
SELECT is((pg_temp.error_of($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('err', 'pending')$$)).err_constraint,
          'bidguard_bids_one_active',
          'the plain INSERT names constraint bidguard_bids_one_active');
SELECT throws_ok(format($$UPDATE bidguard_bids SET posting_id = 'pending' WHERE bid_id = %s$$, :submitted_bid),
                 '23505', NULL, 'plain UPDATE moving an active bid to a posting with an active bid is 23505');
SELECT is((pg_temp.error_of(format($$UPDATE bidguard_bids SET posting_id = 'pending' WHERE bid_id = %s$$, :submitted_bid))).err_constraint,
          'bidguard_bids_one_active',
          'the plain UPDATE names constraint bidguard_bids_one_active');
SELECT throws_ok(format($$UPDATE bidguard_bids SET marketplace_id = 'err', posting_id = 'pending' WHERE bid_id = %s$$, :submitted_bid),
                 '23505', NULL, 'plain UPDATE of both key columns is 23505 too');
SELECT lives_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('err', 'pending') ON CONFLICT DO NOTHING$$,
                'INSERT ... ON CONFLICT DO NOTHING next to an active bid does not fail');
SELECT is(count(*), 1::bigint, '... and inserts nothing')
  FROM bidguard_bids WHERE marketplace_id = 'err' AND posting_id = 'pending';

--
-- 23514: transition not allowed, constraint bidguard_bid_transition.
--
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'pending')$$, :withdrawn_bid),
                 '23514', NULL, 'set_bid_status: withdrawn -> pending is 23514');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'submitted')$$, :withdrawn_bid),
                 '23514', NULL, 'set_bid_status: withdrawn -> submitted is 23514');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'lost')$$, :won_bid),
                 '23514', NULL, 'set_bid_status: won -> lost is 23514');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'won')$$, :pending_bid),
                 '23514', NULL, 'set_bid_status: pending -> won is 23514');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'pending')$$, :submitted_bid),
                 '23514', NULL, 'set_bid_status: submitted -> pending is 23514');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'failed')$$, :submitted_bid),
                 '23514', NULL, 'set_bid_status: submitted -> failed is 23514');
SELECT is((pg_temp.error_of(format($$SELECT * FROM bidguard_set_bid_status(%s, 'pending')$$, :withdrawn_bid))).err_constraint,
          'bidguard_bid_transition',
          'set_bid_status names constraint bidguard_bid_transition');
SELECT throws_ok(format($$UPDATE bidguard_bids SET status = 'submitted' WHERE bid_id = %s$$, :withdrawn_bid),
                 '23514', NULL, 'plain UPDATE withdrawn -> submitted is 23514');
SELECT throws_ok(format($$UPDATE bidguard_bids SET status = 'pending' WHERE bid_id = %s$$, :submitted_bid),
                 '23514', NULL, 'plain UPDATE submitted -> pending is 23514');
SELECT throws_ok(format($$UPDATE bidguard_bids SET status = 'lost' WHERE bid_id = %s$$, :won_bid),
                 '23514', NULL, 'plain UPDATE won -> lost is 23514');
SELECT throws_ok(format($$UPDATE bidguard_bids SET status = 'won' WHERE bid_id = %s$$, :pending_bid),
                 '23514', NULL, 'plain UPDATE pending -> won is 23514');
SELECT is((pg_temp.error_of(format($$UPDATE bidguard_bids SET status = 'pending' WHERE bid_id = %s$$, :withdrawn_bid))).err_constraint,
          'bidguard_bid_transition',
          'plain UPDATE names constraint bidguard_bid_transition');
SELECT is((pg_temp.error_of(format($$UPDATE bidguard_bids SET status = 'lost' WHERE bid_id = %s$$, :won_bid))).err_constraint,
          'bidguard_bid_transition',
          'plain UPDATE out of a terminal status names constraint bidguard_bid_transition');
SELECT is((pg_temp.error_of(format($$UPDATE bidguard_bids SET status = 'pending' WHERE bid_id = %s$$, :submitted_bid))).err_constraint,
          'bidguard_bid_transition',
          'plain UPDATE between active statuses names constraint bidguard_bid_transition');

--
-- P0002: unknown bid_id.
--
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'submitted')$$, :missing_bid),
                 'P0002', NULL, 'set_bid_status: unknown bid_id is P0002');
SELECT throws_ok($$SELECT * FROM bidguard_set_bid_status(-1, 'withdrawn')$$,
                 'P0002', NULL, 'set_bid_status: negative bid_id is P0002');
SELECT throws_ok(format($$SELECT * FROM bidguard_withdraw_bid(%s)$$, :missing_bid),
                 'P0002', NULL, 'withdraw_bid: unknown bid_id is P0002');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_bid(0, 'why')$$,
                 'P0002', NULL, 'withdraw_bid: bid_id 0 is P0002');

--
-- Nothing above changed the bids or the events, and the aimed-at bids are
-- where they were.
--
SELECT is(count(*), :bids_before::bigint + 4,
          'only the four create_bid calls expected to succeed added bids')
  FROM bidguard_bids;
SELECT is(count(*), :events_before::bigint + 5,
          'only their four creation events and one withdrawal event were added')
  FROM bidguard_events;
SELECT results_eq(
    format($$SELECT status FROM bidguard_bids WHERE bid_id IN (%s, %s, %s, %s) ORDER BY bid_id$$,
           :pending_bid, :submitted_bid, :withdrawn_bid, :won_bid),
    $$VALUES ('pending'::text), ('submitted'), ('withdrawn'), ('won')$$,
    'rejected calls left the statuses alone');

--
-- Messages follow PostgreSQL's style: lower case, no trailing period;
-- DETAIL and HINT full sentences.
--
SELECT is_empty(
    $q$SELECT s.sql, e.err_message, e.err_detail, e.err_hint
         FROM (VALUES
                 ($$SELECT * FROM bidguard_create_bid(NULL, 'p')$$),
                 ($$SELECT * FROM bidguard_create_bid('err', 'p', NULL)$$),
                 ($$SELECT * FROM bidguard_set_bid_status(NULL, 'won')$$),
                 ($$SELECT * FROM bidguard_withdraw_bid(NULL)$$),
                 ($$SELECT * FROM bidguard_withdraw_posting('err', NULL)$$),
                 ($$SELECT * FROM bidguard_create_bid('', 'p')$$),
                 ($$SELECT * FROM bidguard_create_bid(repeat('é', 257), 'p')$$),
                 ($$SELECT * FROM bidguard_create_bid('err', 'p', '[]')$$),
                 ($$SELECT * FROM bidguard_create_bid('err', 'p', '1')$$),
                 ($$SELECT * FROM bidguard_set_bid_status(1, 'bogus')$$),
                 ($$SELECT * FROM bidguard_set_bid_status(-1, 'won')$$),
                 ($$SELECT * FROM bidguard_withdraw_bid(-1)$$),
                 ($$UPDATE bidguard_bids SET status = 'pending' WHERE status = 'withdrawn'$$),
                 ($$UPDATE bidguard_bids SET status = 'pending' WHERE status = 'submitted'$$)
              ) AS s(sql),
              LATERAL pg_temp.error_of(s.sql) AS e
        WHERE e.err_sqlstate IS NULL
           OR e.err_message !~ '^[a-z]' OR e.err_message ~ '\.$'
           OR e.err_detail !~ '^[A-Z].*\.$'
           OR e.err_hint !~ '^[A-Z].*\.$'$q$,
    'error messages follow PostgreSQL''s style');
SELECT ok((pg_temp.error_of(format($$SELECT * FROM bidguard_set_bid_status(%s, 'won')$$, :missing_bid))).err_message
          ~ :'missing_bid',
          'the P0002 message names the bid');

--
-- 25006: a read-only transaction.  transaction_read_only can be set on
-- after queries have run, never off again: these tests come last, and the
-- rest of the transaction (pgTAP writes only to temporary tables) is
-- read-only.
--
SELECT bid_id AS ro_bid FROM bidguard_create_bid('err', 'read-only') \gset
SET LOCAL transaction_read_only = on;
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('err', 'read-only-new')$$,
                 '25006', NULL, 'create_bid in a read-only transaction is 25006');
SELECT throws_ok($$SELECT * FROM bidguard_create_bids('err', ARRAY['read-only', 'read-only-new'])$$,
                 '25006', NULL, 'create_bids in a read-only transaction is 25006');
SELECT throws_ok(format($$SELECT * FROM bidguard_set_bid_status(%s, 'submitted')$$, :ro_bid),
                 '25006', NULL, 'set_bid_status in a read-only transaction is 25006');
SELECT throws_ok(format($$SELECT * FROM bidguard_withdraw_bid(%s)$$, :ro_bid),
                 '25006', NULL, 'withdraw_bid in a read-only transaction is 25006');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('err', 'read-only')$$,
                 '25006', NULL, 'withdraw_posting in a read-only transaction is 25006');
SELECT throws_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('err', 'read-only-plain')$$,
                 '25006', NULL, 'plain INSERT in a read-only transaction is 25006');
SELECT throws_ok(format($$UPDATE bidguard_bids SET status = 'submitted' WHERE bid_id = %s$$, :ro_bid),
                 '25006', NULL, 'plain UPDATE in a read-only transaction is 25006');
SELECT is(status, 'pending', 'the read-only attempts left the bid pending')
  FROM bidguard_bids WHERE bid_id = :ro_bid;
SELECT is(count(*), 1::bigint, '... and wrote no event')
  FROM bidguard_events
 WHERE event_id IS NOT NULL AND (marketplace_id, posting_id) = ('err', 'read-only');

SELECT * FROM finish();
ROLLBACK;
