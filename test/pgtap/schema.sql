-- test/pgtap/schema.sql
--	  CREATE EXTENSION bidguard WITH SCHEMA, into a schema whose name needs
--	  quoting, then the functions called under a hostile search_path: decoy
--	  tables named like bidguard's in pg_temp and in a schema searched before
--	  pg_catalog, a decoy "=" for text and bigint that is always true, and
--	  decoy gen_random_uuid()/clock_timestamp()/now().  Every internal
--	  reference must be schema-qualified (SPEC §1), so the decoys must not
--	  change anything.  The extension is not relocatable.
--	  This file drops and re-creates bidguard inside its transaction (rolled
--	  back at the end).
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS bidguard CASCADE;
CREATE SCHEMA "Bid Guard";
CREATE EXTENSION bidguard WITH SCHEMA "Bid Guard";

SELECT plan(23);

SELECT is(extnamespace::regnamespace::text, '"Bid Guard"', 'bidguard is installed in schema "Bid Guard"')
  FROM pg_extension WHERE extname = 'bidguard';
SELECT is_empty(
    $$SELECT c.relname FROM pg_class AS c WHERE c.relname LIKE 'bidguard%'
         AND c.relnamespace <> '"Bid Guard"'::regnamespace
      UNION ALL
      SELECT p.proname FROM pg_proc AS p WHERE p.proname LIKE 'bidguard%'
         AND p.pronamespace <> '"Bid Guard"'::regnamespace$$,
    'nothing of bidguard lands outside its schema');
CREATE SCHEMA "Other";
SELECT throws_ok($$ALTER EXTENSION bidguard SET SCHEMA "Other"$$, '0A000', NULL,
                 'ALTER EXTENSION bidguard SET SCHEMA is refused: not relocatable');

--
-- The decoys.
--
CREATE SCHEMA decoy;
CREATE TABLE decoy.bidguard_bids (LIKE "Bid Guard".bidguard_bids);
CREATE TABLE decoy.bidguard_events (LIKE "Bid Guard".bidguard_events);
CREATE TEMP TABLE bidguard_bids (LIKE "Bid Guard".bidguard_bids);
CREATE TEMP TABLE bidguard_events (LIKE "Bid Guard".bidguard_events);
CREATE FUNCTION decoy.always_true(text, text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE FUNCTION decoy.always_true(bigint, bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR decoy.= (LEFTARG = text, RIGHTARG = text, FUNCTION = decoy.always_true);
CREATE OPERATOR decoy.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = decoy.always_true);
CREATE FUNCTION decoy.gen_random_uuid() RETURNS uuid
    LANGUAGE sql AS $$SELECT '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid$$;
CREATE FUNCTION decoy.clock_timestamp() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION decoy.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT '2000-01-01 00:00:00+00'::pg_catalog.timestamptz$$;
CREATE FUNCTION decoy.jsonb_typeof(jsonb) RETURNS text
    LANGUAGE sql AS $$SELECT 'object'::pg_catalog.text$$;
CREATE TEMP TABLE hostile (step int, result jsonb);

--
-- The first calls of this backend, so that bidguard prepares its plans
-- under the hostile search_path.
--
SET LOCAL search_path = pg_temp, decoy, pg_catalog;
INSERT INTO pg_temp.hostile
    SELECT 1, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_create_bid('hostile', 'p1', '{"n": 1}') AS r;
INSERT INTO pg_temp.hostile
    SELECT 2, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_create_bid('hostile', 'p2') AS r;
INSERT INTO pg_temp.hostile
    SELECT 3, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_create_bid('hostile', 'p1') AS r;
SELECT result->>'bid_id' AS h1 FROM pg_temp.hostile WHERE step OPERATOR(pg_catalog.=) 1 \gset
SELECT result->>'bid_id' AS h2 FROM pg_temp.hostile WHERE step OPERATOR(pg_catalog.=) 2 \gset
INSERT INTO pg_temp.hostile
    SELECT 4, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_set_bid_status(:h2, 'submitted', 'hostile') AS r;
INSERT INTO pg_temp.hostile
    SELECT 5, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_withdraw_bid(:h1, 'hostile') AS r;
INSERT INTO pg_temp.hostile
    SELECT 6, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_withdraw_posting('hostile', 'p2', 'hostile') AS r;
INSERT INTO pg_temp.hostile
    SELECT 7, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_withdraw_posting('hostile', 'p3') AS r;
INSERT INTO "Bid Guard".bidguard_bids (marketplace_id, posting_id) VALUES ('hostile', 'plain');
UPDATE "Bid Guard".bidguard_bids SET status = 'expired'
 WHERE marketplace_id OPERATOR(pg_catalog.=) 'hostile' AND posting_id OPERATOR(pg_catalog.=) 'plain';
INSERT INTO pg_temp.hostile
    SELECT 8, pg_catalog.to_jsonb(r) FROM "Bid Guard".bidguard_create_bid('hostile', 'plain') AS r;
-- The transition rule under the hostile path: out of a terminal status.
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
INSERT INTO pg_temp.hostile
    SELECT 9, pg_catalog.to_jsonb(pg_temp.sqlstate_of(
        pg_catalog.format($$SELECT * FROM "Bid Guard".bidguard_set_bid_status(%s, 'pending')$$, :h1)));
INSERT INTO pg_temp.hostile
    SELECT 10, pg_catalog.to_jsonb(pg_temp.sqlstate_of(
        $$INSERT INTO "Bid Guard".bidguard_bids (marketplace_id, posting_id) VALUES ('hostile', 'plain')$$));
RESET search_path;

SELECT results_eq(
    $$SELECT step, result - 'bid_id' - 'atomic_event_id' FROM pg_temp.hostile WHERE step <= 8 ORDER BY step$$,
    $$VALUES (1, '{"created": true, "status": "pending"}'::jsonb),
             (2, '{"created": true, "status": "pending"}'),
             (3, '{"created": false, "status": "pending"}'),
             (4, '{"changed": true, "old_status": "pending", "status": "submitted"}'),
             (5, '{"withdrawn": true, "status": "withdrawn"}'),
             (6, '{"withdrawn": true, "status": "withdrawn"}'),
             (7, '{"withdrawn": false, "status": null}'),
             (8, '{"created": true, "status": "pending"}')$$,
    'under the hostile search_path the functions return what they should');
SELECT isnt(:h1::bigint, :h2::bigint, 'two postings got two bids despite the decoy "="');
SELECT is((SELECT result->>'bid_id' FROM pg_temp.hostile WHERE step = 3), :'h1',
          'the second create_bid of p1 returned p1''s bid');
SELECT is((SELECT result #>> '{}' FROM pg_temp.hostile WHERE step = 9), '23514',
          'the transition rule holds under the hostile search_path');
SELECT is((SELECT result #>> '{}' FROM pg_temp.hostile WHERE step = 10), '23505',
          'the one-active-bid index holds under the hostile search_path');
SELECT results_eq(
    $$SELECT posting_id, status FROM "Bid Guard".bidguard_bids ORDER BY bid_id$$,
    $$VALUES ('p1'::text, 'withdrawn'::text), ('p2', 'withdrawn'), ('plain', 'expired'), ('plain', 'pending')$$,
    'the real bids table holds exactly the bids made, in the right statuses');
SELECT is_empty($$SELECT 1 FROM "Bid Guard".bidguard_bids
                  WHERE atomic_event_id = '00000000-0000-0000-0000-000000000000'
                     OR created_at < '2001-01-01' OR updated_at < '2001-01-01'$$,
                'no decoy gen_random_uuid() or clock_timestamp() was used for bids');
SELECT is_empty($$SELECT 1 FROM "Bid Guard".bidguard_events
                  WHERE event_id = '00000000-0000-0000-0000-000000000000'
                     OR occurred_at < '2001-01-01'$$,
                'no decoy was used for events');
SELECT is(count(*), 0::bigint, 'the decoy bids table in pg_temp is untouched') FROM pg_temp.bidguard_bids;
SELECT is(count(*), 0::bigint, 'the decoy events table in pg_temp is untouched') FROM pg_temp.bidguard_events;
SELECT is(count(*), 0::bigint, 'the decoy bids table in schema decoy is untouched') FROM decoy.bidguard_bids;
SELECT is(count(*), 0::bigint, 'the decoy events table in schema decoy is untouched') FROM decoy.bidguard_events;
SELECT is_empty(
    $$SELECT b.bid_id FROM "Bid Guard".bidguard_bids AS b
       WHERE NOT EXISTS (SELECT 1 FROM "Bid Guard".bidguard_events AS e
                          WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created'
                            AND e.bid_id = b.bid_id)$$,
    'every bid has its creation event in the real events table');
SELECT set_eq(
    $$SELECT bid_id, old_status, new_status, detail->>'reason' FROM "Bid Guard".bidguard_events
       WHERE kind <> 'bid_created'$$,
    format($$VALUES (%1$s::bigint, 'pending'::text, 'withdrawn'::text, 'hostile'::text),
                    (%2$s, 'pending', 'submitted', 'hostile'),
                    (%2$s, 'submitted', 'withdrawn', 'hostile'),
                    ((SELECT bid_id FROM "Bid Guard".bidguard_bids WHERE status = 'expired'), 'pending', 'expired', NULL)$$,
           :h1, :h2),
    'the status change events are exactly those made');
SELECT is(bid_data, '{"n": 1}'::jsonb, 'bid_data was stored as given')
  FROM "Bid Guard".bidguard_bids WHERE bid_id = :h1;

--
-- The same functions under search_path = pg_temp only, and with the
-- extension's schema last behind the decoys (unqualified calls).
--
SET LOCAL search_path = pg_temp;
CREATE TEMP TABLE only_temp AS
    SELECT r.* FROM "Bid Guard".bidguard_create_bid('hostile', 'p4') AS r;
SET LOCAL search_path = decoy, "Bid Guard", pg_catalog;
INSERT INTO pg_temp.hostile
    SELECT 11, pg_catalog.to_jsonb(r) FROM bidguard_create_bid('hostile', 'p4') AS r;
INSERT INTO pg_temp.hostile
    SELECT 12, pg_catalog.to_jsonb(r) FROM bidguard_withdraw_posting('hostile', 'p4') AS r;
RESET search_path;
SELECT ok(created, 'with search_path = pg_temp, create_bid creates') FROM only_temp;
SELECT is((SELECT (result->>'bid_id')::bigint FROM pg_temp.hostile WHERE step = 11),
          (SELECT bid_id FROM only_temp),
          'unqualified calls with the decoy schema first find the same bid');
SELECT is((SELECT result->>'withdrawn' FROM pg_temp.hostile WHERE step = 12), 'true',
          '... and withdraw it');
SELECT is(count(*), 0::bigint, 'the decoy tables are still untouched')
  FROM (SELECT 1 FROM decoy.bidguard_bids UNION ALL SELECT 1 FROM pg_temp.bidguard_bids
        UNION ALL SELECT 1 FROM decoy.bidguard_events UNION ALL SELECT 1 FROM pg_temp.bidguard_events) AS d;

--
-- bidguard_lock_key is the same function wherever the extension lives.
--
SELECT is("Bid Guard".bidguard_lock_key('ebay', 'posting-42'), -5991227199980312397::bigint,
          'bidguard_lock_key(''ebay'', ''posting-42'') has its documented value');

SELECT * FROM finish();
ROLLBACK;
