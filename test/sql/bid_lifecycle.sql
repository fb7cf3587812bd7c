--
-- Bid status transitions: bidguard_set_bid_status, bidguard_withdraw_bid,
-- bidguard_withdraw_posting
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

CREATE TEMP TABLE ids AS
SELECT (bidguard_create_bid('lc', 'a')).bid_id AS a,
       (bidguard_create_bid('lc', 'b')).bid_id AS b,
       (bidguard_create_bid('lc', 'c')).bid_id AS c;

-- pending -> submitted -> won
SELECT changed, old_status, status FROM bidguard_set_bid_status((SELECT a FROM ids), 'submitted', 'sent to marketplace');
SELECT status, status_reason FROM bidguard_bids WHERE bid_id = (SELECT a FROM ids);
SELECT changed, old_status, status FROM bidguard_set_bid_status((SELECT a FROM ids), 'won');
-- status_reason follows the latest change (NULL clears it)
SELECT status, status_reason FROM bidguard_bids WHERE bid_id = (SELECT a FROM ids);

-- setting the current status again is a no-op, also on a terminal bid
SELECT changed, old_status, status FROM bidguard_set_bid_status((SELECT a FROM ids), 'won');

-- every allowed transition
CREATE FUNCTION try_transition(from_s text, to_s text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    st text;
BEGIN
    -- build a bid in state from_s on a fresh posting
    id := (bidguard_create_bid('tr', from_s || '->' || to_s)).bid_id;
    IF from_s IN ('submitted', 'won', 'lost') THEN
        PERFORM bidguard_set_bid_status(id, 'submitted');
    END IF;
    IF from_s NOT IN ('pending', 'submitted') THEN
        PERFORM bidguard_set_bid_status(id, from_s);
    END IF;
    BEGIN
        SELECT s.status INTO st FROM bidguard_set_bid_status(id, to_s) AS s;
        RETURN 'ok';
    EXCEPTION WHEN check_violation THEN
        RETURN 'rejected';
    END;
END
$$;

SELECT f.s AS "from", t.s AS "to", try_transition(f.s, t.s) AS result
  FROM unnest('{pending,submitted,won,lost,withdrawn,expired,failed}'::text[]) WITH ORDINALITY AS f(s, i),
       unnest('{pending,submitted,won,lost,withdrawn,expired,failed}'::text[]) WITH ORDINALITY AS t(s, j)
 WHERE f.s <> t.s
 ORDER BY f.i, t.j;

-- disallowed transitions (error), with the constraint name drivers see
SELECT * FROM bidguard_set_bid_status((SELECT a FROM ids), 'lost');
SELECT * FROM bidguard_set_bid_status((SELECT b FROM ids), 'won');
SELECT pg_temp.err(format('SELECT bidguard_set_bid_status(%s, %L)', (SELECT a FROM ids), 'lost'));
-- the failed calls changed nothing
SELECT status FROM bidguard_bids WHERE bid_id IN ((SELECT a FROM ids), (SELECT b FROM ids)) ORDER BY bid_id;

-- withdraw: true only for the call that withdrew
SELECT withdrawn, status FROM bidguard_withdraw_bid((SELECT b FROM ids), 'price moved');
SELECT withdrawn, status FROM bidguard_withdraw_bid((SELECT b FROM ids));
SELECT status, status_reason FROM bidguard_bids WHERE bid_id = (SELECT b FROM ids);
-- withdrawing a terminal bid is not an error and changes nothing
SELECT withdrawn, status FROM bidguard_withdraw_bid((SELECT a FROM ids));
SELECT status FROM bidguard_bids WHERE bid_id = (SELECT a FROM ids);

-- withdraw a submitted bid
SELECT changed FROM bidguard_set_bid_status((SELECT c FROM ids), 'submitted');
SELECT withdrawn, status FROM bidguard_withdraw_bid((SELECT c FROM ids));

-- withdraw_posting: the posting's active bid, or nothing
SELECT created FROM bidguard_create_bid('lc', 'd');
SELECT bid_id = (SELECT bid_id FROM bidguard_bids WHERE posting_id = 'd' AND marketplace_id = 'lc') AS right_bid,
       withdrawn, status
  FROM bidguard_withdraw_posting('lc', 'd', 'posting closed');
SELECT bid_id, withdrawn, status FROM bidguard_withdraw_posting('lc', 'd');
SELECT bid_id, withdrawn, status FROM bidguard_withdraw_posting('lc', 'never-seen');

-- unknown bids (error)
SELECT * FROM bidguard_set_bid_status(-1, 'won');
SELECT pg_temp.err('SELECT bidguard_set_bid_status(-1, ''won'')');
SELECT * FROM bidguard_withdraw_bid(9999999);

-- NULL required arguments (error)
SELECT * FROM bidguard_set_bid_status(NULL, 'won');
SELECT * FROM bidguard_set_bid_status((SELECT a FROM ids), NULL);
SELECT * FROM bidguard_withdraw_bid(NULL);
SELECT * FROM bidguard_withdraw_posting(NULL, 'p');
SELECT * FROM bidguard_withdraw_posting('m', NULL);

-- unknown status, empty and over-long ids (error)
SELECT * FROM bidguard_set_bid_status((SELECT a FROM ids), 'cancelled');
SELECT * FROM bidguard_set_bid_status((SELECT a FROM ids), '');
SELECT * FROM bidguard_set_bid_status((SELECT a FROM ids), 'WON');
SELECT * FROM bidguard_withdraw_posting('', 'p');
SELECT * FROM bidguard_withdraw_posting('m', repeat('p', 257));

-- read-only transactions (error)
BEGIN READ ONLY;
SELECT * FROM bidguard_withdraw_bid((SELECT b FROM ids));
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM bidguard_set_bid_status((SELECT b FROM ids), 'won');
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM bidguard_withdraw_posting('lc', 'a');
ROLLBACK;

DROP FUNCTION try_transition(text, text);

SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (25089, 25090, 25091);
