--
-- bidguard_lock_key: FNV-1a 64 over UTF-8(namespace) || 0x00 || UTF-8(key),
-- read as a signed bigint.  These values are fixed forever: clients may
-- compute them themselves.
--
SELECT ns, key, bidguard_lock_key(ns, key)
  FROM (VALUES ('a', 'b'), ('', ''), ('ebay', 'posting-42'), ('ab', ''), ('a', 'b'),
               ('ümlaut', '日本')) AS v(ns, key);

-- namespace and key do not run into each other
SELECT bidguard_lock_key('ab', 'c') <> bidguard_lock_key('a', 'bc') AS separated;

-- strict and immutable: NULL in, NULL out
SELECT bidguard_lock_key(NULL, 'k') IS NULL AS null_ns, bidguard_lock_key('n', NULL) IS NULL AS null_key;
SELECT provolatile, proisstrict, proparallel FROM pg_proc WHERE proname = 'bidguard_lock_key';
