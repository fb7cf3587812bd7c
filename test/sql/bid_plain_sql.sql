--
-- Plain INSERT/UPDATE/DELETE on bidguard_bids are guarded too
--
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

INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('sql', 'p1');

-- a second active bid for the posting (error: 23505 bidguard_bids_one_active)
INSERT INTO bidguard_bids (marketplace_id, posting_id, status) VALUES ('sql', 'p1', 'submitted');
SELECT pg_temp.err($$INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('sql', 'p1')$$);

-- ON CONFLICT DO NOTHING works against the partial unique index
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('sql', 'p1')
ON CONFLICT (marketplace_id, posting_id) WHERE status IN ('pending', 'submitted') DO NOTHING;

-- the function returns the bid a plain INSERT created
SELECT created, status FROM bidguard_create_bid('sql', 'p1');

-- inactive bids do not count: any number of them may exist
INSERT INTO bidguard_bids (marketplace_id, posting_id, status)
VALUES ('sql', 'p2', 'lost'), ('sql', 'p2', 'withdrawn'), ('sql', 'p2', 'pending');
SELECT status, count(*) FROM bidguard_bids WHERE posting_id = 'p2' GROUP BY status ORDER BY status;

-- an UPDATE that moves an active bid onto a posting with one (error)
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('sql', 'p3');
UPDATE bidguard_bids SET posting_id = 'p1' WHERE marketplace_id = 'sql' AND posting_id = 'p3';
SELECT pg_temp.err($$UPDATE bidguard_bids SET posting_id = 'p1' WHERE marketplace_id = 'sql' AND posting_id = 'p3'$$);

-- transitions are judged for plain UPDATEs as well (error: 23514 bidguard_bid_transition)
UPDATE bidguard_bids SET status = 'won' WHERE marketplace_id = 'sql' AND posting_id = 'p3';
UPDATE bidguard_bids SET status = 'pending' WHERE marketplace_id = 'sql' AND posting_id = 'p2' AND status = 'lost';
SELECT pg_temp.err($$UPDATE bidguard_bids SET status = 'pending' WHERE marketplace_id = 'sql' AND posting_id = 'p2' AND status = 'lost'$$);
UPDATE bidguard_bids SET status = 'submitted' WHERE marketplace_id = 'sql' AND posting_id = 'p3';
UPDATE bidguard_bids SET status = 'won' WHERE marketplace_id = 'sql' AND posting_id = 'p3';
SELECT status FROM bidguard_bids WHERE marketplace_id = 'sql' AND posting_id = 'p3';

-- an UPDATE that leaves the status alone is fine, on terminal bids too,
-- and stamps updated_at with the server clock
UPDATE bidguard_bids SET bid_data = '{"note": "x"}', updated_at = '2000-01-01'
 WHERE marketplace_id = 'sql' AND posting_id = 'p3';
SELECT bid_data, updated_at > '2020-01-01' AS updated_at_is_now
  FROM bidguard_bids WHERE marketplace_id = 'sql' AND posting_id = 'p3';

-- the table's own constraints (error; terse: the failing row has a uuid)
\set VERBOSITY terse
INSERT INTO bidguard_bids (marketplace_id, posting_id, status) VALUES ('sql', 'p4', 'bogus');
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('', 'p4');
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('sql', repeat('x', 257));
INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data) VALUES ('sql', 'p4', '[]');
INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data) VALUES ('sql', 'p4', NULL);
UPDATE bidguard_bids SET status = NULL WHERE marketplace_id = 'sql' AND posting_id = 'p3';
\set VERBOSITY default

-- a restored (or back-filled) row may carry any status and its own event id
INSERT INTO bidguard_bids (marketplace_id, posting_id, status, atomic_event_id)
VALUES ('sql', 'p5', 'won', '00000000-0000-0000-0000-000000000005');
SELECT kind, new_status FROM bidguard_events WHERE event_id = '00000000-0000-0000-0000-000000000005';

-- a bid keeps its identity: bid_id, atomic_event_id and created_at (error)
UPDATE bidguard_bids SET bid_id = bid_id + 1000000 WHERE marketplace_id = 'sql' AND posting_id = 'p1';
UPDATE bidguard_bids SET atomic_event_id = '00000000-0000-0000-0000-000000000006' WHERE marketplace_id = 'sql' AND posting_id = 'p1';
UPDATE bidguard_bids SET created_at = created_at - interval '1 day' WHERE marketplace_id = 'sql' AND posting_id = 'p1';
SELECT pg_temp.err($$UPDATE bidguard_bids SET bid_id = -1 WHERE marketplace_id = 'sql' AND posting_id = 'p1'$$);

-- on INSERT, created_at and updated_at come from the server clock, not the client
INSERT INTO bidguard_bids (marketplace_id, posting_id, created_at, updated_at)
VALUES ('sql', 'p6', '2000-01-01', '1999-01-01')
RETURNING created_at > '2020-01-01' AS created_now, updated_at = created_at AS updated_same;
SELECT e.occurred_at = b.created_at AS event_at_creation
  FROM bidguard_bids AS b JOIN bidguard_events AS e ON e.event_id = b.atomic_event_id
 WHERE b.marketplace_id = 'sql' AND b.posting_id = 'p6';

-- ... except for a bid being restored: loaded by a COPY of every column by
-- the table's owner, as pg_restore loads it, it keeps its own times and
-- writes no event (its events are restored with bidguard_events)
SELECT count(*) AS events_before FROM bidguard_events \gset
COPY bidguard_bids (bid_id, marketplace_id, posting_id, status, bid_data, status_reason, atomic_event_id, created_at, updated_at) FROM stdin;
900001	sql	restored-1	submitted	{"k": 1}	\N	00000000-0000-0000-0000-000000900001	2001-02-03 04:05:06+00	2001-02-03 04:05:07+00
\.
COPY bidguard_bids FROM stdin;
900002	sql	restored-2	won	{}	kept	00000000-0000-0000-0000-000000900002	2001-02-03 05:00:00+00	2001-02-03 06:00:00+00
\.
SELECT bid_id, status, created_at = '2001-02-03 04:05:06+00' OR created_at = '2001-02-03 05:00:00+00' AS kept_created,
       updated_at - created_at AS kept_gap
  FROM bidguard_bids WHERE posting_id LIKE 'restored-%' ORDER BY bid_id;
SELECT count(*) - :events_before AS events_written FROM bidguard_events;
-- a COPY of some columns is an ordinary insert: stamped, and audited
COPY bidguard_bids (marketplace_id, posting_id, created_at) FROM stdin;
sql	copied-some	2001-02-03 04:05:06+00
\.
SELECT created_at > '2020-01-01' AS stamped,
       EXISTS (SELECT 1 FROM bidguard_events AS e WHERE e.event_id = b.atomic_event_id) AS audited
  FROM bidguard_bids AS b WHERE posting_id = 'copied-some';
-- so is an INSERT of every column, or a COPY of every column by a role that
-- only may insert
CREATE TEMP TABLE saved AS SELECT * FROM bidguard_bids WHERE posting_id = 'restored-1';
DELETE FROM bidguard_bids WHERE posting_id = 'restored-1';
INSERT INTO bidguard_bids SELECT * FROM saved;
SELECT created_at > '2020-01-01' AS stamped_again
  FROM bidguard_bids WHERE posting_id = 'restored-1';
CREATE ROLE regress_bidguard_loader;
GRANT INSERT ON bidguard_bids TO regress_bidguard_loader;
SET ROLE regress_bidguard_loader;
COPY bidguard_bids FROM stdin;
900003	sql	restored-3	pending	{}	\N	00000000-0000-0000-0000-000000900003	2001-02-03 04:05:06+00	2001-02-03 04:05:07+00
\.
RESET ROLE;
SELECT created_at > '2020-01-01' AS stamped,
       EXISTS (SELECT 1 FROM bidguard_events AS e WHERE e.event_id = b.atomic_event_id) AS audited
  FROM bidguard_bids AS b WHERE posting_id = 'restored-3';
REVOKE ALL ON bidguard_bids FROM regress_bidguard_loader;
DROP ROLE regress_bidguard_loader;

-- at most one active bid per posting, whatever happened above
SELECT count(*) AS postings_with_two_active FROM bidguard_duplicate_active_bids;

-- bidguard's trigger functions attached where they do not belong (error)
CREATE TABLE regress_not_bids (a int);
CREATE TRIGGER t1 AFTER INSERT ON regress_not_bids
    FOR EACH ROW EXECUTE FUNCTION bidguard_audit_trigger('bid');
INSERT INTO regress_not_bids VALUES (1);
DROP TRIGGER t1 ON regress_not_bids;
CREATE TRIGGER t2 BEFORE INSERT ON regress_not_bids
    FOR EACH STATEMENT EXECUTE FUNCTION bidguard_trades_cooldown_trigger();
INSERT INTO regress_not_bids VALUES (1);
DROP TRIGGER t2 ON regress_not_bids;
CREATE TRIGGER t3 AFTER INSERT ON regress_not_bids
    FOR EACH ROW EXECUTE FUNCTION bidguard_audit_trigger('posting');
INSERT INTO regress_not_bids VALUES (1);
SELECT pg_temp.err('INSERT INTO regress_not_bids VALUES (1)');
DROP TABLE regress_not_bids;

SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
