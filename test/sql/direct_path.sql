--
-- The direct path (src/direct.c): bidguard_create_bid(s) and
-- bidguard_try_trade insert without an executor per row when that is what
-- SQL would do, and through SQL when it is not.  Either way the result is
-- SQL's: users' triggers fire, users' constraints and indexes hold, and a
-- change to the tables is seen by the next call.
--
-- In a database of its own, so that the bids and ids it makes do not
-- change what the other tests see.
\set regress_db :DBNAME
CREATE DATABASE regress_bidguard_direct_path;
\c regress_bidguard_direct_path
SET client_min_messages = warning;
CREATE EXTENSION bidguard;
RESET client_min_messages;

-- Two calls for one posting in one statement: the second sees the first.
SELECT g, c.created, c.status
  FROM generate_series(1, 2) AS g,
       LATERAL bidguard_create_bid('d', CASE WHEN g > 0 THEN 'same' END) AS c;

-- A CHECK constraint of the user's, added after the first calls: the next
-- call obeys it (the cached constraints are rebuilt), 23514 naming it.
ALTER TABLE bidguard_bids ADD CONSTRAINT user_no_forbidden
    CHECK (posting_id NOT LIKE 'forbidden%');
DO $$
DECLARE
    state text;
    cname text;
BEGIN
    PERFORM bidguard_create_bid('d', 'forbidden-1');
    RAISE NOTICE 'created';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, cname = CONSTRAINT_NAME;
    RAISE NOTICE 'refused: % %', state, cname;
END $$;
SELECT created FROM bidguard_create_bid('d', 'allowed-1');
ALTER TABLE bidguard_bids DROP CONSTRAINT user_no_forbidden;
SELECT created FROM bidguard_create_bid('d', 'forbidden-1');

-- A user's CHECK function that calls bidguard itself, in and after an
-- EXCEPTION block, while the outer bid is being inserted: the nested calls
-- go through SQL, the subtransaction's abort does not free the outer
-- insert's state, and every bid gets its index entries and its event.
CREATE FUNCTION user_nested_check(p text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p = 'nest-outer' THEN
        BEGIN
            PERFORM bidguard_create_bid('d', 'nest-rolled-back');
            PERFORM 1 / 0;
        EXCEPTION WHEN division_by_zero THEN
            NULL;
        END;
        PERFORM bidguard_create_bid('d', 'nest-inner');
    END IF;
    RETURN true;
END $$;
ALTER TABLE bidguard_bids ADD CONSTRAINT user_nested CHECK (user_nested_check(posting_id));
SELECT created FROM bidguard_create_bid('d', 'nest-outer');
ALTER TABLE bidguard_bids DROP CONSTRAINT user_nested;
DROP FUNCTION user_nested_check(text);
SET enable_seqscan = off;
SELECT posting_id, status FROM bidguard_bids
 WHERE marketplace_id = 'd' AND posting_id LIKE 'nest-%' AND status IN ('pending', 'submitted')
 ORDER BY posting_id;
RESET enable_seqscan;
SELECT posting_id, count(*) AS events FROM bidguard_events
 WHERE posting_id LIKE 'nest-%' GROUP BY posting_id ORDER BY posting_id;

-- A unique index of the user's, created after the first calls: it is
-- maintained and enforced (23505).
CREATE UNIQUE INDEX user_bid_ref ON bidguard_bids ((bid_data ->> 'ref'));
SELECT created FROM bidguard_create_bid('d', 'ref-1', '{"ref": "r1"}');
SELECT created FROM bidguard_create_bid('d', 'ref-2', '{"ref": "r1"}');
SELECT count(*) FROM bidguard_bids WHERE bid_data ->> 'ref' = 'r1';
DROP INDEX user_bid_ref;

-- A trigger of the user's on bidguard_bids: bidguard goes through SQL, and
-- the trigger fires once per created bid, by the function and the batch.
CREATE TABLE user_seen (tbl text, id bigint, via text);
CREATE FUNCTION user_seen_bid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_seen VALUES (TG_TABLE_NAME, NEW.bid_id, TG_WHEN || ' ' || TG_OP);
    RETURN NEW;
END $$;
CREATE TRIGGER user_seen_bid AFTER INSERT ON bidguard_bids
    FOR EACH ROW EXECUTE FUNCTION user_seen_bid();
SELECT created FROM bidguard_create_bid('d', 'trig-1');
SELECT ordinality, created FROM bidguard_create_bids('d', ARRAY['trig-1', 'trig-2', 'trig-3']);
SELECT s.via, b.posting_id FROM user_seen AS s JOIN bidguard_bids AS b ON b.bid_id = s.id
 ORDER BY b.posting_id;
DROP TRIGGER user_seen_bid ON bidguard_bids;
SELECT created FROM bidguard_create_bid('d', 'trig-4');
SELECT count(*) AS seen_after_drop FROM user_seen;

-- A trigger of the user's on the audit trail: it fires for the events of
-- the direct path too.
CREATE FUNCTION user_seen_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_seen VALUES (TG_TABLE_NAME, coalesce(NEW.bid_id, NEW.trade_id), NEW.kind);
    RETURN NEW;
END $$;
CREATE TRIGGER user_seen_event AFTER INSERT ON bidguard_events
    FOR EACH ROW EXECUTE FUNCTION user_seen_event();
TRUNCATE user_seen;
SELECT created FROM bidguard_create_bid('d', 'ev-1');
SELECT bidguard_set_cooldown(901, '1 minute');
SELECT executed, reason FROM bidguard_try_trade(901);
SELECT tbl, via FROM user_seen ORDER BY via;
DROP TRIGGER user_seen_event ON bidguard_events;

-- A trigger of the user's on bidguard_trades fires for try_trade's trade.
CREATE FUNCTION user_seen_trade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_seen VALUES (TG_TABLE_NAME, NEW.trade_id, NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER user_seen_trade AFTER INSERT ON bidguard_trades
    FOR EACH ROW EXECUTE FUNCTION user_seen_trade();
TRUNCATE user_seen;
SELECT bidguard_set_cooldown(902, '1 minute');
SELECT executed, reason FROM bidguard_try_trade(902);
SELECT tbl, via FROM user_seen;
DROP TRIGGER user_seen_trade ON bidguard_trades;

-- Every row either path wrote has its creation event, with the row's id,
-- time and this backend.
SELECT count(*) AS bids,
       count(*) FILTER (WHERE e.event_id = b.atomic_event_id AND e.occurred_at = b.created_at
                          AND e.new_status = 'pending' AND e.detail = '{}'
                          AND e.backend_pid = pg_backend_pid()) AS with_their_event
  FROM bidguard_bids AS b
  LEFT JOIN bidguard_events AS e ON e.bid_id = b.bid_id AND e.kind = 'bid_created'
 WHERE b.marketplace_id = 'd';
SELECT count(*) AS trades,
       count(*) FILTER (WHERE e.event_id = t.atomic_event_id AND e.occurred_at = t.created_at
                          AND e.bot_id = t.bot_id AND e.new_status = 'open') AS with_their_event
  FROM bidguard_trades AS t
  LEFT JOIN bidguard_events AS e ON e.trade_id = t.trade_id AND e.kind = 'trade_executed'
 WHERE t.bot_id IN (901, 902);

-- With the audit trigger disabled, as with SQL: the bid, and no event.
ALTER TABLE bidguard_bids DISABLE TRIGGER bidguard_bids_audit_insert;
SELECT created FROM bidguard_create_bid('d', 'unaudited');
ALTER TABLE bidguard_bids ENABLE TRIGGER bidguard_bids_audit_insert;
SELECT count(*) AS events FROM bidguard_events WHERE posting_id = 'unaudited';
SELECT created FROM bidguard_create_bid('d', 'audited-again');
SELECT count(*) AS events FROM bidguard_events WHERE posting_id = 'audited-again';

-- A rolled-back creation leaves neither the bid nor its event.
BEGIN;
SELECT created FROM bidguard_create_bid('d', 'rolled-back');
ROLLBACK;
SELECT count(*) FROM bidguard_bids WHERE posting_id = 'rolled-back';
SELECT count(*) FROM bidguard_events WHERE posting_id = 'rolled-back';

-- The trade's foreign key holds on the direct path: its bot cannot go
-- while the trade is there.
DELETE FROM bidguard_bots WHERE bot_id = 901;

DROP TABLE user_seen;
DROP FUNCTION user_seen_bid(), user_seen_event(), user_seen_trade();

\c :regress_db
DROP DATABASE regress_bidguard_direct_path;
