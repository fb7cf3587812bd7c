--
-- The audit trail: one bidguard_events row per state change, in the same
-- transaction, whichever path made the change
--
SELECT bid_id AS ev_bid FROM bidguard_create_bid('ev', 'p1', '{"a": 1}') \gset
SELECT changed FROM bidguard_set_bid_status(:ev_bid, 'submitted', 'sent');
SELECT withdrawn FROM bidguard_withdraw_bid(:ev_bid, 'changed our mind');
-- no-ops write no event
SELECT withdrawn FROM bidguard_withdraw_bid(:ev_bid);
SELECT changed FROM bidguard_set_bid_status(:ev_bid, 'withdrawn');

SELECT kind, old_status, new_status, detail, marketplace_id, posting_id,
       backend_pid = pg_backend_pid() AS my_pid
  FROM bidguard_events WHERE bid_id = :ev_bid ORDER BY occurred_at, kind;

-- the creation event's id is the bid's atomic_event_id, its time created_at
SELECT e.event_id = b.atomic_event_id AS same_id, e.occurred_at = b.created_at AS same_time
  FROM bidguard_bids AS b JOIN bidguard_events AS e ON e.bid_id = b.bid_id AND e.kind = 'bid_created'
 WHERE b.bid_id = :ev_bid;

-- plain SQL is audited too: insert, status change, move, delete
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('ev', 'p2') RETURNING bid_id AS ev_bid2 \gset
UPDATE bidguard_bids SET status = 'submitted', status_reason = 'by hand' WHERE bid_id = :ev_bid2;
UPDATE bidguard_bids SET posting_id = 'p3' WHERE bid_id = :ev_bid2;
UPDATE bidguard_bids SET bid_data = '{"b": 2}' WHERE bid_id = :ev_bid2;
DELETE FROM bidguard_bids WHERE bid_id = :ev_bid2;
SELECT kind, old_status, new_status, posting_id, detail
  FROM bidguard_events WHERE bid_id = :ev_bid2 ORDER BY occurred_at, kind;

-- rolled back changes leave no events
BEGIN;
SELECT bid_id AS ev_bid3 FROM bidguard_create_bid('ev', 'p4') \gset
SELECT changed FROM bidguard_set_bid_status(:ev_bid3, 'failed');
ROLLBACK;
SELECT count(*) FROM bidguard_events WHERE posting_id = 'p4';

-- a failed statement leaves no events (savepoint)
BEGIN;
SELECT created FROM bidguard_create_bid('ev', 'p5');
SAVEPOINT s;
UPDATE bidguard_bids SET status = 'won' WHERE marketplace_id = 'ev' AND posting_id = 'p5';
ROLLBACK TO s;
COMMIT;
SELECT kind, new_status FROM bidguard_events WHERE posting_id = 'p5' ORDER BY occurred_at;

-- every bid has its creation event
SELECT count(*) AS bids_without_creation_event
  FROM bidguard_bids AS b
 WHERE NOT EXISTS (SELECT 1 FROM bidguard_events AS e
                    WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created');

-- a role that may change bids needs no privilege on the audit trail, and
-- can neither forge it nor remove from it (error)
CREATE ROLE regress_bidguard_app;
GRANT SELECT, INSERT, UPDATE ON bidguard_bids TO regress_bidguard_app;
SET ROLE regress_bidguard_app;
SELECT created FROM bidguard_create_bid('ev', 'p7');
SELECT withdrawn FROM bidguard_withdraw_posting('ev', 'p7');
INSERT INTO bidguard_events (kind) VALUES ('forged');
SELECT count(*) FROM bidguard_events;
DELETE FROM bidguard_events WHERE posting_id = 'p7';
RESET ROLE;
SELECT kind, new_status FROM bidguard_events WHERE posting_id = 'p7' ORDER BY occurred_at;
REVOKE ALL ON bidguard_bids FROM regress_bidguard_app;
DROP ROLE regress_bidguard_app;

SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
