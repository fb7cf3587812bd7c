-- test/pgtap/privileges.sql
--	  Privileges: PUBLIC has none on the extension's tables; a role granted
--	  SELECT, INSERT, UPDATE on bidguard_bids (and nothing on bidguard_events)
--	  creates, changes and withdraws bids through the functions and by plain
--	  SQL, and the audit events are still written, yet it can neither read
--	  nor forge the audit trail (42501).  A role with no grant cannot use the
--	  functions to get round the table privileges.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(39);

SELECT n.nspname AS bg_schema
  FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'bidguard' \gset

--
-- PUBLIC.
--
SELECT ok(NOT has_table_privilege('public', format('%I.bidguard_bids', :'bg_schema'),
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'PUBLIC has no privilege on bidguard_bids');
SELECT ok(NOT has_table_privilege('public', format('%I.bidguard_events', :'bg_schema'),
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
          'PUBLIC has no privilege on bidguard_events');
SELECT ok(NOT has_sequence_privilege('public',
                                     pg_get_serial_sequence(format('%I.bidguard_bids', :'bg_schema'), 'bid_id'),
                                     'USAGE, SELECT, UPDATE'),
          'PUBLIC has no privilege on the bid_id sequence');
SELECT is_empty(
    format($$SELECT c.relname, a.privilege_type
               FROM pg_class AS c, aclexplode(c.relacl) AS a
              WHERE c.relnamespace = %L::regnamespace
                AND c.relname IN ('bidguard_bids', 'bidguard_events')
                AND a.grantee = 0$$, :'bg_schema'),
    'no ACL entry of the tables grants anything to PUBLIC');
SELECT ok(NOT has_column_privilege('public', format('%I.bidguard_bids', :'bg_schema'), 'bid_id', 'SELECT'),
          'PUBLIC cannot read bidguard_bids.bid_id either');

--
-- An application role with SELECT, INSERT, UPDATE on bidguard_bids only.
--
CREATE ROLE regress_bidguard_app NOLOGIN;
CREATE ROLE regress_bidguard_nobody NOLOGIN;
GRANT SELECT, INSERT, UPDATE ON bidguard_bids TO regress_bidguard_app;

SELECT table_privs_are(:'bg_schema', 'bidguard_bids', 'regress_bidguard_app',
                       ARRAY['SELECT', 'INSERT', 'UPDATE'],
                       'regress_bidguard_app has SELECT, INSERT, UPDATE on bidguard_bids');
SELECT table_privs_are(:'bg_schema', 'bidguard_events', 'regress_bidguard_app', ARRAY[]::text[],
                       'regress_bidguard_app has nothing on bidguard_events');

SET LOCAL ROLE regress_bidguard_app;

SELECT is(current_user, 'regress_bidguard_app', 'running as regress_bidguard_app');
SELECT bid_id AS app_bid, created AS app_created, atomic_event_id AS app_event
  FROM bidguard_create_bid('app', 'p1', '{"price": 10}') \gset
SELECT ok(:'app_created'::boolean, 'the app role creates a bid through bidguard_create_bid');
SELECT results_eq(
    format($$SELECT bid_id, created FROM bidguard_create_bid('app', 'p1')$$),
    format($$VALUES (%s::bigint, false)$$, :app_bid),
    'the app role gets the active bid back');
SELECT results_eq(
    format($$SELECT bid_id, changed, old_status, status FROM bidguard_set_bid_status(%s, 'submitted', 'app submits')$$, :app_bid),
    format($$VALUES (%s::bigint, true, 'pending'::text, 'submitted'::text)$$, :app_bid),
    'the app role submits it through bidguard_set_bid_status');
SELECT results_eq(
    format($$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_bid(%s, 'app withdraws')$$, :app_bid),
    format($$VALUES (%s::bigint, true, 'withdrawn'::text)$$, :app_bid),
    'the app role withdraws it through bidguard_withdraw_bid');
SELECT bid_id AS app_bid2 FROM bidguard_create_bid('app', 'p1') \gset
SELECT results_eq(
    $$SELECT withdrawn, status FROM bidguard_withdraw_posting('app', 'p1', 'app withdraws the posting')$$,
    $$VALUES (true, 'withdrawn'::text)$$,
    'the app role withdraws through bidguard_withdraw_posting');
SELECT lives_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('app', 'plain')$$,
                'the app role inserts a bid by plain SQL');
SELECT lives_ok($$UPDATE bidguard_bids SET status = 'submitted' WHERE (marketplace_id, posting_id) = ('app', 'plain')$$,
                'the app role updates a bid by plain SQL');
SELECT throws_ok($$UPDATE bidguard_bids SET status = 'pending' WHERE (marketplace_id, posting_id) = ('app', 'plain')$$,
                 '23514', NULL, 'the transition rule holds for the app role too');

-- The audit trail is out of its reach.
SELECT throws_ok($$INSERT INTO bidguard_events (kind) VALUES ('forged')$$,
                 '42501', NULL, 'the app role cannot INSERT into bidguard_events');
SELECT throws_ok(format($$INSERT INTO bidguard_events (event_id, kind, bid_id) VALUES (gen_random_uuid(), 'bid_created', %s)$$, :app_bid),
                 '42501', NULL, 'the app role cannot forge a creation event');
SELECT throws_ok($$SELECT count(*) FROM bidguard_events$$,
                 '42501', NULL, 'the app role cannot read bidguard_events');
SELECT throws_ok($$UPDATE bidguard_events SET kind = 'x'$$,
                 '42501', NULL, 'the app role cannot UPDATE bidguard_events');
SELECT throws_ok($$DELETE FROM bidguard_events$$,
                 '42501', NULL, 'the app role cannot DELETE from bidguard_events');
SELECT throws_ok($$DELETE FROM bidguard_bids WHERE marketplace_id = 'app'$$,
                 '42501', NULL, 'the app role cannot DELETE bids (not granted)');
SELECT throws_ok($$TRUNCATE bidguard_events$$,
                 '42501', NULL, 'the app role cannot TRUNCATE bidguard_events');

RESET ROLE;

SELECT is(current_user, session_user, 'back to the session user');
SELECT is(count(*), 1::bigint, 'the app role''s first bid has its creation event')
  FROM bidguard_events
 WHERE event_id = :'app_event' AND kind = 'bid_created' AND bid_id = :app_bid;
SELECT set_eq(
    format($$SELECT old_status, new_status, detail->>'reason' AS reason FROM bidguard_events
              WHERE bid_id = %s AND kind <> 'bid_created'$$, :app_bid),
    $$VALUES ('pending'::text, 'submitted'::text, 'app submits'::text),
             ('submitted', 'withdrawn', 'app withdraws')$$,
    'the app role''s status changes wrote their events, with the reasons');
SELECT set_eq(
    format($$SELECT kind = 'bid_created' AS is_creation, old_status, new_status, detail->>'reason' AS reason
               FROM bidguard_events WHERE bid_id = %s$$, :app_bid2),
    $$VALUES (true, NULL::text, 'pending'::text, NULL::text),
             (false, 'pending', 'withdrawn', 'app withdraws the posting')$$,
    'bidguard_withdraw_posting by the app role wrote its events');
SELECT is(count(*), 2::bigint, 'the app role''s plain INSERT and UPDATE wrote their events')
  FROM bidguard_events AS e JOIN bidguard_bids AS b USING (bid_id)
 WHERE (b.marketplace_id, b.posting_id) = ('app', 'plain');
SELECT is(count(*), 0::bigint, 'no forged event got in')
  FROM bidguard_events WHERE kind = 'forged';
SELECT is(count(*), 0::bigint, 'the app role''s backend_pid is ours, nothing else wrote')
  FROM bidguard_events
 WHERE marketplace_id = 'app' AND backend_pid <> pg_backend_pid();

--
-- A role with no grant cannot reach the data through the functions either:
-- they are not SECURITY DEFINER.
--
SET LOCAL ROLE regress_bidguard_nobody;
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('nobody', 'p1')$$,
                 '42501', NULL, 'a role without privileges cannot create bids through the function');
SELECT throws_ok($$SELECT * FROM bidguard_create_bids('nobody', ARRAY['p1', 'p2'])$$,
                 '42501', NULL, 'a role without privileges cannot create bids through the batch function');
SELECT throws_ok(format($$SELECT * FROM bidguard_withdraw_bid(%s)$$, :app_bid2),
                 '42501', NULL, 'a role without privileges cannot withdraw bids through the function');
SELECT throws_ok($$SELECT * FROM bidguard_withdraw_posting('app', 'plain')$$,
                 '42501', NULL, 'a role without privileges cannot withdraw postings through the function');
SELECT throws_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('nobody', 'p1')$$,
                 '42501', NULL, 'a role without privileges cannot INSERT bids');
RESET ROLE;

--
-- Column privileges: bidguard then writes through SQL, which judges them.
--
CREATE ROLE regress_bidguard_columns NOLOGIN;
GRANT SELECT (bid_id, marketplace_id, posting_id, status, atomic_event_id),
      INSERT (marketplace_id, posting_id, status, bid_data)
   ON bidguard_bids TO regress_bidguard_columns;
SET LOCAL ROLE regress_bidguard_columns;
SELECT results_eq($$SELECT created, status FROM bidguard_create_bid('columns', 'p1')$$,
                  $$VALUES (true, 'pending'::text)$$,
                  'a role with the column privileges SQL needs creates a bid');
SELECT results_eq($$SELECT ordinality, created FROM bidguard_create_bids('columns', ARRAY['p1', 'p2'])$$,
                  $$VALUES (1, false), (2, true)$$,
                  'and a batch, the first posting''s bid found, the second''s created');
RESET ROLE;
REVOKE INSERT (bid_data) ON bidguard_bids FROM regress_bidguard_columns;
SET LOCAL ROLE regress_bidguard_columns;
SELECT throws_ok($$SELECT * FROM bidguard_create_bid('columns', 'p3')$$,
                 '42501', NULL, 'without INSERT on bid_data it is refused, as SQL refuses it');
RESET ROLE;
SELECT is(count(*), 0::bigint, 'nothing was written for the role without privileges')
  FROM bidguard_bids WHERE marketplace_id = 'nobody';

SELECT * FROM finish();
ROLLBACK;
