--
-- bidguard_shard_key: the routing key of a scaled-out bidguard.
--   h = FNV-1a 64 over the UTF-8 bytes (as bidguard_lock_key; one text alone,
--       or namespace || 0x00 || key; a bigint as its decimal text)
--   result = low 32 bits of murmur3 fmix64(h), as a signed integer
-- These values are fixed forever: proxies, shards and clients in any language
-- compute them themselves.  (They were checked against an independent
-- implementation when recorded.)
--
SELECT k, bidguard_shard_key(k)
  FROM (VALUES (''), ('a'), ('posting-42'), ('ümlaut日本')) AS v(k);
SELECT ns, key, bidguard_shard_key(ns, key)
  FROM (VALUES ('ebay', 'posting-42'), ('', ''), ('ümlaut', '日本')) AS v(ns, key);
SELECT n, bidguard_shard_key(n)
  FROM unnest(ARRAY[0, 1, 42, -7, 9223372036854775807, -9223372036854775808]::bigint[]) AS n;

-- a bigint is its decimal text; a pair is not its concatenation
SELECT bool_and(bidguard_shard_key(n) = bidguard_shard_key(n::text)) AS bigint_is_text
  FROM generate_series(-1000, 1000) AS n;
SELECT bidguard_shard_key('ab', 'c') <> bidguard_shard_key('a', 'bc') AS separated,
       bidguard_shard_key('ebay', 'posting-42') <> bidguard_shard_key('ebayposting-42') AS not_concatenated;

-- Mixing: PL/Proxy routes on the low bits (hash & (partitions - 1)).  For
-- 4096 consecutive postings and 4096 consecutive bot ids, the counts per
-- partition pass a chi-square test for 2..1024 partitions (below
-- df + 4 sqrt(2 df): a fair hash fails it about once in 10,000).
WITH keys AS (
    SELECT 'postings' AS what, bidguard_shard_key('ebay', 'posting-' || i) AS h
      FROM generate_series(1, 4096) AS i
    UNION ALL
    SELECT 'bots', bidguard_shard_key(i::bigint) FROM generate_series(1, 4096) AS i
), parts AS (
    SELECT unnest(ARRAY[2, 4, 16, 64, 256, 1024]) AS n
), counts AS (
    SELECT what, n, h & (n - 1) AS part, count(*) AS c
      FROM keys CROSS JOIN parts GROUP BY what, n, part
)
SELECT what, n AS partitions, count(*) AS partitions_used,
       sum((c - 4096.0 / n) ^ 2 / (4096.0 / n)) + (n - count(*)) * 4096.0 / n
         < (n - 1) + 4 * sqrt(2 * (n - 1)) AS fair
  FROM counts GROUP BY what, n ORDER BY what, n;

-- Why not bidguard_lock_key: FNV-1a's bit k depends only on bits 0..k of the
-- bytes, so keys that differ in one high bit of one character (here: case)
-- share their low 5 bits, and with them their partition of 32.
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE bidguard_lock_key('ebay', 'posting-' || lower(c)) & 31
                            = bidguard_lock_key('ebay', 'posting-' || upper(c)) & 31) AS lock_key_same_of_32,
       count(*) FILTER (WHERE bidguard_shard_key('ebay', 'posting-' || lower(c)) & 31
                            = bidguard_shard_key('ebay', 'posting-' || upper(c)) & 31) AS shard_key_same_of_32
  FROM (SELECT chr(97 + i) || j AS c FROM generate_series(0, 25) AS i, generate_series(0, 99) AS j) AS s;

-- strict, immutable, parallel safe: usable in an index, a generated column
-- or a PL/Proxy RUN ON
SELECT bidguard_shard_key(NULL::text) IS NULL AS null_text,
       bidguard_shard_key(NULL, 'k') IS NULL AS null_ns,
       bidguard_shard_key(NULL::bigint) IS NULL AS null_bigint;
SELECT p.oid::regprocedure AS function, provolatile, proisstrict, proparallel, prorettype::regtype
  FROM pg_proc AS p WHERE proname = 'bidguard_shard_key' ORDER BY 1::text;
CREATE TEMP TABLE routed (k text, shard int GENERATED ALWAYS AS (bidguard_shard_key(k) & 7) STORED);
INSERT INTO routed VALUES ('posting-42');
SELECT k, shard FROM routed;
