-- bidguard_citus 1.0: bidguard on a Citus cluster.
--
-- bidguard's guards are locks of the backend that runs them (src/placement.c):
-- they hold only when every path to a row takes them on the node that holds
-- the row.  bidguard_citus_distribute() makes that layout: bidguard_bids
-- distributed by posting_id, bidguard_bots and bidguard_trades by bot_id
-- (colocated), every function that changes them distributed with the same key
-- and force_delegation, so Citus runs each call on the worker that holds its
-- key, and its locks are taken there.  bidguard_events stays a plain table of
-- each node: a row's events are written on the row's node, in its transaction.
-- A call that Citus cannot delegate runs on a node without the key's shard and
-- is refused there (0A000) before it locks anything.
--
-- Run on the coordinator; Citus creates the extension on every worker.

\echo Use "CREATE EXTENSION bidguard_citus" to load this file. \quit

DO $check$
BEGIN
    IF pg_catalog.to_regclass('@extschema@.bidguard_bids') IS NULL THEN
        RAISE EXCEPTION 'bidguard_citus must be created in the schema of extension bidguard'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CREATE EXTENSION bidguard_citus SCHEMA <the schema of bidguard>;';
    END IF;
END
$check$;

--
-- The functions that find a row by its id, keyed by the distribution column
-- so that Citus can route them (C, src/bids.c and src/trades.c).  The plain
-- ones (bidguard_set_bid_status(bid_id, ...) and so on) are refused on
-- distributed tables, with a hint that names these.
--
CREATE FUNCTION @extschema@.bidguard_citus_set_bid_status(
    posting_id text,
    bid_id bigint,
    new_status text,
    reason text DEFAULT NULL)
RETURNS TABLE (bid_id bigint, changed boolean, old_status text, status text)
AS 'MODULE_PATHNAME', 'bidguard_citus_set_bid_status'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_citus_set_bid_status(text, bigint, text, text) IS
    'bidguard_set_bid_status on Citus: the bid''s posting_id routes the call';

CREATE FUNCTION @extschema@.bidguard_citus_withdraw_bid(
    posting_id text,
    bid_id bigint,
    reason text DEFAULT NULL)
RETURNS TABLE (bid_id bigint, withdrawn boolean, status text)
AS 'MODULE_PATHNAME', 'bidguard_citus_withdraw_bid'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_citus_withdraw_bid(text, bigint, text) IS
    'bidguard_withdraw_bid on Citus: the bid''s posting_id routes the call';

CREATE FUNCTION @extschema@.bidguard_citus_fill_trade(
    bot_id bigint,
    trade_id bigint,
    filled_at timestamptz DEFAULT NULL)
RETURNS TABLE (trade_id bigint, changed boolean, status text)
AS 'MODULE_PATHNAME', 'bidguard_citus_fill_trade'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_citus_fill_trade(bigint, bigint, timestamptz) IS
    'bidguard_fill_trade on Citus: the trade''s bot_id routes the call';

CREATE FUNCTION @extschema@.bidguard_citus_fail_trade(
    bot_id bigint,
    trade_id bigint,
    reason text DEFAULT NULL)
RETURNS TABLE (trade_id bigint, changed boolean, status text)
AS 'MODULE_PATHNAME', 'bidguard_citus_fail_trade'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.bidguard_citus_fail_trade(bigint, bigint, text) IS
    'bidguard_fail_trade on Citus: the trade''s bot_id routes the call';

--
-- bidguard_citus_prepare_node(): what each node needs before the tables are
-- distributed, run on every node by bidguard_citus_distribute() (and again
-- by hand on a node added later).  Idempotent.
--   * Citus wants every unique key of a distributed table to include its
--     distribution column: the primary keys become (posting_id, bid_id) and
--     (bot_id, trade_id), atomic_event_id is unique per key, and plain
--     indexes on bid_id and trade_id keep lookups by id fast.  On a worker
--     these are the empty shell tables that CREATE EXTENSION made.
--   * Node-unique ids: a node's sequences hand out [g << 48, (g + 1) << 48)
--     for its group id g (the coordinator, group 0, keeps [1, 2^48)), so
--     ids made on different workers never collide and tell where they were
--     made, as the PL/Proxy kit's do.
--
CREATE FUNCTION @extschema@.bidguard_citus_prepare_node()
RETURNS text
LANGUAGE plpgsql
SET citus.enable_ddl_propagation = off
AS $fn$
DECLARE
    g bigint := (SELECT l.groupid FROM pg_catalog.pg_dist_local_group AS l);
    lo bigint;
    hi bigint;
    seq pg_catalog.regclass;
    done text[] := '{}';
BEGIN
    IF pg_catalog.pg_get_constraintdef(
           (SELECT c.oid FROM pg_catalog.pg_constraint AS c
             WHERE c.conrelid OPERATOR(pg_catalog.=) '@extschema@.bidguard_bids'::pg_catalog.regclass
               AND c.conname OPERATOR(pg_catalog.=) 'bidguard_bids_pkey'))
       OPERATOR(pg_catalog.=) 'PRIMARY KEY (bid_id)' THEN
        ALTER TABLE @extschema@.bidguard_bids
            DROP CONSTRAINT bidguard_bids_pkey,
            ADD CONSTRAINT bidguard_bids_pkey PRIMARY KEY (posting_id, bid_id),
            DROP CONSTRAINT bidguard_bids_atomic_event_id_key,
            ADD CONSTRAINT bidguard_bids_atomic_event_id_key UNIQUE (posting_id, atomic_event_id);
        CREATE INDEX bidguard_bids_bid_id_idx ON @extschema@.bidguard_bids (bid_id);
        done := done OPERATOR(pg_catalog.||) 'bidguard_bids keys'::text;
    END IF;
    IF pg_catalog.pg_get_constraintdef(
           (SELECT c.oid FROM pg_catalog.pg_constraint AS c
             WHERE c.conrelid OPERATOR(pg_catalog.=) '@extschema@.bidguard_trades'::pg_catalog.regclass
               AND c.conname OPERATOR(pg_catalog.=) 'bidguard_trades_pkey'))
       OPERATOR(pg_catalog.=) 'PRIMARY KEY (trade_id)' THEN
        -- the foreign key comes back once both tables are distributed
        ALTER TABLE @extschema@.bidguard_trades
            DROP CONSTRAINT bidguard_trades_bot_id_fkey,
            DROP CONSTRAINT bidguard_trades_pkey,
            ADD CONSTRAINT bidguard_trades_pkey PRIMARY KEY (bot_id, trade_id),
            DROP CONSTRAINT bidguard_trades_atomic_event_id_key,
            ADD CONSTRAINT bidguard_trades_atomic_event_id_key UNIQUE (bot_id, atomic_event_id);
        CREATE INDEX bidguard_trades_trade_id_idx ON @extschema@.bidguard_trades (trade_id);
        done := done OPERATOR(pg_catalog.||) 'bidguard_trades keys'::text;
    END IF;

    lo := CASE WHEN g OPERATOR(pg_catalog.=) 0 THEN 1 ELSE g OPERATOR(pg_catalog.<<) 48 END;
    hi := ((g OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.<<) 48) OPERATOR(pg_catalog.-) 1;
    FOREACH seq IN ARRAY ARRAY['@extschema@.bidguard_bids_bid_id_seq',
                               '@extschema@.bidguard_trades_trade_id_seq']::pg_catalog.regclass[]
    LOOP
        IF (SELECT s.seqmax FROM pg_catalog.pg_sequence AS s
             WHERE s.seqrelid OPERATOR(pg_catalog.=) seq) OPERATOR(pg_catalog.<>) hi THEN
            IF g OPERATOR(pg_catalog.=) 0 THEN
                -- the coordinator's ids so far stay; they must lie below 2^48
                EXECUTE pg_catalog.format('ALTER SEQUENCE %s MAXVALUE %s', seq, hi);
            ELSE
                EXECUTE pg_catalog.format('ALTER SEQUENCE %s START %s MINVALUE %s MAXVALUE %s RESTART %s',
                                          seq, lo, lo, hi, lo);
            END IF;
            done := done OPERATOR(pg_catalog.||) pg_catalog.format('%s in [%s, %s]', seq, lo, hi);
        END IF;
    END LOOP;
    RETURN CASE WHEN pg_catalog.cardinality(done) OPERATOR(pg_catalog.=) 0 THEN 'ready already'
                ELSE pg_catalog.array_to_string(done, '; ') END;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_prepare_node() IS
    'readies this node''s bidguard tables for Citus: keys that include the distribution column, node-unique id ranges (run by bidguard_citus_distribute)';

--
-- bidguard_citus_stray_events(): this node's events whose bid or trade is
-- held by a shard on another node (after bidguard_citus_distribute() moved
-- the rows off the coordinator, or after Citus moved a shard), at most
-- batch_size of them, grouped by the Citus group that holds their row.
--
CREATE FUNCTION @extschema@.bidguard_citus_stray_events(batch_size integer DEFAULT 5000)
RETURNS TABLE (groupid integer, event_ids uuid[], events text)
LANGUAGE sql
AS $fn$
    SELECT s.groupid, pg_catalog.array_agg(s.event_id), pg_catalog.json_agg(s.ev)::text
      FROM (SELECT p.groupid, ev.event_id, ev
              FROM @extschema@.bidguard_events AS ev
             CROSS JOIN LATERAL (
                   SELECT CASE
                          WHEN ev.bid_id IS NOT NULL AND ev.posting_id IS NOT NULL THEN
                               pg_catalog.get_shard_id_for_distribution_column(
                                   '@extschema@.bidguard_bids'::pg_catalog.regclass, ev.posting_id)
                          WHEN ev.trade_id IS NOT NULL AND ev.bot_id IS NOT NULL THEN
                               pg_catalog.get_shard_id_for_distribution_column(
                                   '@extschema@.bidguard_trades'::pg_catalog.regclass, ev.bot_id)
                          END AS shardid) AS k
              JOIN pg_catalog.pg_dist_placement AS p ON p.shardid OPERATOR(pg_catalog.=) k.shardid
             WHERE p.groupid OPERATOR(pg_catalog.<>) (SELECT l.groupid FROM pg_catalog.pg_dist_local_group AS l)
             LIMIT batch_size) AS s
     GROUP BY s.groupid
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_stray_events(integer) IS
    'this node''s events whose row is on another node, by the Citus group that holds it (read by bidguard_citus_move_events)';

--
-- bidguard_citus_move_events(): a row's events belong on the row's node.
-- From the coordinator, for every node: its stray events are copied to the
-- node that holds their row (ON CONFLICT DO NOTHING), then deleted where
-- they were, in batches; a failure half-way loses nothing and a second call
-- finishes the move.  bidguard_citus_distribute() calls it; call it again
-- after moving shards (citus_rebalance_start(), citus_move_shard_placement()).
-- Events of neither a bid nor a trade stay where they are.
--
CREATE FUNCTION @extschema@.bidguard_citus_move_events(batch_size integer DEFAULT 5000,
                                                       coordinator_only boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    src record;
    dst record;
    b record;
    r record;
    moved bigint := 0;
    found_any boolean;
BEGIN
    IF (SELECT l.groupid FROM pg_catalog.pg_dist_local_group AS l) OPERATOR(pg_catalog.<>) 0 THEN
        RAISE EXCEPTION 'bidguard_citus_move_events() runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR src IN SELECT d.nodename, d.nodeport, d.groupid FROM pg_catalog.pg_dist_node AS d
                WHERE d.isactive AND d.noderole OPERATOR(pg_catalog.=) 'primary'
                  AND (NOT coordinator_only OR d.groupid OPERATOR(pg_catalog.=) 0)
                ORDER BY d.groupid
    LOOP
        LOOP
            -- the coordinator's own, in this transaction: it may be the one
            -- that distributed the tables, which other connections do not
            -- see yet
            IF src.groupid OPERATOR(pg_catalog.=) 0 THEN
                SELECT true AS success, pg_catalog.json_agg(s)::text AS result INTO r
                  FROM @extschema@.bidguard_citus_stray_events(batch_size) AS s;
            ELSE
                SELECT * INTO r FROM pg_catalog.master_run_on_worker(
                    ARRAY[src.nodename], ARRAY[src.nodeport],
                    ARRAY[pg_catalog.format(
                        'SELECT pg_catalog.json_agg(s) FROM @extschema@.bidguard_citus_stray_events(%s) AS s',
                        batch_size)],
                    false);
            END IF;
            IF NOT r.success THEN
                RAISE EXCEPTION 'could not read the stray events of %:%: %', src.nodename, src.nodeport, r.result;
            END IF;
            found_any := false;
            FOR b IN SELECT j.groupid, j.event_ids, j.events
                       FROM pg_catalog.json_to_recordset(NULLIF(r.result, '')::pg_catalog.json)
                            AS j(groupid integer, event_ids uuid[], events text)
            LOOP
                found_any := true;
                SELECT d.nodename, d.nodeport INTO dst FROM pg_catalog.pg_dist_node AS d
                 WHERE d.groupid OPERATOR(pg_catalog.=) b.groupid
                   AND d.noderole OPERATOR(pg_catalog.=) 'primary';
                SELECT * INTO r FROM pg_catalog.master_run_on_worker(
                    ARRAY[dst.nodename], ARRAY[dst.nodeport],
                    ARRAY[pg_catalog.format(
                        'INSERT INTO @extschema@.bidguard_events SELECT * FROM pg_catalog.json_populate_recordset(NULL::@extschema@.bidguard_events, %L) ON CONFLICT (event_id) DO NOTHING',
                        b.events)],
                    false);
                IF NOT r.success THEN
                    RAISE EXCEPTION 'could not copy bidguard events to %:%: %', dst.nodename, dst.nodeport, r.result;
                END IF;
                IF src.groupid OPERATOR(pg_catalog.=) 0 THEN
                    DELETE FROM @extschema@.bidguard_events AS ev
                     WHERE ev.event_id OPERATOR(pg_catalog.=) ANY (b.event_ids);
                    SELECT true AS success, '' AS result INTO r;
                ELSE
                    SELECT * INTO r FROM pg_catalog.master_run_on_worker(
                        ARRAY[src.nodename], ARRAY[src.nodeport],
                        ARRAY[pg_catalog.format(
                            'DELETE FROM @extschema@.bidguard_events WHERE event_id OPERATOR(pg_catalog.=) ANY (%L::uuid[])',
                            b.event_ids)],
                        false);
                END IF;
                IF NOT r.success THEN
                    RAISE EXCEPTION 'could not delete the moved events on %:%: %', src.nodename, src.nodeport, r.result;
                END IF;
                moved := moved OPERATOR(pg_catalog.+) pg_catalog.cardinality(b.event_ids);
            END LOOP;
            EXIT WHEN NOT found_any;
        END LOOP;
    END LOOP;
    RETURN moved;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_move_events(integer, boolean) IS
    'moves every node''s events to the node that holds their bid or trade (after distributing, or after moving shards); safe to run again';

--
-- bidguard_citus_distribute(shard_count): the supported layout, from a
-- single-node bidguard database whose coordinator has its workers added.
-- The data moves too: Citus copies the rows into the shards (each shard's
-- triggers see a restore, src/restore.c, so rows keep their times and
-- statuses and write no second event), then the events follow their rows.
--
CREATE FUNCTION @extschema@.bidguard_citus_distribute(shard_count integer DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql
AS $fn$
DECLARE
    r record;
    f text[];
BEGIN
    IF (SELECT l.groupid FROM pg_catalog.pg_dist_local_group AS l) OPERATOR(pg_catalog.<>) 0 THEN
        RAISE EXCEPTION 'bidguard_citus_distribute() runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition AS d
                WHERE d.logicalrelid OPERATOR(pg_catalog.=) ANY (ARRAY[
                      '@extschema@.bidguard_bids', '@extschema@.bidguard_bots',
                      '@extschema@.bidguard_trades']::pg_catalog.regclass[])) THEN
        RAISE EXCEPTION 'bidguard''s tables are distributed already'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node AS d
                    WHERE d.groupid OPERATOR(pg_catalog.<>) 0 AND d.isactive) THEN
        RAISE EXCEPTION 'the Citus cluster has no workers'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add them first with citus_add_node().';
    END IF;
    IF shard_count IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.shard_count', shard_count::text, true);
    END IF;

    RETURN NEXT 'coordinator: ' OPERATOR(pg_catalog.||) @extschema@.bidguard_citus_prepare_node();
    FOR r IN SELECT d.nodename, d.nodeport, w.success, w.result
               FROM pg_catalog.run_command_on_workers(
                        'SELECT @extschema@.bidguard_citus_prepare_node()') AS w
               JOIN pg_catalog.pg_dist_node AS d
                 ON d.nodename OPERATOR(pg_catalog.=) w.nodename
                AND d.nodeport OPERATOR(pg_catalog.=) w.nodeport
    LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'could not prepare worker %:%: %', r.nodename, r.nodeport, r.result;
        END IF;
        RETURN NEXT pg_catalog.format('worker %s:%s: %s', r.nodename, r.nodeport, r.result);
    END LOOP;

    PERFORM pg_catalog.create_distributed_table('@extschema@.bidguard_bids', 'posting_id');
    PERFORM pg_catalog.create_distributed_table('@extschema@.bidguard_bots', 'bot_id');
    PERFORM pg_catalog.create_distributed_table('@extschema@.bidguard_trades', 'bot_id',
                                                colocate_with => '@extschema@.bidguard_bots');
    -- checks that every trade copied has its bot (the copy's own triggers
    -- do not wait for them: src/restore.c)
    ALTER TABLE @extschema@.bidguard_trades
        ADD CONSTRAINT bidguard_trades_bot_id_fkey FOREIGN KEY (bot_id)
        REFERENCES @extschema@.bidguard_bots (bot_id);
    PERFORM pg_catalog.truncate_local_data_after_distributing_table('@extschema@.bidguard_trades');
    PERFORM pg_catalog.truncate_local_data_after_distributing_table('@extschema@.bidguard_bids');
    PERFORM pg_catalog.truncate_local_data_after_distributing_table('@extschema@.bidguard_bots');
    RETURN NEXT pg_catalog.format('distributed: bidguard_bids by posting_id, bidguard_bots and bidguard_trades by bot_id, %s shards each',
                                  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_shard AS s
                                    WHERE s.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.bidguard_bids'::pg_catalog.regclass));

    RETURN NEXT pg_catalog.format('events moved to their rows'' workers: %s',
                                  @extschema@.bidguard_citus_move_events(coordinator_only => true));

    -- Every function that changes the tables, routed by its key and always
    -- delegated, in and out of transaction blocks.
    FOREACH f SLICE 1 IN ARRAY ARRAY[
        ['@extschema@.bidguard_create_bid(text, text, jsonb)', '$2', '@extschema@.bidguard_bids'],
        ['@extschema@.bidguard_withdraw_posting(text, text, text)', '$2', '@extschema@.bidguard_bids'],
        ['@extschema@.bidguard_citus_set_bid_status(text, bigint, text, text)', '$1', '@extschema@.bidguard_bids'],
        ['@extschema@.bidguard_citus_withdraw_bid(text, bigint, text)', '$1', '@extschema@.bidguard_bids'],
        ['@extschema@.bidguard_set_cooldown(bigint, interval)', '$1', '@extschema@.bidguard_bots'],
        ['@extschema@.bidguard_try_trade(bigint, jsonb, interval)', '$1', '@extschema@.bidguard_bots'],
        ['@extschema@.bidguard_citus_fill_trade(bigint, bigint, timestamptz)', '$1', '@extschema@.bidguard_bots'],
        ['@extschema@.bidguard_citus_fail_trade(bigint, bigint, text)', '$1', '@extschema@.bidguard_bots']]
    LOOP
        PERFORM pg_catalog.create_distributed_function(f[1]::pg_catalog.regprocedure, f[2],
                                                       colocate_with => f[3],
                                                       force_delegation => true);
        RETURN NEXT pg_catalog.format('delegated: %s by %s', f[1]::pg_catalog.regprocedure, f[2]);
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_distribute(integer) IS
    'distributes bidguard''s tables (bids by posting_id; bots and trades by bot_id, colocated) and functions (force_delegation), moving existing rows and events';

--
-- Invariants, per node and cluster-wide (SPEC 9 on Citus).  A node checks
-- the shards it holds, against its own events: no posting with two active
-- bids, no trade admitted within its bot's cooldown of an earlier counting
-- trade (effective time as of the admission), every bid and trade with its
-- creation event on its node, and no row in a shard that does not hold its
-- key (so no key on two shards).
--
CREATE FUNCTION @extschema@.bidguard_citus_node_invariants(
    OUT check_name text, OUT violations bigint)
RETURNS SETOF record
LANGUAGE plpgsql
AS $fn$
DECLARE
    s record;
    counts pg_catalog.jsonb := '{}';
    bad bigint;
    r1 bigint;
    r2 bigint;
    r3 bigint;
    k text;
BEGIN
    FOR s IN
        SELECT d.logicalrelid::pg_catalog.regclass AS tbl, c.relname, d.shardid,
               pg_catalog.format('%I.%I', n.nspname, c.relname OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) d.shardid) AS shard,
               (SELECT pg_catalog.format('%I.%I', n.nspname, 'bidguard_bots_' OPERATOR(pg_catalog.||) b.shardid)
                  FROM pg_catalog.pg_dist_shard AS b
                 WHERE b.logicalrelid OPERATOR(pg_catalog.=) '@extschema@.bidguard_bots'::pg_catalog.regclass
                   AND b.shardminvalue OPERATOR(pg_catalog.=) d.shardminvalue) AS bots
          FROM pg_catalog.pg_dist_shard AS d
          JOIN pg_catalog.pg_dist_placement AS p ON p.shardid OPERATOR(pg_catalog.=) d.shardid
          JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) d.logicalrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE d.logicalrelid OPERATOR(pg_catalog.=) ANY (ARRAY[
               '@extschema@.bidguard_bids', '@extschema@.bidguard_bots',
               '@extschema@.bidguard_trades']::pg_catalog.regclass[])
           AND p.groupid OPERATOR(pg_catalog.=) (SELECT l.groupid FROM pg_catalog.pg_dist_local_group AS l)
    LOOP
        IF s.relname OPERATOR(pg_catalog.=) 'bidguard_bids' THEN
            EXECUTE pg_catalog.format($q$
                SELECT (SELECT pg_catalog.count(*) FROM (
                            SELECT 1 FROM %1$s AS b
                             WHERE b.status OPERATOR(pg_catalog.=) ANY ('{pending,submitted}'::text[])
                             GROUP BY b.marketplace_id, b.posting_id
                            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1) AS d),
                       (SELECT pg_catalog.count(*) FROM %1$s AS b
                         WHERE pg_catalog.get_shard_id_for_distribution_column(%2$L, b.posting_id)
                               OPERATOR(pg_catalog.<>) %3$s),
                       (SELECT pg_catalog.count(*) FROM %1$s AS b
                         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.bidguard_events AS e
                                            WHERE e.event_id OPERATOR(pg_catalog.=) b.atomic_event_id
                                              AND e.bid_id OPERATOR(pg_catalog.=) b.bid_id))$q$,
                s.shard, s.tbl, s.shardid) INTO r1, r2, r3;
            counts := counts
                OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
                    'duplicate_active_bids', COALESCE((counts->>'duplicate_active_bids')::bigint, 0) OPERATOR(pg_catalog.+) r1,
                    'bids_on_wrong_shard', COALESCE((counts->>'bids_on_wrong_shard')::bigint, 0) OPERATOR(pg_catalog.+) r2,
                    'bids_without_event', COALESCE((counts->>'bids_without_event')::bigint, 0) OPERATOR(pg_catalog.+) r3);
        ELSIF s.relname OPERATOR(pg_catalog.=) 'bidguard_bots' THEN
            EXECUTE pg_catalog.format($q$
                SELECT pg_catalog.count(*) FROM %1$s AS b
                 WHERE pg_catalog.get_shard_id_for_distribution_column(%2$L, b.bot_id)
                       OPERATOR(pg_catalog.<>) %3$s$q$,
                s.shard, s.tbl, s.shardid) INTO bad;
            counts := counts
                OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
                    'bots_on_wrong_shard', COALESCE((counts->>'bots_on_wrong_shard')::bigint, 0) OPERATOR(pg_catalog.+) bad);
        ELSE
            EXECUTE pg_catalog.format($q$
                SELECT (SELECT pg_catalog.count(*) FROM %1$s AS t
                          JOIN %4$s AS bot ON bot.bot_id OPERATOR(pg_catalog.=) t.bot_id
                         CROSS JOIN LATERAL (SELECT COALESCE(t.cooldown, bot.cooldown) AS cd) AS w
                         WHERE t.status OPERATOR(pg_catalog.<>) 'failed'
                           AND EXISTS (
                               SELECT 1 FROM %1$s AS p
                                WHERE p.bot_id OPERATOR(pg_catalog.=) t.bot_id
                                  AND p.status OPERATOR(pg_catalog.<>) 'failed'
                                  AND (p.created_at, p.trade_id) OPERATOR(pg_catalog.<) (t.created_at, t.trade_id)
                                  AND COALESCE(p.filled_at, p.created_at) OPERATOR(pg_catalog.>) (t.created_at OPERATOR(pg_catalog.-) w.cd)
                                  AND CASE WHEN p.filled_at OPERATOR(pg_catalog.<=) t.created_at
                                           THEN p.filled_at ELSE p.created_at END
                                      OPERATOR(pg_catalog.>) (t.created_at OPERATOR(pg_catalog.-) w.cd))),
                       (SELECT pg_catalog.count(*) FROM %1$s AS t
                         WHERE pg_catalog.get_shard_id_for_distribution_column(%2$L, t.bot_id)
                               OPERATOR(pg_catalog.<>) %3$s),
                       (SELECT pg_catalog.count(*) FROM %1$s AS t
                         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.bidguard_events AS e
                                            WHERE e.event_id OPERATOR(pg_catalog.=) t.atomic_event_id
                                              AND e.trade_id OPERATOR(pg_catalog.=) t.trade_id))$q$,
                s.shard, s.tbl, s.shardid, s.bots) INTO r1, r2, r3;
            counts := counts
                OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
                    'cooldown_violations', COALESCE((counts->>'cooldown_violations')::bigint, 0) OPERATOR(pg_catalog.+) r1,
                    'trades_on_wrong_shard', COALESCE((counts->>'trades_on_wrong_shard')::bigint, 0) OPERATOR(pg_catalog.+) r2,
                    'trades_without_event', COALESCE((counts->>'trades_without_event')::bigint, 0) OPERATOR(pg_catalog.+) r3);
        END IF;
    END LOOP;
    FOREACH k IN ARRAY ARRAY['duplicate_active_bids', 'cooldown_violations', 'bids_without_event',
                             'trades_without_event', 'bids_on_wrong_shard', 'bots_on_wrong_shard',
                             'trades_on_wrong_shard']
    LOOP
        check_name := k;
        violations := COALESCE((counts->>k)::bigint, 0);
        RETURN NEXT;
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_node_invariants() IS
    'SPEC 9 invariants over the shards this node holds and its events: each check with its number of violations (0 on guarded data)';

CREATE FUNCTION @extschema@.bidguard_citus_invariants(
    OUT node text, OUT check_name text, OUT violations bigint)
RETURNS SETOF record
LANGUAGE plpgsql
AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT pg_catalog.format('%s:%s', d.nodename, d.nodeport) AS node, a.success, a.result
               FROM pg_catalog.run_command_on_all_nodes(
                        'SELECT pg_catalog.json_agg(i) FROM @extschema@.bidguard_citus_node_invariants() AS i') AS a
               JOIN pg_catalog.pg_dist_node AS d ON d.nodeid OPERATOR(pg_catalog.=) a.nodeid
              ORDER BY d.groupid
    LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'could not check node %: %', r.node, r.result;
        END IF;
        RETURN QUERY SELECT r.node, j.check_name, j.violations
                       FROM pg_catalog.json_to_recordset(r.result::pg_catalog.json)
                            AS j(check_name text, violations bigint);
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_invariants() IS
    'bidguard_citus_node_invariants() of every node of the Citus cluster';

--
-- The audit trail and the statistics of every node, from the coordinator.
--
CREATE FUNCTION @extschema@.bidguard_citus_events(since timestamptz DEFAULT '-infinity')
RETURNS SETOF @extschema@.bidguard_events
LANGUAGE plpgsql
AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.nodeid, a.success, a.result
               FROM pg_catalog.run_command_on_all_nodes(pg_catalog.format(
                        'SELECT pg_catalog.json_agg(e) FROM @extschema@.bidguard_events AS e WHERE e.occurred_at OPERATOR(pg_catalog.>=) %L',
                        since)) AS a
    LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'could not read the events of node %: %', r.nodeid, r.result;
        END IF;
        IF r.result IS NOT NULL AND r.result OPERATOR(pg_catalog.<>) '' THEN
            RETURN QUERY SELECT * FROM pg_catalog.json_populate_recordset(
                                           NULL::@extschema@.bidguard_events, r.result::pg_catalog.json);
        END IF;
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_events(timestamptz) IS
    'bidguard_events of every node of the Citus cluster (each row''s events are on its node)';

CREATE FUNCTION @extschema@.bidguard_citus_stats()
RETURNS TABLE (node text, bids_created bigint, bids_deduplicated bigint, bids_withdrawn bigint,
               transitions_rejected bigint, trades_executed bigint,
               trades_rejected_cooldown bigint, trades_rejected_busy bigint,
               lock_acquired bigint, lock_waited bigint, lock_timeouts bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT pg_catalog.format('%s:%s', d.nodename, d.nodeport) AS node, a.success, a.result
               FROM pg_catalog.run_command_on_all_nodes(
                        'SELECT pg_catalog.row_to_json(s) FROM @extschema@.bidguard_stats AS s') AS a
               JOIN pg_catalog.pg_dist_node AS d ON d.nodeid OPERATOR(pg_catalog.=) a.nodeid
              ORDER BY d.groupid
    LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'could not read the statistics of node %: %', r.node, r.result;
        END IF;
        RETURN QUERY SELECT r.node, j.bids_created, j.bids_deduplicated, j.bids_withdrawn,
                            j.transitions_rejected, j.trades_executed, j.trades_rejected_cooldown,
                            j.trades_rejected_busy, j.lock_acquired, j.lock_waited, j.lock_timeouts
                       FROM pg_catalog.json_to_record(r.result::pg_catalog.json)
                            AS j(bids_created bigint, bids_deduplicated bigint, bids_withdrawn bigint,
                                 transitions_rejected bigint, trades_executed bigint,
                                 trades_rejected_cooldown bigint, trades_rejected_busy bigint,
                                 lock_acquired bigint, lock_waited bigint, lock_timeouts bigint);
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION @extschema@.bidguard_citus_stats() IS
    'bidguard_stats of every node of the Citus cluster (each node counts what its own guards did)';

REVOKE ALL ON FUNCTION @extschema@.bidguard_citus_prepare_node() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.bidguard_citus_move_events(integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.bidguard_citus_stray_events(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.bidguard_citus_distribute(integer) FROM PUBLIC;
