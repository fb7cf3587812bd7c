-- bench/scale_load_bids.sql — bench/scale.sh's pre-populated bids: bids
-- :from .. :to (bid_id = i), one posting each ('p' || i) in marketplace
-- 'scale', each with the bid_created event its INSERT would have written.
-- psql variables: from, to, anchor (a timestamptz in the past).
--
-- The rows are what bidguard's own triggers leave for a bid inserted with
-- its final status, as a restore or an import does (plain INSERT may give
-- any status; the transition rule binds UPDATEs): the event has event_id =
-- atomic_event_id, occurred_at = created_at, the bid's id, marketplace and
-- posting, new_status = the bid's status, and detail {"reason": ...} when
-- the bid has a status_reason, else {}.  Statuses by i % 20: 10% active
-- (pending, submitted; one per posting, so bidguard_bids_one_active holds),
-- 90% terminal (lost 40%, won 25%, withdrawn 15%, expired 5%, failed 5%).
--
-- Speed: session_replication_role = replica turns the triggers (and the
-- foreign keys' triggers) off, so each row costs a heap insert and its index
-- entries only.  The uuids are the extension's own (bidguard_uuid_v7(),
-- time-ordered, as the column defaults make them), drawn first and sorted,
-- and bid_id follows their order, as it would have in production.  What
-- the benchmark measures later, new bids with later ids, lands on the
-- right-hand edge of those indexes, as it would in production.  (With
-- random ids, version 4, every new id lands on a random leaf page, which
-- costs a buffer miss once an index outgrows shared_buffers.)
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SET work_mem = '1GB';
SET temp_buffers = '1GB';
SET synchronous_commit = off;
BEGIN;
CREATE TEMP TABLE scale_stage ON COMMIT DROP AS
SELECT (:from - 1 + row_number() OVER (ORDER BY u))::bigint AS i, u
  FROM (SELECT bidguard_uuid_v7() AS u FROM generate_series(:from, :to)) AS g;

CREATE TEMP VIEW scale_new_bids AS
SELECT s.i, s.u,
       (ARRAY['pending', 'submitted', 'lost', 'lost', 'lost', 'lost', 'lost', 'lost', 'lost', 'lost',
              'won', 'won', 'won', 'won', 'won', 'withdrawn', 'withdrawn', 'withdrawn',
              'expired', 'failed'])[s.i % 20 + 1] AS status,
       :'anchor'::timestamptz + s.i * interval '100 ms' AS created_at
  FROM scale_stage AS s;

INSERT INTO bidguard_events (event_id, occurred_at, kind, bid_id, marketplace_id, posting_id,
                             old_status, new_status, backend_pid, detail)
SELECT u, created_at, 'bid_created', i, 'scale', 'p' || i, NULL, status, 0,
       CASE WHEN status = 'withdrawn' THEN '{"reason": "scale: withdrawn"}'::jsonb ELSE '{}'::jsonb END
  FROM scale_new_bids;

INSERT INTO bidguard_bids (bid_id, marketplace_id, posting_id, status, bid_data, status_reason,
                           atomic_event_id, created_at, updated_at)
SELECT i, 'scale', 'p' || i, status, '{}'::jsonb,
       CASE WHEN status = 'withdrawn' THEN 'scale: withdrawn' END,
       u, created_at, created_at
  FROM scale_new_bids;
DROP VIEW scale_new_bids;
COMMIT;
