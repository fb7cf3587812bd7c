--
-- The functions work whatever the caller's search_path is, and in a schema
-- of the user's choice (quoted name included)
--
DROP EXTENSION bidguard;
CREATE SCHEMA "Guard Schema";
CREATE EXTENSION bidguard WITH SCHEMA "Guard Schema";
SELECT extrelocatable, extnamespace::regnamespace FROM pg_extension WHERE extname = 'bidguard';

-- a hostile schema ahead in search_path, with look-alikes of what bidguard
-- uses internally: tables of the same names, a gen_random_uuid() returning a
-- constant, and a text = operator that says everything is equal
CREATE SCHEMA hostile;
CREATE TABLE hostile.bidguard_bids (bid_id bigint, marketplace_id text, posting_id text, status text);
CREATE TABLE hostile.bidguard_events (event_id uuid);
CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid
    LANGUAGE sql AS $$ SELECT '00000000-0000-0000-0000-000000000000'::uuid $$;
CREATE FUNCTION hostile.always_true(text, text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.always_true);

SET search_path = hostile, pg_catalog, "Guard Schema";
SELECT created, status FROM bidguard_create_bid('sp', 'p1');
SELECT created, status FROM bidguard_create_bid('sp', 'p2');
SELECT created FROM bidguard_create_bid('sp', 'p1');
SELECT withdrawn, status FROM bidguard_withdraw_posting('sp', 'p2');
SELECT changed, status FROM bidguard_set_bid_status(
    (SELECT bid_id FROM "Guard Schema".bidguard_bids WHERE posting_id OPERATOR(pg_catalog.=) 'p1'), 'submitted');
SELECT count(*) AS hostile_bids FROM hostile.bidguard_bids;
SELECT count(*) AS hostile_events FROM hostile.bidguard_events;

-- an empty search_path
SET search_path = '';
SELECT created FROM "Guard Schema".bidguard_create_bid('sp', 'p3');
SELECT withdrawn FROM "Guard Schema".bidguard_withdraw_bid(
    (SELECT bid_id FROM "Guard Schema".bidguard_bids WHERE posting_id OPERATOR(pg_catalog.=) 'p3'));
RESET search_path;

SELECT marketplace_id, posting_id, status FROM "Guard Schema".bidguard_bids ORDER BY posting_id;
SELECT kind, posting_id, new_status FROM "Guard Schema".bidguard_events ORDER BY occurred_at, kind;
SELECT count(*) AS distinct_event_ids, count(DISTINCT event_id) FROM "Guard Schema".bidguard_events;

-- renaming the schema under a backend that has cached plans
ALTER SCHEMA "Guard Schema" RENAME TO guard2;
SELECT created FROM guard2.bidguard_create_bid('sp', 'p4');

DROP SCHEMA hostile CASCADE;
DROP EXTENSION bidguard;
DROP SCHEMA guard2;

-- leave the database as the other tests expect it
CREATE EXTENSION bidguard;
SELECT created FROM bidguard_create_bid('sp', 'p5');
