
# Copyright (c) bidguard contributors

# test/t/017_fuzz.pl
#	  No input crashes a backend (SPEC §8).  Two bounded, seeded runs
#	  against a database with bidguard, data in its tables and a guarded
#	  application table:
#	  - sqlsmith (Debian's), 5,000 random queries over the catalog's tables,
#	    views and functions, bidguard's among them;
#	  - a call fuzzer of our own: 20,000 calls of every bidguard function,
#	    each argument drawn from values chosen to hurt (NULLs, empty, over-
#	    long and multibyte strings, injection strings, extreme ids,
#	    timestamps and intervals, JSON of every kind, odd tables and column
#	    lists), each in a subtransaction that is rolled back.
#	  After each: the server never restarted (no "terminated by signal" in
#	  its log, the same postmaster start time), the session is alive, and the
#	  data still holds the invariants.  The counts go to the test's notes.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('fuzz', conf => "statement_timeout = '2s'\nlock_timeout = '200ms'\n");
$node->safe_psql('postgres', 'CREATE DATABASE fuzz');
$node->safe_psql('fuzz', 'CREATE EXTENSION bidguard');
fill_sample_data($node, 'fuzz');
$node->safe_psql('fuzz', $APP_TABLE_SQL);
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $log_offset = -s $node->logfile;

sub no_crash
{
	my ($label) = @_;
	unlike(slurp_file($node->logfile, $log_offset),
		qr/terminated by signal|was terminated by exception|server process .* exited with exit code [1-9]/,
		"$label: no backend died");
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
		"$label: the server never restarted");
	check_bid_invariants($node, $label, dbname => 'fuzz');
	is($node->safe_psql('fuzz', 'SELECT count(*) FROM bidguard_cooldown_violations'), '0',
		"$label: bidguard_cooldown_violations is empty");
	return;
}

SKIP:
{
	skip 'sqlsmith is not installed (Debian package sqlsmith)', 1 unless -x '/usr/bin/sqlsmith';
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'sqlsmith', '--target=host=' . $node->host . ' port=' . $node->port . ' dbname=fuzz',
			'--max-queries=5000', '--seed=20261204', '--exclude-catalog', '--verbose'
		],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(300));
	note 'sqlsmith: ' . substr($err, -1500);
	ok($err =~ /queries: (\d+)/ ? $1 > 0 : 1, 'sqlsmith ran its queries');
	no_crash('sqlsmith');
}

# The call fuzzer.
$node->safe_psql(
	'fuzz', q{
CREATE TABLE fuzz_results (fn text, sqlstate text);
CREATE FUNCTION fuzz_pick(a anyarray) RETURNS anyelement LANGUAGE sql VOLATILE
AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;
CREATE FUNCTION fuzz(n int) RETURNS void LANGUAGE plpgsql AS $fuzz$
DECLARE
	texts text[] := ARRAY[NULL, '', 'a', 'fn', 'posting-1', repeat('x', 256), repeat('x', 257),
	                      repeat('é', 256), repeat('é', 257), repeat('z', 100000), E'back\\slash',
	                      $t$'; DROP TABLE bidguard_bids; --$t$, '"quoted"', E'tab\tnl\n', 'pending',
	                      'submitted', 'won', 'failed', 'WON', 'status', 'k', 'account', 'placed_at'];
	ids bigint[] := ARRAY[NULL, 0, -1, 1, 2, 7, 8, 42, 9223372036854775807, -9223372036854775808];
	docs jsonb[] := ARRAY[NULL, '{}', '[]', '"s"', 'null', '1', '{"a": [1, {"b": null}]}',
	                      ('{"d": ' || repeat('[', 500) || repeat(']', 500) || '}')::jsonb];
	ivs interval[] := ARRAY[NULL, '0', '-1 microsecond', '1 microsecond', '1 ms', '1 s', '1 day -25 hours',
	                        '1 mon', '100 years', '-100 years', '178000000 years'];
	times timestamptz[] := ARRAY[NULL, now(), now() + interval '1 day', '-infinity', 'infinity',
	                             '1970-01-01', '4714-11-24 00:00:00+00 BC', '294276-12-31 23:59:59+00'];
	tables regclass[] := ARRAY[NULL, 'app_orders', 'bidguard_trades', 'bidguard_guards', 'pg_class',
	                           'fuzz_results', 0::oid::regclass];
	cols text[] := ARRAY[NULL, '', 'k', 'account', 'placed_at', 'status', 'order_id', 'ctid', 'xmin',
	                     repeat('n', 70), 'bot_id', 'created_at', $c$x"; DROP TABLE app_orders; --$c$];
	arrays text[] := ARRAY[NULL, '{}', '{account}', '{account,account}', '{NULL}', '{ctid}',
	                       '{account,status,placed_at}'];
	statuses text[] := ARRAY[NULL, '{}', '{open}', '{NULL}', '{open,done}', $s${"x'); DROP TABLE x; --"}$s$];
	fns text[] := ARRAY['create_bid', 'create_bids', 'set_bid_status', 'withdraw_bid', 'withdraw_posting',
	                    'set_cooldown', 'try_trade', 'fill_trade', 'fail_trade', 'lock', 'lock_key',
	                    'guard_cooldown', 'unguard_cooldown', 'guard_unique_active',
	                    'duplicate_active', 'cooldown_violations', 'uuid_v7'];
	fn text;
	st text;
BEGIN
	FOR i IN 1 .. n LOOP
		fn := fuzz_pick(fns);
		BEGIN
			CASE fn
			WHEN 'create_bid' THEN PERFORM * FROM bidguard_create_bid(fuzz_pick(texts), fuzz_pick(texts), fuzz_pick(docs));
			WHEN 'create_bids' THEN
				PERFORM * FROM bidguard_create_bids(fuzz_pick(texts),
					CASE floor(random() * 5)::int WHEN 0 THEN NULL WHEN 1 THEN '{}'::text[]
					     WHEN 2 THEN '{{a},{b}}'::text[]
					     ELSE ARRAY[fuzz_pick(texts), fuzz_pick(texts), fuzz_pick(texts)] END,
					CASE floor(random() * 4)::int WHEN 0 THEN NULL WHEN 1 THEN ARRAY[fuzz_pick(docs)]
					     ELSE ARRAY[fuzz_pick(docs), fuzz_pick(docs), fuzz_pick(docs)] END);
			WHEN 'set_bid_status' THEN PERFORM * FROM bidguard_set_bid_status(fuzz_pick(ids), fuzz_pick(texts), fuzz_pick(texts));
			WHEN 'withdraw_bid' THEN PERFORM * FROM bidguard_withdraw_bid(fuzz_pick(ids), fuzz_pick(texts));
			WHEN 'withdraw_posting' THEN PERFORM * FROM bidguard_withdraw_posting(fuzz_pick(texts), fuzz_pick(texts), fuzz_pick(texts));
			WHEN 'set_cooldown' THEN PERFORM bidguard_set_cooldown(fuzz_pick(ids), fuzz_pick(ivs));
			WHEN 'try_trade' THEN PERFORM * FROM bidguard_try_trade(fuzz_pick(ids), fuzz_pick(docs), fuzz_pick(ivs));
			WHEN 'fill_trade' THEN PERFORM * FROM bidguard_fill_trade(fuzz_pick(ids), fuzz_pick(times));
			WHEN 'fail_trade' THEN PERFORM * FROM bidguard_fail_trade(fuzz_pick(ids), fuzz_pick(texts));
			WHEN 'lock' THEN PERFORM bidguard_lock(fuzz_pick(texts), fuzz_pick(texts), fuzz_pick(ivs));
			WHEN 'lock_key' THEN PERFORM bidguard_lock_key(fuzz_pick(texts), fuzz_pick(texts));
			WHEN 'guard_cooldown' THEN
				PERFORM bidguard_guard_cooldown(fuzz_pick(tables), fuzz_pick(cols)::name, fuzz_pick(cols)::name,
				                                fuzz_pick(ivs), fuzz_pick(cols)::name);
			WHEN 'unguard_cooldown' THEN PERFORM bidguard_unguard_cooldown(fuzz_pick(tables));
			WHEN 'guard_unique_active' THEN
				PERFORM bidguard_guard_unique_active(fuzz_pick(tables), fuzz_pick(arrays)::name[],
				                                     fuzz_pick(cols)::name, fuzz_pick(statuses)::text[]);
			WHEN 'duplicate_active' THEN
				PERFORM * FROM bidguard_duplicate_active(fuzz_pick(tables), fuzz_pick(arrays)::name[],
				                                         fuzz_pick(cols)::name, fuzz_pick(statuses)::text[]);
			WHEN 'cooldown_violations' THEN
				PERFORM * FROM bidguard_cooldown_violations(fuzz_pick(tables), fuzz_pick(cols)::name,
				                                            fuzz_pick(cols)::name, fuzz_pick(ivs), fuzz_pick(cols)::name);
			WHEN 'uuid_v7' THEN PERFORM bidguard_uuid_v7();
			END CASE;
			RAISE EXCEPTION USING ERRCODE = 'XX999';	-- undo it
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
		END;
		INSERT INTO fuzz_results VALUES (fn, nullif(st, 'XX999'));
	END LOOP;
END
$fuzz$;
});
my $calls = 20000;
$node->safe_psql('fuzz', "SELECT setseed(0.2026); SELECT fuzz($calls)");
is($node->safe_psql('fuzz', 'SELECT count(*) FROM fuzz_results'), $calls, "the fuzzer made $calls calls");
is($node->safe_psql('fuzz', q{SELECT count(DISTINCT fn) FROM fuzz_results}), '17',
	'... of every one of the 17 functions');
is($node->safe_psql('fuzz', q{SELECT count(*) FROM fuzz_results WHERE sqlstate LIKE 'XX%' AND sqlstate <> 'XX999'}),
	'0', '... and none ended in an internal error (XX000: elog, a "can\'t happen")');
is($node->safe_psql('fuzz', q{SELECT count(*) FROM fuzz_results WHERE sqlstate = '42601'}),
	'0', '... and none ended in a syntax error (what a quoting mistake in generated SQL looks like)');
note "fuzzer outcomes by function and SQLSTATE:\n"
  . $node->safe_psql('fuzz',
	q{SELECT fn || ' ' || coalesce(sqlstate, 'ok') || ' ' || count(*) FROM fuzz_results
	   GROUP BY fn, sqlstate ORDER BY fn, sqlstate});
no_crash('call fuzzer');

$node->stop;
done_testing();
