
# Copyright (c) bidguard contributors

# test/t/019_rate_slot_stress.pl
#	  16 pgbench clients race over 4 rate-limited keys and 4 slot keys, on
#	  the real clock, with every way to take a unit or a slot:
#	    rate        bidguard_rate_limit('r:<k>', 5, '200 ms') in autocommit
#	    rate_tx     BEGIN; bidguard_rate_limit; <sleep 0-5 ms>; COMMIT: the
#	                key's lock is held across the sleep
#	    rate_rb     BEGIN; bidguard_rate_limit; <sleep 0-3 ms>; ROLLBACK: the
#	                units must come back
#	    insert      a plain INSERT into g_orders, guarded with 3 rows per
#	                customer per 200 ms, in a DO block that catches the
#	                guard's 23P01
#	    slot        BEGIN; bidguard_acquire_slot('s:<k>', 2, '50 ms'); when
#	                acquired: log (start), <sleep 1-5 ms>, log (end); COMMIT
#	    slot_sess   the same with a session slot, released explicitly
#	  A test-only trigger copies every row bidguard_rate_events gets into
#	  unit_log, in the same transaction, so the units a rolled-back call took
#	  vanish from it too and the calls' own pruning does not hide history
#	  (each row notes the run, from the session's stress.run setting).
#
#	  Three runs: READ COMMITTED (no failure allowed), REPEATABLE READ and
#	  SERIALIZABLE with --max-tries=10 (40001 retried).  After each run, in
#	  SQL: no window of 200 ms of a key holds more than its limit of
#	  committed units; committed 'allowed' outcomes and units match one for
#	  one; no two intervals of the slot log of a key overlap more than 2 deep;
#	  no bidguard lock is left.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $CLIENTS = 16;
my $node = bidguard_node('rate_slot_stress');

$node->safe_psql(
	'postgres', q{
CREATE TABLE unit_log (key text NOT NULL, at timestamptz NOT NULL, cost int NOT NULL, run text);
CREATE FUNCTION copy_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.unit_log VALUES (NEW.key, NEW.at, NEW.cost, current_setting('stress.run', true));
	RETURN NULL;
END $$;
CREATE TRIGGER copy_unit AFTER INSERT ON bidguard_rate_events
	FOR EACH ROW EXECUTE FUNCTION copy_unit();
CREATE UNLOGGED TABLE outcomes (run text, path text, key text, allowed boolean);
CREATE TABLE g_orders (id bigint GENERATED ALWAYS AS IDENTITY, customer text);
SELECT bidguard_guard_rate_limit('g_orders', 'customer', 3, '200 ms');
CREATE TABLE slot_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run text, key text,
                       started timestamptz NOT NULL, ended timestamptz);
CREATE SEQUENCE rolled_back_units;
});

sub scripts
{
	my ($run) = @_;
	my $k = "\\set k random(1, 4)\n";
	my $rate = q{bidguard_rate_limit('r:' || :k, 5, '200 ms')};
	my $out = sub {
		my ($path) = @_;
		return qq{WITH r AS (SELECT allowed FROM $rate)
INSERT INTO outcomes SELECT '$run', '$path', 'r:' || :k, allowed FROM r;
};
	};
	my $slot = sub {
		my ($path, $fn, $release) = @_;
		return qq{\\set s random(1, 5)
SELECT acquired::int AS got, coalesce(slot, 0) AS n FROM $fn('s:' || :k, 2, '50 ms') \\gset
\\if :got
INSERT INTO slot_log (run, key, started) VALUES ('$run', 's:' || :k, clock_timestamp()) RETURNING id AS lid \\gset
\\sleep :s ms
UPDATE slot_log SET ended = clock_timestamp() WHERE id = :lid;
$release\\endif
};
	};
	return {
		"${run}_rate\@4" => $k . $out->('rate'),
		"${run}_rate_tx\@2" => $k . "\\set s random(0, 5)\nBEGIN;\n" . $out->('rate_tx') . "\\sleep :s ms\nCOMMIT;\n",
		"${run}_rate_rb\@1" => $k . qq{\\set s random(0, 3)
BEGIN;
SELECT CASE WHEN allowed THEN nextval('rolled_back_units') END FROM $rate;
\\sleep :s ms
ROLLBACK;
},
		"${run}_insert\@3" => $k . qq{DO \$\$
BEGIN
	INSERT INTO g_orders (customer) VALUES ('c' || :k);
	INSERT INTO outcomes VALUES ('$run', 'insert', 'public.g_orders:c' || :k, true);
EXCEPTION WHEN exclusion_violation THEN
	INSERT INTO outcomes VALUES ('$run', 'insert', 'public.g_orders:c' || :k, false);
END
\$\$;
},
		"${run}_slot\@3" => $k . "BEGIN;\n" . $slot->('slot', 'bidguard_acquire_slot', '') . "COMMIT;\n",
		"${run}_slot_sess\@2" => $k . $slot->('slot_sess', 'bidguard_acquire_session_slot',
			"SELECT bidguard_release_slot('s:' || :k, :n);\n"),
	};
}

my @runs = (
	{ name => 'rc', isolation => 'read committed', seconds => 6, strict => 1 },
	{ name => 'rr', isolation => 'repeatable read', seconds => 4, retries => 10 },
	{ name => 'ser', isolation => 'serializable', seconds => 4, retries => 10 });

for my $run (@runs)
{
	my $name = $run->{name};
	my $opts = "-c $CLIENTS -j 2 -T $run->{seconds}";
	$opts .= " --max-tries=$run->{retries}" if $run->{retries};
	my $pgoptions = '-c default_transaction_isolation='
	  . ($run->{isolation} =~ s/ /\\ /gr) . " -c stress.run=$name";
	my $r = run_pgbench($node, $name, $opts, scripts($name), pgoptions => $pgoptions);

	is($r->{status}, 0, "$name: pgbench exits with status 0");
	unlike($r->{stderr}, qr/aborted|ERROR/, "$name: no client aborted, no error");
	ok(defined $r->{processed} && $r->{processed} > 0,
		"$name: transactions were processed (" . ($r->{processed} // 'none') . ')');
	if ($run->{strict})
	{
		is($r->{failed}, 0, "$name: no failed transaction");
	}
	else
	{
		ok(defined $r->{processed} && $r->{failed} * 100 <= $r->{processed},
			"$name: at most 1% of the transactions failed after $run->{retries} tries ($r->{failed})");
	}

	# No window (u.at - 200 ms, u.at] of a key holds more than its limit.
	is( $node->safe_psql(
			'postgres', q{
		SELECT count(*) FROM unit_log AS u
		 WHERE (SELECT sum(o.cost) FROM unit_log AS o
		         WHERE o.key = u.key AND o.at > u.at - interval '200 ms' AND o.at <= u.at)
		       > CASE WHEN u.key LIKE 'r:%' THEN 5 ELSE 3 END}),
		'0', "$name: no window of 200 ms of any key holds more than its limit");
	# Every committed 'allowed' is one unit, and the other way round.
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM (
		  SELECT key, count(*) FILTER (WHERE allowed) AS n FROM outcomes WHERE run = '$name' GROUP BY key) AS o
		  FULL JOIN (SELECT key, count(*) AS n FROM unit_log WHERE run = '$name' GROUP BY key) AS u
		 USING (key) WHERE coalesce(o.n, 0) <> coalesce(u.n, 0)}),
		'0', "$name: committed admissions and recorded units match per key");
	# At most 2 holders of a slot key at any moment.
	is( $node->safe_psql(
			'postgres', qq{
		SELECT coalesce(max((SELECT count(*) FROM slot_log AS o
		                      WHERE o.key = l.key AND o.started <= l.started
		                        AND o.ended > l.started)), 0) <= 2
		  FROM slot_log AS l WHERE l.run = '$name'}),
		't', "$name: no slot key had more than 2 holders at once");
	is(bidguard_locks_held($node), '0', "$name: no bidguard lock left");
	note "$name: "
	  . $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(path || ' ' || a || '/' || n, ', ' ORDER BY path)
		  FROM (SELECT path, count(*) FILTER (WHERE allowed) AS a, count(*) AS n
		          FROM outcomes WHERE run = '$name' GROUP BY path) AS s})
	  . '; slot holds: '
	  . $node->safe_psql('postgres', "SELECT count(*) FROM slot_log WHERE run = '$name'");
}

# Every path was both admitted and refused; slots were held at most 2 deep
# and at times 2 deep (the contention was real).
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(path || ':' || flags, ' ' ORDER BY path)
	  FROM (SELECT path, string_agg(DISTINCT allowed::text, ',' ORDER BY allowed::text) AS flags
	          FROM outcomes GROUP BY path) AS s}),
	'insert:false,true rate:false,true rate_tx:false,true',
	'every rate path was admitted and refused');
cmp_ok($node->safe_psql('postgres', q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM rolled_back_units}),
	'>', 0, 'rolled-back calls took units');
is( $node->safe_psql(
		'postgres', q{
	SELECT max((SELECT count(*) FROM slot_log AS o
	             WHERE o.key = l.key AND o.started <= l.started AND o.ended > l.started))
	  FROM slot_log AS l}),
	'2', 'two holders of a slot key at once happened');
is( $node->safe_psql(
		'postgres', q{SELECT slots_acquired > 0 AND slot_waits > 0
		                  AND rate_allowed > 0 AND rate_limited > 0 FROM bidguard_stats}),
	't', 'bidguard_stats counted slots acquired and waited for, units admitted and refused');

$node->stop;
done_testing();
