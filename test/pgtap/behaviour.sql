-- test/pgtap/behaviour.sql
--	  What the bid functions do, in one session (SPEC §3, §4, §5): creation
--	  and deduplication, status changes and no-ops, withdrawal (twice, of a
--	  terminal bid, of a posting without a bid), the full transition matrix
--	  by function and by plain UPDATE, the audit trail (a creation event per
--	  bid with event_id = atomic_event_id, an event per status change with
--	  the reason, none for a no-op or a rolled-back change), the posting
--	  lock in pg_locks, and calls under an empty search_path.
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(57);

SELECT quote_ident(n.nspname) AS bg
  FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'bidguard' \gset

--
-- Creation and deduplication.
--
SELECT bid_id AS b1, atomic_event_id AS b1_event, created AS b1_created, status AS b1_status
  FROM bidguard_create_bid('mk', 'p1', '{"price": 12.5, "note": "first"}') \gset
SELECT ok(:'b1_created'::boolean, 'create_bid on a posting without a bid creates one');
SELECT is(:'b1_status'::text, 'pending', '... pending');
SELECT results_eq(
    $$SELECT bid_id, created, status, atomic_event_id FROM bidguard_create_bid('mk', 'p1')$$,
    format($$VALUES (%s::bigint, false, 'pending'::text, %L::uuid)$$, :b1, :'b1_event'),
    'create_bid again returns the same bid, created = false');
SELECT results_eq(
    $$SELECT bid_id, created FROM bidguard_create_bid('mk', 'p1', '{"price": 99}')$$,
    format($$VALUES (%s::bigint, false)$$, :b1),
    'create_bid with other bid_data returns the same bid');
SELECT is(bid_data, '{"price": 12.5, "note": "first"}'::jsonb,
          'the active bid keeps the bid_data it was created with')
  FROM bidguard_bids WHERE bid_id = :b1;
SELECT results_eq(
    format($$SELECT marketplace_id, posting_id, status, status_reason, atomic_event_id
               FROM bidguard_bids WHERE bid_id = %s$$, :b1),
    format($$VALUES ('mk'::text, 'p1'::text, 'pending'::text, NULL::text, %L::uuid)$$, :'b1_event'),
    'the bid row is as returned');
SELECT ok(created_at IS NOT NULL AND updated_at >= created_at, 'created_at and updated_at are set')
  FROM bidguard_bids WHERE bid_id = :b1;
SELECT is(bid_data, '{}'::jsonb, 'bid_data defaults to {}')
  FROM bidguard_bids
 WHERE bid_id = (SELECT bid_id FROM bidguard_create_bid('mk', 'p-default'));
SELECT isnt((SELECT bid_id FROM bidguard_create_bid('mk', 'p2')), :b1::bigint,
            'another posting of the marketplace gets another bid');
SELECT isnt((SELECT bid_id FROM bidguard_create_bid('mk2', 'p1')), :b1::bigint,
            'the same posting id in another marketplace gets another bid');
SELECT results_eq(
    $$SELECT count(*) FROM bidguard_bids WHERE marketplace_id = 'mk' AND posting_id = 'p1'$$,
    $$VALUES (1::bigint)$$,
    'repeated create_bid made one bid for the posting');
SELECT results_eq(
    $$SELECT created FROM bidguard_create_bid(marketplace_id => 'named', posting_id => 'p1', bid_data => '{"x": 1}')$$,
    $$VALUES (true)$$,
    'create_bid takes named arguments');

--
-- Status changes.
--
SELECT count(*) AS b1_events_0 FROM bidguard_events WHERE bid_id = :b1 \gset
SELECT results_eq(
    format($$SELECT bid_id, changed, old_status, status FROM bidguard_set_bid_status(%s, 'submitted', 'sent to the marketplace')$$, :b1),
    format($$VALUES (%s::bigint, true, 'pending'::text, 'submitted'::text)$$, :b1),
    'set_bid_status pending -> submitted: changed');
SELECT results_eq(
    format($$SELECT bid_id, changed, old_status, status FROM bidguard_set_bid_status(%s, 'submitted', 'again')$$, :b1),
    format($$VALUES (%s::bigint, false, 'submitted'::text, 'submitted'::text)$$, :b1),
    'set_bid_status to the same status: changed = false');
SELECT is(count(*), :b1_events_0::bigint + 1, 'one event for the change, none for the no-op')
  FROM bidguard_events WHERE bid_id = :b1;
SELECT results_eq(
    format($$SELECT old_status, new_status, detail->>'reason', marketplace_id, posting_id
               FROM bidguard_events WHERE bid_id = %s AND kind <> 'bid_created'$$, :b1),
    $$VALUES ('pending'::text, 'submitted'::text, 'sent to the marketplace'::text, 'mk'::text, 'p1'::text)$$,
    'the status change event has old and new status, the reason and the posting');
SELECT ok(updated_at > created_at, 'updated_at moved with the change')
  FROM bidguard_bids WHERE bid_id = :b1;
SELECT results_eq(
    format($$SELECT bid_id, created, status FROM bidguard_create_bid('mk', 'p1')$$),
    format($$VALUES (%s::bigint, false, 'submitted'::text)$$, :b1),
    'create_bid returns a submitted bid as the active one');

--
-- Withdrawal.
--
SELECT results_eq(
    format($$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_bid(%s, 'changed my mind')$$, :b1),
    format($$VALUES (%s::bigint, true, 'withdrawn'::text)$$, :b1),
    'withdraw_bid of an active bid: withdrawn');
SELECT results_eq(
    format($$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_bid(%s, 'again')$$, :b1),
    format($$VALUES (%s::bigint, false, 'withdrawn'::text)$$, :b1),
    'withdraw_bid twice: the second is withdrawn = false');
SELECT results_eq(
    format($$SELECT old_status, new_status, detail->>'reason' FROM bidguard_events
              WHERE bid_id = %s AND kind <> 'bid_created' ORDER BY occurred_at$$, :b1),
    $$VALUES ('pending'::text, 'submitted'::text, 'sent to the marketplace'::text),
             ('submitted', 'withdrawn', 'changed my mind')$$,
    'the withdrawal wrote one event with its reason, the second call none');
SELECT bid_id AS b2, created AS b2_created FROM bidguard_create_bid('mk', 'p1') \gset
SELECT ok(:'b2_created'::boolean AND :b2 > :b1, 'after a withdrawal create_bid creates a new bid');
SELECT is(status, 'withdrawn', 'the withdrawn bid stays withdrawn') FROM bidguard_bids WHERE bid_id = :b1;
SELECT results_eq(
    $$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_posting('mk', 'p1', 'posting closed')$$,
    format($$VALUES (%s::bigint, true, 'withdrawn'::text)$$, :b2),
    'withdraw_posting withdraws the posting''s active bid');
SELECT is(detail->>'reason', 'posting closed', 'withdraw_posting''s reason is in the event')
  FROM bidguard_events WHERE bid_id = :b2 AND new_status = 'withdrawn';
SELECT results_eq(
    $$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_posting('mk', 'p1')$$,
    $$VALUES (NULL::bigint, false, NULL::text)$$,
    'withdraw_posting with no active bid: (NULL, false, NULL)');
SELECT results_eq(
    $$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_posting(marketplace_id => 'nowhere', posting_id => 'never', reason => 'r')$$,
    $$VALUES (NULL::bigint, false, NULL::text)$$,
    'withdraw_posting of a posting never seen: (NULL, false, NULL)');
SELECT bid_id AS b3 FROM bidguard_create_bid('mk', 'p3') \gset
SELECT changed FROM bidguard_set_bid_status(:b3, 'submitted') \gset
SELECT changed FROM bidguard_set_bid_status(:b3, 'won', 'best price') \gset
SELECT count(*) AS b3_events FROM bidguard_events WHERE bid_id = :b3 \gset
SELECT results_eq(
    format($$SELECT bid_id, withdrawn, status FROM bidguard_withdraw_bid(%s)$$, :b3),
    format($$VALUES (%s::bigint, false, 'won'::text)$$, :b3),
    'withdraw_bid of a won bid: withdrawn = false, status won');
SELECT is(count(*), :b3_events::bigint, '... and no event')
  FROM bidguard_events WHERE bid_id = :b3;
SELECT results_eq(
    format($$SELECT bid_id, changed, old_status, status FROM bidguard_set_bid_status(%s, 'won')$$, :b3),
    format($$VALUES (%s::bigint, false, 'won'::text, 'won'::text)$$, :b3),
    'setting a terminal bid to its own status is a no-op');

--
-- The transition matrix, by function and by plain UPDATE: one fresh bid
-- per (from, to), brought to "from" along allowed transitions.
--
CREATE TEMP TABLE statuses (s text PRIMARY KEY, path text[]);
INSERT INTO statuses VALUES
    ('pending', '{}'), ('submitted', '{submitted}'), ('won', '{submitted,won}'),
    ('lost', '{submitted,lost}'), ('withdrawn', '{withdrawn}'),
    ('expired', '{expired}'), ('failed', '{failed}');
CREATE TEMP TABLE allowed (f text, t text);
INSERT INTO allowed VALUES
    ('pending', 'submitted'), ('pending', 'withdrawn'), ('pending', 'failed'), ('pending', 'expired'),
    ('submitted', 'won'), ('submitted', 'lost'), ('submitted', 'withdrawn'), ('submitted', 'expired');

CREATE FUNCTION pg_temp.transition_matrix(via text)
RETURNS TABLE (f text, t text, outcome text, events bigint)
LANGUAGE plpgsql AS $$
DECLARE
    bid bigint;
    step text;
    did_change boolean;
    n_before bigint;
BEGIN
    FOR f, t IN SELECT a.s, b.s FROM pg_temp.statuses AS a, pg_temp.statuses AS b ORDER BY 1, 2 LOOP
        SELECT c.bid_id INTO bid FROM bidguard_create_bid('matrix-' || via, f || '->' || t) AS c;
        FOREACH step IN ARRAY (SELECT path FROM pg_temp.statuses WHERE s = f) LOOP
            PERFORM bidguard_set_bid_status(bid, step);
        END LOOP;
        SELECT count(*) INTO n_before FROM bidguard_events AS e WHERE e.bid_id = bid;
        BEGIN
            IF via = 'function' THEN
                SELECT r.changed INTO did_change FROM bidguard_set_bid_status(bid, t, 'matrix') AS r;
            ELSE
                UPDATE bidguard_bids AS b SET status = t, status_reason = 'matrix' WHERE b.bid_id = bid;
                did_change := f <> t;
            END IF;
            outcome := CASE WHEN did_change THEN 'changed' ELSE 'same' END;
        EXCEPTION WHEN OTHERS THEN
            outcome := SQLSTATE;
        END;
        SELECT count(*) - n_before INTO events FROM bidguard_events AS e WHERE e.bid_id = bid;
        IF outcome = 'changed' AND (SELECT b.status FROM bidguard_bids AS b WHERE b.bid_id = bid) <> t THEN
            outcome := 'changed, but status not stored';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE TEMP TABLE expected_matrix AS
SELECT a.s AS f, b.s AS t,
       CASE WHEN a.s = b.s THEN 'same'
            WHEN EXISTS (SELECT 1 FROM allowed WHERE (allowed.f, allowed.t) = (a.s, b.s)) THEN 'changed'
            ELSE '23514' END AS outcome,
       CASE WHEN a.s <> b.s AND EXISTS (SELECT 1 FROM allowed WHERE (allowed.f, allowed.t) = (a.s, b.s))
            THEN 1 ELSE 0 END::bigint AS events
  FROM statuses AS a, statuses AS b;

SELECT set_eq($$SELECT * FROM pg_temp.transition_matrix('function')$$,
              $$SELECT * FROM expected_matrix$$,
              'set_bid_status: the 49 (from, to) pairs: allowed ones change with one event, the same status is a no-op, the rest are 23514');
SELECT set_eq($$SELECT * FROM pg_temp.transition_matrix('update')$$,
              $$SELECT * FROM expected_matrix$$,
              'plain UPDATE: the 49 (from, to) pairs: allowed ones change with one event, the same status is a no-op, the rest are 23514');
SELECT is_empty(
    $$SELECT b.bid_id FROM bidguard_bids AS b
       WHERE b.marketplace_id LIKE 'matrix-%'
         AND b.status <> split_part(b.posting_id, '->', CASE WHEN (split_part(b.posting_id, '->', 1), split_part(b.posting_id, '->', 2)) IN (SELECT f, t FROM allowed) THEN 2 ELSE 1 END)$$,
    'after the matrix every bid is in the status the rule says');
SELECT is_empty(
    $$SELECT DISTINCT m.marketplace_id
        FROM bidguard_bids AS m
       WHERE m.marketplace_id LIKE 'matrix-%'
         AND NOT EXISTS (SELECT 1 FROM bidguard_events AS e
                          WHERE e.bid_id = m.bid_id AND e.new_status = m.status
                            AND e.detail->>'reason' = 'matrix')
         AND split_part(m.posting_id, '->', 1) <> split_part(m.posting_id, '->', 2)
         AND (split_part(m.posting_id, '->', 1), split_part(m.posting_id, '->', 2)) IN (SELECT f, t FROM allowed)$$,
    'the reason of the matrix changes, by function and by UPDATE, is in their events');

--
-- Plain SQL goes through the same guard and trail.
--
SELECT lives_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data) VALUES ('plain', 'p1', '{"via": "insert"}')$$,
                'plain INSERT of a bid');
SELECT results_eq(
    $$SELECT count(*) FROM bidguard_events AS e JOIN bidguard_bids AS b
                ON e.event_id = b.atomic_event_id AND e.bid_id = b.bid_id
       WHERE (b.marketplace_id, b.posting_id) = ('plain', 'p1') AND e.kind = 'bid_created'$$,
    $$VALUES (1::bigint)$$,
    'a plain INSERT gets its creation event, event_id = atomic_event_id');
SELECT results_eq(
    $$SELECT b.bid_id, false FROM bidguard_bids AS b WHERE (b.marketplace_id, b.posting_id) = ('plain', 'p1')$$,
    $$SELECT bid_id, created FROM bidguard_create_bid('plain', 'p1')$$,
    'create_bid returns a bid inserted by plain SQL');
SELECT lives_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('plain', 'p1') ON CONFLICT DO NOTHING$$,
                'INSERT ... ON CONFLICT DO NOTHING on an active posting');
SELECT is(count(*), 1::bigint, '... leaves one bid')
  FROM bidguard_bids WHERE (marketplace_id, posting_id) = ('plain', 'p1');
SELECT lives_ok($$INSERT INTO bidguard_bids (marketplace_id, posting_id, status) VALUES ('plain', 'p1', 'withdrawn'), ('plain', 'p1', 'lost')$$,
                'inactive bids can sit beside the active one (the index is partial)');
SELECT lives_ok($$UPDATE bidguard_bids SET status = 'withdrawn', status_reason = 'plain withdrawal'
                   WHERE (marketplace_id, posting_id) = ('plain', 'p1') AND status = 'pending'$$,
                'plain UPDATE withdraws');
SELECT results_eq(
    $$SELECT e.old_status, e.new_status, e.detail->>'reason'
        FROM bidguard_events AS e JOIN bidguard_bids AS b USING (bid_id)
       WHERE (b.marketplace_id, b.posting_id) = ('plain', 'p1') AND e.kind <> 'bid_created'$$,
    $$VALUES ('pending'::text, 'withdrawn'::text, 'plain withdrawal'::text)$$,
    'the plain UPDATE wrote its status event with the reason');

--
-- A rolled-back creation leaves nothing behind; the next call creates.
--
SAVEPOINT before_rollback;
SELECT bid_id AS rb_bid, atomic_event_id AS rb_event FROM bidguard_create_bid('rb', 'p1') \gset
ROLLBACK TO SAVEPOINT before_rollback;
SELECT is(count(*), 0::bigint, 'a rolled-back creation leaves no bid')
  FROM bidguard_bids WHERE bid_id = :rb_bid OR (marketplace_id, posting_id) = ('rb', 'p1');
SELECT is(count(*), 0::bigint, '... and no event')
  FROM bidguard_events WHERE event_id = :'rb_event' OR bid_id = :rb_bid;
SELECT results_eq($$SELECT created FROM bidguard_create_bid('rb', 'p1')$$, $$VALUES (true)$$,
                  'after the rollback create_bid creates again');
SAVEPOINT before_rollback2;
SELECT withdrawn FROM bidguard_withdraw_posting('rb', 'p1') \gset
ROLLBACK TO SAVEPOINT before_rollback2;
SELECT results_eq($$SELECT status FROM bidguard_bids WHERE (marketplace_id, posting_id) = ('rb', 'p1')$$,
                  $$VALUES ('pending'::text)$$,
                  'a rolled-back withdrawal leaves the bid active');
SELECT is(count(*), 1::bigint, '... with only its creation event')
  FROM bidguard_events WHERE (marketplace_id, posting_id) = ('rb', 'p1');

--
-- The audit trail over everything above.
--
SELECT is_empty(
    $$SELECT b.bid_id FROM bidguard_bids AS b
       WHERE NOT EXISTS (SELECT 1 FROM bidguard_events AS e
                          WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created'
                            AND e.bid_id = b.bid_id
                            AND (e.marketplace_id, e.posting_id) = (b.marketplace_id, b.posting_id))$$,
    'every bid has its creation event: event_id = atomic_event_id, kind bid_created');
SELECT is((SELECT count(*) FROM bidguard_events WHERE kind = 'bid_created'),
          (SELECT count(*) FROM bidguard_bids),
          'as many creation events as bids');
SELECT is_empty(
    $$SELECT e.event_id FROM bidguard_events AS e
       WHERE e.kind <> 'bid_created' AND e.old_status IS DISTINCT FROM e.new_status
         AND (e.old_status, e.new_status) NOT IN (SELECT f, t FROM allowed)$$,
    'every status change event is an allowed transition');
SELECT is_empty(
    $$SELECT b.bid_id FROM bidguard_bids AS b
       WHERE b.status IS DISTINCT FROM coalesce(
               (SELECT e.new_status FROM bidguard_events AS e
                 WHERE e.bid_id = b.bid_id AND e.kind <> 'bid_created'
                 ORDER BY e.occurred_at DESC LIMIT 1),
               (SELECT e.new_status FROM bidguard_events AS e WHERE e.event_id = b.atomic_event_id),
               'pending')$$,
    'every bid''s status is the new status of its latest event');

--
-- The posting lock: held to the end of the transaction, recognisable in
-- pg_locks as an advisory lock of bidguard's posting class (objsubid 25089,
-- doc/api.md, Locks) whose key is bidguard_lock_key(marketplace_id, posting_id).
--
SELECT is(count(*), 1::bigint, 'create_bid holds its posting''s lock until the end of the transaction')
  FROM pg_locks AS l
 WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
   AND l.mode = 'ExclusiveLock'
   AND l.objsubid = 25089
   AND ((l.classid::bigint << 32) | l.objid::bigint) = bidguard_lock_key('rb', 'p1');
SELECT is_empty(
    $$SELECT 1 FROM pg_locks AS l
       WHERE l.locktype = 'advisory' AND l.objsubid IN (1, 2)$$,
    'bidguard takes no lock in the key space of pg_advisory_lock()');

--
-- An empty search_path: the functions, called schema-qualified, still
-- work.  pgTAP needs its schema, so the results are kept and checked after.
--
SET LOCAL search_path = '';
CREATE TEMP TABLE sp_results AS
    SELECT 1 AS step, to_jsonb(r) AS result FROM :bg.bidguard_create_bid('sp', 'p1', '{"a": 1}') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 2, to_jsonb(r) FROM :bg.bidguard_create_bid('sp', 'p1') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 3, to_jsonb(r) FROM :bg.bidguard_set_bid_status(
        (SELECT (result->>'bid_id')::bigint FROM pg_temp.sp_results WHERE step = 1), 'submitted', 'sp') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 4, to_jsonb(r) FROM :bg.bidguard_withdraw_bid(
        (SELECT (result->>'bid_id')::bigint FROM pg_temp.sp_results WHERE step = 1), 'sp') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 5, to_jsonb(r) FROM :bg.bidguard_create_bid('sp', 'p1') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 6, to_jsonb(r) FROM :bg.bidguard_withdraw_posting('sp', 'p1', 'sp') AS r;
INSERT INTO pg_temp.sp_results
    SELECT 7, to_jsonb(r) FROM :bg.bidguard_withdraw_posting('sp', 'p1') AS r;
RESET search_path;

SELECT results_eq(
    $$SELECT step, result - 'bid_id' - 'atomic_event_id' FROM sp_results ORDER BY step$$,
    $$VALUES (1, '{"created": true, "status": "pending"}'::jsonb),
             (2, '{"created": false, "status": "pending"}'),
             (3, '{"changed": true, "old_status": "pending", "status": "submitted"}'),
             (4, '{"withdrawn": true, "status": "withdrawn"}'),
             (5, '{"created": true, "status": "pending"}'),
             (6, '{"withdrawn": true, "status": "withdrawn"}'),
             (7, '{"withdrawn": false, "status": null}')$$,
    'with search_path = '''' every function works when called schema-qualified');
SELECT results_eq(
    $$SELECT kind = 'bid_created', old_status, new_status, detail->>'reason'
        FROM bidguard_events WHERE marketplace_id = 'sp' ORDER BY occurred_at$$,
    $$VALUES (true, NULL::text, 'pending'::text, NULL::text),
             (false, 'pending', 'submitted', 'sp'),
             (false, 'submitted', 'withdrawn', 'sp'),
             (true, NULL, 'pending', NULL),
             (false, 'pending', 'withdrawn', 'sp')$$,
    '... and wrote their events');

--
-- A bid keeps its identity, and its timestamps come from the server clock.
--
SELECT throws_ok(
    $$UPDATE bidguard_bids SET bid_id = bid_id + 1000000 WHERE (marketplace_id, posting_id) = ('mk', 'p2')$$,
    '23514', NULL,
    'a plain UPDATE of bid_id is refused (it would orphan the bid''s events and collide with the identity later)');
SELECT throws_ok(
    $$UPDATE bidguard_bids AS b SET atomic_event_id = e.event_id
        FROM bidguard_events AS e
       WHERE (b.marketplace_id, b.posting_id) = ('mk', 'p3') AND e.bid_id = b.bid_id
         AND e.kind <> 'bid_created'$$,
    '23514', NULL,
    'a plain UPDATE of atomic_event_id is refused (it must stay the id of the creating event)');
CREATE FUNCTION pg_temp.try(sql text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
SELECT pg_temp.try($$INSERT INTO bidguard_bids (marketplace_id, posting_id, created_at, updated_at)
                     VALUES ('clock', 'p1', '2000-01-01', '1999-01-01')$$);
SELECT is_empty(
    $$SELECT b.bid_id FROM bidguard_bids AS b
       WHERE b.created_at < '2001-01-01' OR b.updated_at < b.created_at$$,
    'created_at and updated_at come from the server clock, not from the client');

SELECT * FROM finish();
ROLLBACK;
