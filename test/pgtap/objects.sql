-- test/pgtap/objects.sql
--	  The objects of the bid contract (SPEC §1, §2, §4): tables, columns and
--	  their types, keys, the partial unique index, the functions' exact
--	  signatures and result columns, bidguard_lock_key's documented
--	  algorithm, and how the extension is installed (not relocatable, every
--	  object in its schema, user data registered for pg_dump).
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS bidguard;

SELECT plan(98);

-- The extension's schema, for the schema-qualified assertions below.
SELECT n.nspname AS bg_schema
  FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'bidguard' \gset

--
-- The extension itself (§1).
--
SELECT has_extension('bidguard', 'extension bidguard is installed');
SELECT is(e.extversion, a.default_version, 'extension version is the control file''s default_version')
  FROM pg_extension AS e JOIN pg_available_extensions AS a ON a.name = e.extname
 WHERE e.extname = 'bidguard';
SELECT is(extrelocatable, false, 'extension is not relocatable')
  FROM pg_extension WHERE extname = 'bidguard';
SELECT is_empty(
    $$SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_depend AS d
        JOIN pg_extension AS e ON e.oid = d.refobjid
        LEFT JOIN pg_class AS c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
        LEFT JOIN pg_proc AS p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
        LEFT JOIN pg_type AS t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
       WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
         AND e.extname = 'bidguard'
         AND coalesce(c.relnamespace, p.pronamespace, t.typnamespace, e.extnamespace)
             <> e.extnamespace$$,
    'every relation, function and type of the extension is in its schema');
SELECT ok(
    (SELECT array['bidguard_bids', 'bidguard_events']::text[]
            <@ array_agg(c.relname::text)
       FROM pg_extension AS e, unnest(e.extconfig) AS x(oid)
       JOIN pg_class AS c ON c.oid = x.oid
      WHERE e.extname = 'bidguard'),
    'bidguard_bids and bidguard_events are registered with pg_extension_config_dump');
SELECT ok(
    (SELECT pg_get_serial_sequence(format('%I.bidguard_bids', :'bg_schema'), 'bid_id')::regclass
            = ANY (e.extconfig)
       FROM pg_extension AS e WHERE e.extname = 'bidguard'),
    'the bid_id sequence is registered too, so that its position survives pg_dump');

--
-- bidguard_bids (§2).
--
SELECT has_table(:'bg_schema', 'bidguard_bids', 'table bidguard_bids exists');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'bid_id', 'bigint', 'bidguard_bids.bid_id is bigint');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'marketplace_id', 'text', 'bidguard_bids.marketplace_id is text');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'posting_id', 'text', 'bidguard_bids.posting_id is text');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'status', 'text', 'bidguard_bids.status is text');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'bid_data', 'jsonb', 'bidguard_bids.bid_data is jsonb');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'status_reason', 'text', 'bidguard_bids.status_reason is text');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'atomic_event_id', 'uuid', 'bidguard_bids.atomic_event_id is uuid');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'created_at', 'timestamp with time zone', 'bidguard_bids.created_at is timestamptz');
SELECT col_type_is(:'bg_schema', 'bidguard_bids', 'updated_at', 'timestamp with time zone', 'bidguard_bids.updated_at is timestamptz');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'marketplace_id', 'bidguard_bids.marketplace_id is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'posting_id', 'bidguard_bids.posting_id is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'status', 'bidguard_bids.status is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'bid_data', 'bidguard_bids.bid_data is not null');
SELECT col_is_null(:'bg_schema', 'bidguard_bids', 'status_reason', 'bidguard_bids.status_reason is nullable');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'atomic_event_id', 'bidguard_bids.atomic_event_id is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'created_at', 'bidguard_bids.created_at is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_bids', 'updated_at', 'bidguard_bids.updated_at is not null');
SELECT col_has_default(:'bg_schema', 'bidguard_bids', 'bid_data', 'bidguard_bids.bid_data has a default');
SELECT isnt(a.attidentity, '', 'bidguard_bids.bid_id is an identity column')
  FROM pg_attribute AS a
 WHERE a.attrelid = format('%I.bidguard_bids', :'bg_schema')::regclass AND a.attname = 'bid_id';
SELECT has_pk(:'bg_schema', 'bidguard_bids', 'bidguard_bids has a primary key');
SELECT col_is_pk(:'bg_schema', 'bidguard_bids', ARRAY['bid_id'], 'bid_id is the primary key of bidguard_bids');
SELECT col_is_unique(:'bg_schema', 'bidguard_bids', ARRAY['atomic_event_id'], 'bidguard_bids.atomic_event_id is unique');

-- The partial unique index, by its contract name.
SELECT has_index(:'bg_schema', 'bidguard_bids', 'bidguard_bids_one_active',
                 ARRAY['marketplace_id', 'posting_id'],
                 'index bidguard_bids_one_active is on (marketplace_id, posting_id)');
SELECT index_is_unique(:'bg_schema', 'bidguard_bids', 'bidguard_bids_one_active',
                       'bidguard_bids_one_active is unique');
SELECT ok(i.indpred IS NOT NULL, 'bidguard_bids_one_active is partial')
  FROM pg_index AS i
 WHERE i.indexrelid = format('%I.bidguard_bids_one_active', :'bg_schema')::regclass;
SELECT ok(i.indisvalid AND i.indisready AND i.indimmediate,
          'bidguard_bids_one_active is valid, ready and not deferrable')
  FROM pg_index AS i
 WHERE i.indexrelid = format('%I.bidguard_bids_one_active', :'bg_schema')::regclass;

--
-- bidguard_events (§2).
--
SELECT has_table(:'bg_schema', 'bidguard_events', 'table bidguard_events exists');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'event_id', 'uuid', 'bidguard_events.event_id is uuid');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'occurred_at', 'timestamp with time zone', 'bidguard_events.occurred_at is timestamptz');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'kind', 'text', 'bidguard_events.kind is text');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'bid_id', 'bigint', 'bidguard_events.bid_id is bigint');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'trade_id', 'bigint', 'bidguard_events.trade_id is bigint');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'bot_id', 'bigint', 'bidguard_events.bot_id is bigint');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'marketplace_id', 'text', 'bidguard_events.marketplace_id is text');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'posting_id', 'text', 'bidguard_events.posting_id is text');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'old_status', 'text', 'bidguard_events.old_status is text');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'new_status', 'text', 'bidguard_events.new_status is text');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'backend_pid', 'integer', 'bidguard_events.backend_pid is integer');
SELECT col_type_is(:'bg_schema', 'bidguard_events', 'detail', 'jsonb', 'bidguard_events.detail is jsonb');
SELECT has_pk(:'bg_schema', 'bidguard_events', 'bidguard_events has a primary key');
SELECT col_is_pk(:'bg_schema', 'bidguard_events', ARRAY['event_id'], 'event_id is the primary key of bidguard_events');
SELECT col_not_null(:'bg_schema', 'bidguard_events', 'occurred_at', 'bidguard_events.occurred_at is not null');
SELECT col_not_null(:'bg_schema', 'bidguard_events', 'kind', 'bidguard_events.kind is not null');

--
-- Functions (§4): exact argument lists (names, types, defaults) and result
-- columns.
--
SELECT has_function(:'bg_schema', 'bidguard_create_bid', ARRAY['text', 'text', 'jsonb'],
                    'bidguard_create_bid(text, text, jsonb) exists');
SELECT is(pg_get_function_arguments(format('%I.bidguard_create_bid(text, text, jsonb)', :'bg_schema')::regprocedure),
          'marketplace_id text, posting_id text, bid_data jsonb DEFAULT ''{}''::jsonb',
          'bidguard_create_bid arguments');
SELECT is(pg_get_function_result(format('%I.bidguard_create_bid(text, text, jsonb)', :'bg_schema')::regprocedure),
          'TABLE(bid_id bigint, created boolean, status text, atomic_event_id uuid)',
          'bidguard_create_bid result columns');
SELECT function_returns(:'bg_schema', 'bidguard_create_bid', ARRAY['text', 'text', 'jsonb'], 'setof record',
                        'bidguard_create_bid returns a table');
SELECT volatility_is(:'bg_schema', 'bidguard_create_bid', ARRAY['text', 'text', 'jsonb'], 'volatile',
                     'bidguard_create_bid is volatile');
SELECT isnt_definer(:'bg_schema', 'bidguard_create_bid', ARRAY['text', 'text', 'jsonb'],
                    'bidguard_create_bid is not SECURITY DEFINER');

SELECT has_function(:'bg_schema', 'bidguard_create_bids', ARRAY['text', 'text[]', 'jsonb[]'],
                    'bidguard_create_bids(text, text[], jsonb[]) exists');
SELECT is(pg_get_function_arguments(format('%I.bidguard_create_bids(text, text[], jsonb[])', :'bg_schema')::regprocedure),
          'marketplace_id text, posting_ids text[], bid_data jsonb[] DEFAULT NULL::jsonb[]',
          'bidguard_create_bids arguments');
SELECT is(pg_get_function_result(format('%I.bidguard_create_bids(text, text[], jsonb[])', :'bg_schema')::regprocedure),
          'TABLE(ordinality integer, posting_id text, bid_id bigint, created boolean, status text, atomic_event_id uuid)',
          'bidguard_create_bids result columns');
SELECT volatility_is(:'bg_schema', 'bidguard_create_bids', ARRAY['text', 'text[]', 'jsonb[]'], 'volatile',
                     'bidguard_create_bids is volatile');
SELECT isnt_definer(:'bg_schema', 'bidguard_create_bids', ARRAY['text', 'text[]', 'jsonb[]'],
                    'bidguard_create_bids is not SECURITY DEFINER');

SELECT has_function(:'bg_schema', 'bidguard_set_bid_status', ARRAY['bigint', 'text', 'text'],
                    'bidguard_set_bid_status(bigint, text, text) exists');
SELECT is(pg_get_function_arguments(format('%I.bidguard_set_bid_status(bigint, text, text)', :'bg_schema')::regprocedure),
          'bid_id bigint, new_status text, reason text DEFAULT NULL::text',
          'bidguard_set_bid_status arguments');
SELECT is(pg_get_function_result(format('%I.bidguard_set_bid_status(bigint, text, text)', :'bg_schema')::regprocedure),
          'TABLE(bid_id bigint, changed boolean, old_status text, status text)',
          'bidguard_set_bid_status result columns');
SELECT function_returns(:'bg_schema', 'bidguard_set_bid_status', ARRAY['bigint', 'text', 'text'], 'setof record',
                        'bidguard_set_bid_status returns a table');
SELECT volatility_is(:'bg_schema', 'bidguard_set_bid_status', ARRAY['bigint', 'text', 'text'], 'volatile',
                     'bidguard_set_bid_status is volatile');
SELECT isnt_definer(:'bg_schema', 'bidguard_set_bid_status', ARRAY['bigint', 'text', 'text'],
                    'bidguard_set_bid_status is not SECURITY DEFINER');

SELECT has_function(:'bg_schema', 'bidguard_withdraw_bid', ARRAY['bigint', 'text'],
                    'bidguard_withdraw_bid(bigint, text) exists');
SELECT is(pg_get_function_arguments(format('%I.bidguard_withdraw_bid(bigint, text)', :'bg_schema')::regprocedure),
          'bid_id bigint, reason text DEFAULT NULL::text',
          'bidguard_withdraw_bid arguments');
SELECT is(pg_get_function_result(format('%I.bidguard_withdraw_bid(bigint, text)', :'bg_schema')::regprocedure),
          'TABLE(bid_id bigint, withdrawn boolean, status text)',
          'bidguard_withdraw_bid result columns');
SELECT function_returns(:'bg_schema', 'bidguard_withdraw_bid', ARRAY['bigint', 'text'], 'setof record',
                        'bidguard_withdraw_bid returns a table');
SELECT volatility_is(:'bg_schema', 'bidguard_withdraw_bid', ARRAY['bigint', 'text'], 'volatile',
                     'bidguard_withdraw_bid is volatile');
SELECT isnt_definer(:'bg_schema', 'bidguard_withdraw_bid', ARRAY['bigint', 'text'],
                    'bidguard_withdraw_bid is not SECURITY DEFINER');

SELECT has_function(:'bg_schema', 'bidguard_withdraw_posting', ARRAY['text', 'text', 'text'],
                    'bidguard_withdraw_posting(text, text, text) exists');
SELECT is(pg_get_function_arguments(format('%I.bidguard_withdraw_posting(text, text, text)', :'bg_schema')::regprocedure),
          'marketplace_id text, posting_id text, reason text DEFAULT NULL::text',
          'bidguard_withdraw_posting arguments');
SELECT is(pg_get_function_result(format('%I.bidguard_withdraw_posting(text, text, text)', :'bg_schema')::regprocedure),
          'TABLE(bid_id bigint, withdrawn boolean, status text)',
          'bidguard_withdraw_posting result columns');
SELECT function_returns(:'bg_schema', 'bidguard_withdraw_posting', ARRAY['text', 'text', 'text'], 'setof record',
                        'bidguard_withdraw_posting returns a table');
SELECT volatility_is(:'bg_schema', 'bidguard_withdraw_posting', ARRAY['text', 'text', 'text'], 'volatile',
                     'bidguard_withdraw_posting is volatile');
SELECT isnt_definer(:'bg_schema', 'bidguard_withdraw_posting', ARRAY['text', 'text', 'text'],
                    'bidguard_withdraw_posting is not SECURITY DEFINER');

-- No other overloads that could capture a call with fewer arguments.
SELECT is(count(*), 4::bigint, 'exactly one bidguard_create_bid/set_bid_status/withdraw_bid/withdraw_posting each')
  FROM pg_proc
 WHERE pronamespace = :'bg_schema'::regnamespace
   AND proname IN ('bidguard_create_bid', 'bidguard_set_bid_status',
                   'bidguard_withdraw_bid', 'bidguard_withdraw_posting');

--
-- bidguard_lock_key (§4): the stable 64-bit key, FNV-1a 64 over the UTF-8
-- bytes of namespace, a zero byte, then key, read as a two's-complement
-- bigint.  Recomputed here independently, in numeric arithmetic.
--
SELECT has_function(:'bg_schema', 'bidguard_lock_key', ARRAY['text', 'text'],
                    'bidguard_lock_key(text, text) exists');
SELECT function_returns(:'bg_schema', 'bidguard_lock_key', ARRAY['text', 'text'], 'bigint',
                        'bidguard_lock_key returns bigint');
SELECT is(pg_get_function_arguments(format('%I.bidguard_lock_key(text, text)', :'bg_schema')::regprocedure),
          'namespace text, key text',
          'bidguard_lock_key arguments');

CREATE FUNCTION pg_temp.fnv1a64(ns text, key text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bytes bytea := convert_to(ns, 'UTF8') || '\x00'::bytea || convert_to(key, 'UTF8');
    h numeric := 14695981039346656037;      -- 0xcbf29ce484222325
    p numeric := 1099511628211;             -- 0x00000100000001b3
    m numeric := 18446744073709551616;      -- 2^64
    lo int;
BEGIN
    FOR i IN 0 .. length(bytes) - 1 LOOP
        lo := (h % 256)::int;
        h := h - lo + (lo # get_byte(bytes, i));
        h := (h * p) % m;
    END LOOP;
    IF h >= 9223372036854775808 THEN
        h := h - m;
    END IF;
    RETURN h::bigint;
END
$$;

SELECT is(bidguard_lock_key('', ''), pg_temp.fnv1a64('', ''),
          'bidguard_lock_key('''', '''') is FNV-1a 64 of a single zero byte');
SELECT is(bidguard_lock_key('', ''), -5808590958014384161::bigint,
          'bidguard_lock_key('''', '''') = 0xaf63bd4c8601b7df as a signed bigint');
SELECT is(bidguard_lock_key('ebay', 'posting-42'), pg_temp.fnv1a64('ebay', 'posting-42'),
          'bidguard_lock_key follows the documented algorithm (ASCII)');
SELECT is(bidguard_lock_key('marché', 'enchère-é€😀'), pg_temp.fnv1a64('marché', 'enchère-é€😀'),
          'bidguard_lock_key follows the documented algorithm (multibyte UTF-8)');
SELECT isnt(bidguard_lock_key('ab', 'c'), bidguard_lock_key('a', 'bc'),
            'bidguard_lock_key separates namespace and key');
SELECT is(bidguard_lock_key(repeat('n', 300), repeat('k', 5000)),
          pg_temp.fnv1a64(repeat('n', 300), repeat('k', 5000)),
          'bidguard_lock_key of long inputs');
SELECT is(bidguard_lock_key(NULL, 'k'), NULL, 'bidguard_lock_key(NULL, key) is NULL');
SELECT volatility_is(:'bg_schema', 'bidguard_lock_key', ARRAY['text', 'text'], 'immutable',
                     'bidguard_lock_key is immutable');

--
-- Ids: every atomic_event_id and event_id defaults to bidguard_uuid_v7().
--
SELECT has_function(:'bg_schema', 'bidguard_uuid_v7', ARRAY[]::text[],
                    'bidguard_uuid_v7() exists');
SELECT function_returns(:'bg_schema', 'bidguard_uuid_v7', ARRAY[]::text[], 'uuid',
                        'bidguard_uuid_v7() returns uuid');
SELECT volatility_is(:'bg_schema', 'bidguard_uuid_v7', ARRAY[]::text[], 'volatile',
                     'bidguard_uuid_v7 is volatile');
SELECT ok(pg_get_expr(d.adbin, d.adrelid) ~ '^(\S+\.)?bidguard_uuid_v7\(\)$'
          AND EXISTS (SELECT 1 FROM pg_depend AS dep
                       WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                         AND dep.refclassid = 'pg_proc'::regclass
                         AND dep.refobjid = format('%I.bidguard_uuid_v7()', :'bg_schema')::regprocedure),
          format('%s.%s defaults to bidguard_uuid_v7()', c.relname, a.attname))
  FROM (VALUES ('bidguard_bids', 'atomic_event_id'), ('bidguard_trades', 'atomic_event_id'),
               ('bidguard_events', 'event_id')) AS v(rel, col)
  JOIN pg_class AS c ON c.relname = v.rel AND c.relnamespace = :'bg_schema'::regnamespace
  JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = v.col
  JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
 ORDER BY v.rel;
SELECT is(substr(bidguard_uuid_v7()::text, 15, 1), '7', 'bidguard_uuid_v7() makes version-7 ids');

SELECT * FROM finish();
ROLLBACK;
