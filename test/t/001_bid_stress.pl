
# Copyright (c) bidguard contributors

# test/t/001_bid_stress.pl
#	  32 pgbench clients race over 5 postings with a mix of bidguard_create_bid,
#	  bidguard_create_bids (batches of three, in any order, repeats allowed),
#	  set_bid_status (submit, win/lose/expire), withdraw_bid, withdraw_posting,
#	  a creation rolled back, and plain SQL racers (INSERT ... ON CONFLICT DO
#	  NOTHING, UPDATE to submitted, UPDATE to withdrawn, UPDATE moving a bid
#	  to another posting).  Four runs: READ COMMITTED with the functions and
#	  the INSERT/submit racers only; READ COMMITTED with every racer; then
#	  REPEATABLE READ and SERIALIZABLE with every racer.  After every run the
#	  invariants of SPEC §9 (BidguardTest.pm): one active bid per posting, a
#	  creation event per bid, only allowed transitions in the trail, each
#	  bid's trail one chain ending at its status, no lock left.
#
#	  The scripts make no error other than 40001/40P01, which pgbench retries
#	  (--max-tries) or counts as failed, never aborting a client:
#	  - run "rc-functions" submits and settles in BEGIN ... COMMIT with
#	    \gset, under the posting lock create_bid took; no plain racer changes
#	    statuses except pending -> submitted, so set_bid_status can never
#	    find a bid moved under it.  It runs without retries: any error,
#	    deadlock or serialization failure fails the test;
#	  - the other runs add plain UPDATEs that withdraw and move bids; they
#	    take only the row lock, so they may legitimately end a bid between
#	    create_bid and set_bid_status (23514) or find the target posting
#	    taken (23505): submitting, settling and moving go through
#	    stress_settle() and stress_move(), which count those in sequences.
#	    Moves also make two functions take two postings' locks in opposite
#	    orders (40P01, retried even at READ COMMITTED).
#	  At REPEATABLE READ and SERIALIZABLE a waiter for a posting lock gets
#	  40001 whenever the holder changed the posting; with 32 clients on 5
#	  postings a few transactions fail even after 10 tries: allowed.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $POSTINGS = 5;
my $CLIENTS = 32;

my $node = bidguard_node('stress');

$node->safe_psql(
	'postgres', q{
CREATE SEQUENCE stress_transition_races;

-- Submit (and with an outcome, settle) the posting's active bid, creating
-- one if needed.  A 23514 here means a plain UPDATE ended the bid between
-- create_bid and set_bid_status: legitimate, counted.  40001 and 40P01 are
-- left to pgbench to retry.
CREATE FUNCTION stress_settle(posting text, outcome text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	b bigint;
BEGIN
	SELECT c.bid_id INTO b FROM bidguard_create_bid('stress', posting, '{"via": "settle"}') AS c;
	PERFORM bidguard_set_bid_status(b, 'submitted', 'pgbench submit');
	IF outcome IS NOT NULL THEN
		PERFORM bidguard_set_bid_status(b, outcome, 'pgbench settle');
	END IF;
	RETURN 'ok';
EXCEPTION WHEN check_violation THEN
	PERFORM nextval('stress_transition_races');
	RETURN 'raced';
END
$$;

-- Move the posting's active bid to another posting by plain UPDATE; a
-- 23505 (the other posting has an active bid) is legitimate, counted.
CREATE SEQUENCE stress_move_conflicts;
CREATE FUNCTION stress_move(from_posting text, to_posting text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE bidguard_bids SET posting_id = to_posting, status_reason = 'plain move'
	 WHERE marketplace_id = 'stress' AND posting_id = from_posting
	   AND status IN ('pending', 'submitted');
	RETURN 'ok';
EXCEPTION WHEN unique_violation THEN
	PERFORM nextval('stress_move_conflicts');
	RETURN 'conflict';
END
$$;
});

# The scripts.  :p picks one of the postings.
my $pick = "\\set p random(1, $POSTINGS)\n";
my %common = (
	create => $pick . q{
SELECT bid_id, created FROM bidguard_create_bid('stress', 'p' || :p, '{"via": "create"}');
},
	create_rollback => $pick . q{
BEGIN;
SELECT bid_id, created FROM bidguard_create_bid('stress', 'p' || :p, '{"via": "rolled back"}');
ROLLBACK;
},
	# A batch of three postings (possibly repeated), locked in key order.
	create_batch => qq{\\set a random(1, $POSTINGS)\n\\set b random(1, $POSTINGS)\n\\set c random(1, $POSTINGS)\n}
	  . q{
SELECT count(*) FROM bidguard_create_bids('stress', ARRAY['p' || :a, 'p' || :b, 'p' || :c],
                                          ARRAY['{"via": "batch"}', '{"via": "batch"}', '{"via": "batch"}']::jsonb[]);
},
	withdraw_posting => $pick . q{
SELECT * FROM bidguard_withdraw_posting('stress', 'p' || :p, 'pgbench withdraw_posting');
},
	# Any bid of the posting, active or not, possibly stale by the time it
	# is withdrawn: a terminal bid is left alone, never an error.
	withdraw_bid => $pick . q{
SELECT coalesce((SELECT bid_id FROM bidguard_bids
                  WHERE marketplace_id = 'stress' AND posting_id = 'p' || :p
                  ORDER BY status IN ('pending', 'submitted') DESC, random() LIMIT 1), 0) AS bid_id \gset
\if :bid_id > 0
SELECT * FROM bidguard_withdraw_bid(:bid_id, 'pgbench withdraw_bid');
\endif
},
	plain_insert => $pick . q{
INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data)
VALUES ('stress', 'p' || :p, '{"via": "plain insert"}')
ON CONFLICT DO NOTHING;
},
	plain_submit => $pick . q{
UPDATE bidguard_bids SET status = 'submitted', status_reason = 'plain submit'
 WHERE marketplace_id = 'stress' AND posting_id = 'p' || :p AND status = 'pending';
},);

# Submitting and settling in one transaction, by plain statements.
my %direct = (
	submit => $pick . q{
BEGIN;
SELECT bid_id FROM bidguard_create_bid('stress', 'p' || :p, '{"via": "submit"}') \gset
SELECT * FROM bidguard_set_bid_status(:bid_id, 'submitted', 'pgbench submit');
COMMIT;
},
	settle => $pick . q{\set o random(1, 3)
BEGIN;
SELECT bid_id FROM bidguard_create_bid('stress', 'p' || :p, '{"via": "settle"}') \gset
SELECT * FROM bidguard_set_bid_status(:bid_id, 'submitted', 'pgbench submit');
SELECT * FROM bidguard_set_bid_status(:bid_id, (ARRAY['won', 'lost', 'expired'])[:o], 'pgbench settle');
COMMIT;
},);

# The same through stress_settle(), plus the plain withdrawal racer.
my %with_plain_withdraw = (
	submit => $pick . q{
SELECT stress_settle('p' || :p, NULL);
},
	settle => $pick . q{\set o random(1, 3)
SELECT stress_settle('p' || :p, (ARRAY['won', 'lost', 'expired'])[:o]);
},
	plain_withdraw => $pick . q{
UPDATE bidguard_bids SET status = 'withdrawn', status_reason = 'plain withdraw'
 WHERE marketplace_id = 'stress' AND posting_id = 'p' || :p
   AND status IN ('pending', 'submitted');
},
	# Moves make a function that locked one posting follow its bid to
	# another: deadlocks between two such become possible (40P01, retried).
	plain_move => $pick . qq{\\set q random(1, $POSTINGS)
SELECT stress_move('p' || :p, 'p' || :q);
},);

my %weights = (
	create => 4,
	create_rollback => 1,
	create_batch => 2,
	submit => 3,
	settle => 2,
	withdraw_posting => 2,
	withdraw_bid => 2,
	plain_insert => 2,
	plain_submit => 1,
	plain_withdraw => 1,
	plain_move => 1,);

sub scripts
{
	my ($run, %scripts) = @_;
	my %files;
	while (my ($name, $text) = each %scripts)
	{
		$files{"${run}_$name\@$weights{$name}"} = $text;
	}
	return \%files;
}

my @runs = (
	{
		name => 'rc-functions',
		isolation => 'read committed',
		seconds => 4,
		scripts => scripts('rc_functions', %common, %direct),
		strict => 1,
	},
	{
		name => 'rc-plain-racers',
		isolation => 'read committed',
		seconds => 3,
		scripts => scripts('rc_plain', %common, %with_plain_withdraw),
		retries => 10,
		strict => 1,
	},
	{
		name => 'repeatable-read',
		isolation => 'repeatable read',
		seconds => 3,
		scripts => scripts('rr', %common, %with_plain_withdraw),
		retries => 10,
	},
	{
		name => 'serializable',
		isolation => 'serializable',
		seconds => 3,
		scripts => scripts('ser', %common, %with_plain_withdraw),
		retries => 10,
	},);

my $races_sql = q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                    FROM stress_transition_races};
my $moves_sql = q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                    FROM stress_move_conflicts};
my $bids_before = 0;
for my $run (@runs)
{
	my $name = $run->{name};
	my $races_before = $node->safe_psql('postgres', $races_sql);
	my $opts = "-c $CLIENTS -j 2 -T $run->{seconds}";
	$opts .= " --max-tries=$run->{retries}" if $run->{retries};
	my $pgoptions = '-c default_transaction_isolation='
	  . ($run->{isolation} =~ s/ /\\ /gr);
	{
		local $ENV{PGOPTIONS} = $pgoptions;
		is($node->safe_psql('postgres', 'SHOW transaction_isolation'),
			$run->{isolation}, "$name: pgbench's sessions run at $run->{isolation}");
	}
	my $r = run_pgbench($node, $name, $opts, $run->{scripts},
		pgoptions => $pgoptions);

	is($r->{status}, 0, "$name: pgbench exits with status 0");
	unlike($r->{stderr}, qr/aborted|ERROR/, "$name: no client aborted, no error");
	ok(defined $r->{processed} && $r->{processed} > 0,
		"$name: transactions were processed ("
		  . ($r->{processed} // 'none') . ')');
	if ($run->{strict})
	{
		is($r->{failed}, 0, "$name: no failed transaction");
		note "$name: $r->{retried} transactions retried" if $run->{retries};
	}
	else
	{
		note "$name: $r->{retried} transactions retried, "
		  . ($r->{retries} // 0)
		  . " retries, $r->{failed} failed after $run->{retries} tries";
		ok($r->{failed} < $r->{processed},
			"$name: most transactions got through their 40001s");
	}

	my $races = $node->safe_psql('postgres', $races_sql) - $races_before;
	note "$name: set_bid_status calls that lost a race with a plain UPDATE: $races";
	note "$name: moves refused by bidguard_bids_one_active so far: "
	  . $node->safe_psql('postgres', $moves_sql);

	check_bid_invariants($node, $name);

	my $bids = $node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_bids');
	note "$name: bids: $bids ("
	  . ($bids - $bids_before)
	  . " new); events: "
	  . $node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_events')
	  . "; statuses: "
	  . $node->safe_psql('postgres',
		q{SELECT string_agg(status || '=' || n, ', ' ORDER BY status)
		    FROM (SELECT status, count(*) AS n FROM bidguard_bids GROUP BY status) AS s});
	cmp_ok($bids, '>', $bids_before, "$name: new bids were made");
	$bids_before = $bids;
}

# The mix really exercised every path: bids were created by each path,
# ended in each way, and the rolled-back creations left nothing.
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(v, ',' ORDER BY v) FROM (
		SELECT DISTINCT bid_data->>'via' AS v FROM bidguard_bids) AS s}),
	'batch,create,plain insert,settle,submit',
	'bids were created by create_bid (three scripts), create_bids and plain INSERT, none by a rolled-back call');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(DISTINCT coalesce(detail->>'reason', '-'), ',' ORDER BY coalesce(detail->>'reason', '-'))
	  FROM bidguard_events WHERE kind <> 'bid_created' AND old_status <> new_status}),
	'pgbench settle,pgbench submit,pgbench withdraw_bid,pgbench withdraw_posting,plain submit,plain withdraw',
	'status changes came from every function and plain SQL path');

cmp_ok(
	$node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM bidguard_events
	 WHERE kind <> 'bid_created' AND old_status = new_status AND marketplace_id = 'stress'}),
	'>', 0, 'moves by plain UPDATE wrote events too');

# Every posting still works: its active bid (if any) is found, the next
# creation after a withdrawal makes exactly one new bid.
for my $p (1 .. $POSTINGS)
{
	my $res = $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FILTER (WHERE status IN ('pending', 'submitted'))
		  FROM bidguard_bids WHERE marketplace_id = 'stress' AND posting_id = 'p$p';
		SELECT withdrawn FROM bidguard_withdraw_posting('stress', 'p$p');
		SELECT created FROM bidguard_create_bid('stress', 'p$p');
		SELECT created FROM bidguard_create_bid('stress', 'p$p');
		SELECT count(*) FROM bidguard_bids
		 WHERE marketplace_id = 'stress' AND posting_id = 'p$p' AND status IN ('pending', 'submitted')});
	like($res, qr/^(?:1\nt|0\nf)\nt\nf\n1$/, "posting p$p: withdraw, create, create again");
}
check_bid_invariants($node, 'final');

$node->stop;
done_testing();
