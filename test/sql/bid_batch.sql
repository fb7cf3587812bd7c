--
-- bidguard_create_bids: one row per element, in input order, with the
-- guarantees of one bidguard_create_bid per element.
--
-- In a database of its own, so that the bids and ids it makes do not
-- change what the other tests see.
\set regress_db :DBNAME
CREATE DATABASE regress_bidguard_bid_batch;
\c regress_bidguard_bid_batch
SET client_min_messages = warning;
CREATE EXTENSION bidguard;
RESET client_min_messages;

-- New postings, a posting twice, and an existing one.
SELECT created FROM bidguard_create_bid('batch', 'old');
SELECT ordinality, posting_id, created, status
  FROM bidguard_create_bids('batch', ARRAY['n1', 'old', 'n2', 'n1']);
-- the same bids as the single function returns
SELECT b.ordinality, b.bid_id = c.bid_id AS same_bid, b.atomic_event_id = c.atomic_event_id AS same_event
  FROM bidguard_create_bids('batch', ARRAY['n2', 'n1', 'old']) AS b,
       LATERAL bidguard_create_bid('batch', b.posting_id) AS c
 ORDER BY b.ordinality;
-- bid_data per posting
SELECT ordinality, created FROM bidguard_create_bids('batch', ARRAY['d1', 'd2'],
                                                     ARRAY['{"price": 1}', '{"price": 2}']::jsonb[]);
SELECT posting_id, bid_data FROM bidguard_bids WHERE posting_id IN ('d1', 'd2') ORDER BY posting_id;
-- one creation event per created bid
SELECT posting_id, count(*) FROM bidguard_events
 WHERE marketplace_id = 'batch' AND kind = 'bid_created' GROUP BY posting_id ORDER BY posting_id;
-- an empty batch answers nothing
SELECT count(*) FROM bidguard_create_bids('batch', '{}');
-- after a withdrawal, a new bid for the posting
SELECT withdrawn FROM bidguard_withdraw_posting('batch', 'n1');
SELECT ordinality, created, status FROM bidguard_create_bids('batch', ARRAY['n1']);

-- Inputs are checked before anything is locked or written.
SELECT * FROM bidguard_create_bids(NULL, ARRAY['x']);
SELECT * FROM bidguard_create_bids('batch', NULL);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x', NULL]);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x', '']);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x', repeat('y', 257)]);
SELECT * FROM bidguard_create_bids('batch', ARRAY[['x'], ['y']]);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x', 'y'], ARRAY['{}']::jsonb[]);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x'], ARRAY[NULL]::jsonb[]);
SELECT * FROM bidguard_create_bids('batch', ARRAY['x'], ARRAY['[1]']::jsonb[]);
SELECT count(*) FROM bidguard_bids WHERE posting_id IN ('x', 'y');

-- A read-only transaction is refused like the single function.
BEGIN READ ONLY;
SELECT * FROM bidguard_create_bids('batch', ARRAY['ro']);
ROLLBACK;

-- The batch's locks: one per distinct posting, held to the end of the
-- transaction.
BEGIN;
SELECT count(*) FROM bidguard_create_bids('batch', ARRAY['l1', 'l2', 'l1', 'l3']);
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 25089 AND pid = pg_backend_pid();
COMMIT;

\c :regress_db
DROP DATABASE regress_bidguard_bid_batch;
