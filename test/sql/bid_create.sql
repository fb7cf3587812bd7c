--
-- bidguard_create_bid: one active bid per posting, returned to every caller
--
-- (the regression database already has the extension: --load-extension)

-- first call creates a pending bid
SELECT bid_id, created, status, atomic_event_id IS NOT NULL AS has_event_id
  FROM bidguard_create_bid('ebay', 'posting-1', '{"price": 12.5}');

-- a second call for the same posting returns the same bid, created = false
SELECT bid_id, created, status FROM bidguard_create_bid('ebay', 'posting-1');

-- the atomic_event_id returned is the row's
SELECT c.atomic_event_id = b.atomic_event_id AS same_event_id
  FROM bidguard_create_bid('ebay', 'posting-1') AS c
  JOIN bidguard_bids AS b USING (bid_id);

-- bid_data is stored; the default is an empty object
SELECT bid_data FROM bidguard_bids WHERE posting_id = 'posting-1';
SELECT created FROM bidguard_create_bid('ebay', 'posting-2');
SELECT bid_data FROM bidguard_bids WHERE posting_id = 'posting-2';

-- the same posting id on another marketplace is another posting
SELECT created, status FROM bidguard_create_bid('amazon', 'posting-1');

-- called in the select list, it returns one composite value
SELECT (bidguard_create_bid('ebay', 'posting-1')).created;

-- ids are compared exactly: case and spaces matter
SELECT created FROM bidguard_create_bid('ebay', 'Posting-1');
SELECT created FROM bidguard_create_bid('ebay', 'posting-1 ');

-- 256 characters is the limit, in characters, not bytes
SELECT created FROM bidguard_create_bid('ebay', repeat('x', 256));
SELECT created FROM bidguard_create_bid('ebay', repeat('é', 256));

-- once the bid is no longer active, a new bid may be created
SELECT withdrawn, status FROM bidguard_withdraw_posting('ebay', 'posting-2');
SELECT created, status FROM bidguard_create_bid('ebay', 'posting-2');
SELECT count(*) AS bids, count(*) FILTER (WHERE status = 'pending') AS active
  FROM bidguard_bids WHERE marketplace_id = 'ebay' AND posting_id = 'posting-2';

-- a rolled-back creation leaves nothing behind, and the next caller creates
BEGIN;
SELECT created FROM bidguard_create_bid('ebay', 'posting-3');
ROLLBACK;
SELECT count(*) FROM bidguard_bids WHERE posting_id = 'posting-3';
SELECT count(*) FROM bidguard_events WHERE posting_id = 'posting-3';
SELECT created FROM bidguard_create_bid('ebay', 'posting-3');

-- NULL required arguments (error)
SELECT * FROM bidguard_create_bid(NULL, 'p');
SELECT * FROM bidguard_create_bid('m', NULL);
SELECT * FROM bidguard_create_bid('m', 'p', NULL);

-- empty and over-long ids (error)
SELECT * FROM bidguard_create_bid('', 'p');
SELECT * FROM bidguard_create_bid('m', '');
SELECT * FROM bidguard_create_bid(repeat('x', 257), 'p');
SELECT * FROM bidguard_create_bid('m', repeat('é', 257));

-- bid_data must be a JSON object (error)
SELECT * FROM bidguard_create_bid('m', 'p', '[1, 2]');
SELECT * FROM bidguard_create_bid('m', 'p', '"text"');
SELECT * FROM bidguard_create_bid('m', 'p', '42');
SELECT * FROM bidguard_create_bid('m', 'p', 'null');

-- not in a read-only transaction (error)
BEGIN READ ONLY;
SELECT * FROM bidguard_create_bid('m', 'p');
ROLLBACK;

-- none of the errors above created anything
SELECT count(*) FROM bidguard_bids WHERE marketplace_id = 'm';

-- the posting lock is held until the transaction ends, and is visible in
-- pg_locks as an advisory lock of bidguard's class 25089 whose key
-- is bidguard_lock_key(marketplace_id, posting_id)
BEGIN;
SELECT created FROM bidguard_create_bid('ebay', 'posting-1');
SELECT l.mode, l.granted,
       ((l.classid::bigint << 32) | l.objid::bigint) = bidguard_lock_key('ebay', 'posting-1') AS key_matches
  FROM pg_locks AS l
 WHERE l.locktype = 'advisory' AND l.objsubid = 25089 AND l.pid = pg_backend_pid();
COMMIT;

-- nothing of bidguard's stays locked
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
