
# Copyright (c) bidguard contributors

# test/t/003_crash.pl
#	  bidguard across lost connections, backend kills, crash restarts and
#	  immediate shutdowns (SPEC §9):
#	  - a session that dies holding a posting lock leaves no lock behind,
#	    and its uncommitted bid is gone;
#	  - under load (pgbench racing over a few postings, and a psql creating
#	    and withdrawing bids one statement at a time and printing each
#	    acknowledged result), a backend holding a posting lock is killed with
#	    SIGKILL (the postmaster reinitializes), then, in a second round, the
#	    server is stopped in immediate mode and started again.
#	  After each: every acknowledged creation and withdrawal is there, with
#	  its events; the bid invariants hold; no bidguard lock is held; the
#	  functions work.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use BidguardTest;

my $POSTINGS = 5;

my $node = bidguard_node('crash', conf => "restart_after_crash = on\n");

#
# A session that dies holding a posting lock.
#
my $holder = $node->background_psql('postgres');
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
$holder->query_safe(
	q{BEGIN; SELECT bid_id FROM bidguard_create_bid('hold', 'posting')});
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM pg_locks
	 WHERE $BIDGUARD_POSTING_LOCK_SQL AND pid = $holder_pid AND granted
	   AND ((classid::bigint << 32) | objid::bigint) = bidguard_lock_key('hold', 'posting')}),
	'1',
	'an open transaction that created a bid holds the posting lock');
my ($ret, $out, $err) = $node->psql('postgres',
	q{SET lock_timeout = '200ms'; SELECT * FROM bidguard_create_bid('hold', 'posting')});
like($err, qr/lock timeout/,
	'another creator for the posting waits for it (here: until lock_timeout)');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($holder_pid)");
$holder->quit;
$node->poll_query_until('postgres',
	"SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $holder_pid)")
  or die "backend $holder_pid did not go away";
is(bidguard_locks_held($node), '0', 'the terminated session left no lock');
is( $node->safe_psql(
		'postgres',
		q{SET lock_timeout = '5s'; SELECT created FROM bidguard_create_bid('hold', 'posting')}),
	't',
	'the posting is free: the next caller creates the bid the dead session did not commit');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM bidguard_events WHERE marketplace_id = 'hold'}),
	'1',
	'the dead session left no event');

#
# Load: pgbench, and an "acknowledging" psql whose printed results are the
# creations and withdrawals the server acknowledged.
#
my $pick = "\\set p random(1, $POSTINGS)\n";
my %scripts = (
	'create@3' => $pick . q{
SELECT bid_id, created FROM bidguard_create_bid('crash', 'p' || :p, '{"via": "create"}');
},
	'submit@2' => $pick . q{
BEGIN;
SELECT bid_id FROM bidguard_create_bid('crash', 'p' || :p) \gset
SELECT * FROM bidguard_set_bid_status(:bid_id, 'submitted', 'pgbench submit');
COMMIT;
},
	'settle@1' => $pick . q{\set o random(1, 3)
BEGIN;
SELECT bid_id FROM bidguard_create_bid('crash', 'p' || :p) \gset
SELECT * FROM bidguard_set_bid_status(:bid_id, 'submitted', 'pgbench submit');
SELECT pg_sleep(0.002);
SELECT * FROM bidguard_set_bid_status(:bid_id, (ARRAY['won', 'lost', 'expired'])[:o], 'pgbench settle');
COMMIT;
},
	'withdraw@2' => $pick . q{
SELECT * FROM bidguard_withdraw_posting('crash', 'p' || :p, 'pgbench withdraw');
},
	'plain_insert@1' => $pick . q{
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('crash', 'p' || :p)
ON CONFLICT DO NOTHING;
},);

# Start the load; returns the handles and the acknowledging psql's output.
sub start_load
{
	my ($round) = @_;
	my @files;
	for my $key (sort keys %scripts)
	{
		(my $name = $key) =~ s/\@\d+$//;
		(my $weight = $key) =~ s/^[^@]*//;
		my $path = $node->basedir . "/${round}_$name.pgbench";
		PostgreSQL::Test::Utils::append_to_file($path, $scripts{$key});
		push @files, '-f', $path . $weight;
	}
	# stdin and stdout are files, not scalars: IPC::Run moves a scalar's
	# data only while the caller pumps, and the load must run on its own.
	my $base = $node->basedir . "/$round";
	my %load = (
		pgbench_out => "$base.pgbench.out",
		pgbench_err => "$base.pgbench.err",
		ack_sql => "$base.ack.sql",
		ack_out => "$base.ack.out",
		ack_err => "$base.ack.err");
	local $ENV{PGAPPNAME} = 'bidguard-load';
	$load{pgbench} = IPC::Run::start(
		[
			'pgbench', '-n', '-h', $node->host, '-p', $node->port,
			'-c', '16', '-j', '2', '-T', '120', @files, 'postgres'
		],
		'<', '/dev/null', '>', $load{pgbench_out}, '2>', $load{pgbench_err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));

	# Create a bid on a posting of its own, then withdraw every other one:
	# each printed line is a committed, acknowledged statement.
	my $sql = '';
	for my $i (1 .. 20000)
	{
		$sql .= "SELECT 'created', bid_id, atomic_event_id FROM bidguard_create_bid('ack-$round', 'a$i');\n";
		$sql .= "SELECT 'withdrawn', bid_id FROM bidguard_withdraw_posting('ack-$round', 'a$i', 'ack') WHERE withdrawn;\n"
		  if $i % 2 == 0;
	}
	PostgreSQL::Test::Utils::append_to_file($load{ack_sql}, $sql);
	local $ENV{PGAPPNAME} = 'bidguard-ack';
	$load{ack} = IPC::Run::start(
		[
			'psql', '-X', '-A', '-t', '-F', ' ', '-v', 'ON_ERROR_STOP=1',
			'-h', $node->host, '-p', $node->port, '-d', 'postgres',
			'-f', $load{ack_sql}
		],
		'<', '/dev/null', '>', $load{ack_out}, '2>', $load{ack_err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%load;
}

# Wait until the load has made some bids and a backend holds a posting lock.
sub wait_for_load
{
	my ($load, $round) = @_;
	$node->poll_query_until(
		'postgres', qq{
		SELECT (SELECT count(*) FROM bidguard_bids WHERE marketplace_id = 'ack-$round') >= 1000
		   AND (SELECT count(*) FROM bidguard_bids WHERE marketplace_id = 'crash') >= 300})
	  or die "the load did not get going";
	return;
}

# Wait for the load's processes to end (they lose their connections).
sub finish_load
{
	my ($load, $label) = @_;
	for my $h (qw(ack pgbench))
	{
		# The harness's timeout (see start_load) bounds the wait.
		if (!eval { $load->{$h}->finish; 1 })
		{
			eval { $load->{$h}->kill_kill; };
			fail("$label: $h did not end after the crash: $@");
			next;
		}
		note "$label: $h ended with status " . ($load->{$h}->full_result(0) >> 8);
	}
	note "$label: pgbench stdout:\n" . slurp_file($load->{pgbench_out});
	my @err = split /\n/, slurp_file($load->{pgbench_err});
	note "$label: pgbench stderr (first lines):\n" . join("\n", @err[ 0 .. ($#err < 5 ? $#err : 5) ]);
	note "$label: ack psql stderr:\n" . slurp_file($load->{ack_err});
	return;
}

# Every acknowledged creation and withdrawal survived, with its events.
sub check_acknowledged
{
	my ($load, $label) = @_;
	my (@created, @withdrawn);
	for my $line (split /\n/, slurp_file($load->{ack_out}))
	{
		if ($line =~ /^created (\d+) ([0-9a-f-]{36})$/)
		{
			push @created, "($1, '$2'::uuid)";
		}
		elsif ($line =~ /^withdrawn (\d+)$/)
		{
			push @withdrawn, $1;
		}
		else
		{
			fail("$label: unexpected output line '$line'");
		}
	}
	note "$label: "
	  . scalar(@created)
	  . " acknowledged creations, "
	  . scalar(@withdrawn)
	  . " acknowledged withdrawals";
	# The load was stopped after 1000 acknowledging creations had committed:
	# all but the last one at most had been acknowledged.
	cmp_ok(scalar(@created), '>=', 999,
		"$label: creations were acknowledged before the crash");
	cmp_ok(scalar(@withdrawn), '>=', 498,
		"$label: withdrawals were acknowledged before the crash");

	my $values = join(', ', @created);
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM (VALUES $values) AS a(bid_id, event_id)
		 WHERE NOT EXISTS (SELECT 1 FROM bidguard_bids AS b
		                    WHERE b.bid_id = a.bid_id AND b.atomic_event_id = a.event_id)
		    OR NOT EXISTS (SELECT 1 FROM bidguard_events AS e
		                    WHERE e.event_id = a.event_id AND e.kind = 'bid_created'
		                      AND e.bid_id = a.bid_id)}),
		'0',
		"$label: every acknowledged bid is there with its creation event");
	my $ids = join(', ', @withdrawn);
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM unnest(ARRAY[$ids]::bigint[]) AS w(bid_id)
		 WHERE NOT EXISTS (SELECT 1 FROM bidguard_bids AS b
		                    WHERE b.bid_id = w.bid_id AND b.status = 'withdrawn')
		    OR NOT EXISTS (SELECT 1 FROM bidguard_events AS e
		                    WHERE e.bid_id = w.bid_id AND e.new_status = 'withdrawn'
		                      AND e.detail->>'reason' = 'ack')}),
		'0',
		"$label: every acknowledged withdrawal is there with its event");
	return;
}

# After a restart: invariants, locks, and the functions still work on the
# raced postings.
sub check_after_restart
{
	my ($label) = @_;
	check_bid_invariants($node, $label);
	for my $p (1 .. $POSTINGS)
	{
		my $res = $node->safe_psql(
			'postgres', qq{
			SET lock_timeout = '5s';
			SELECT count(*) FROM bidguard_create_bid('crash', 'p$p');
			SELECT count(*) FROM bidguard_bids
			 WHERE marketplace_id = 'crash' AND posting_id = 'p$p'
			   AND status IN ('pending', 'submitted')});
		is($res, "1\n1", "$label: posting p$p has exactly one active bid after create_bid");
	}
	return;
}

#
# Round 1: SIGKILL a backend that holds a posting lock.
#
my $load = start_load('kill9');
wait_for_load($load, 'kill9');
# The victim: a pgbench backend holding a posting lock (looked for in one
# session, for up to 30 s).
my $victim = $node->safe_psql(
	'postgres', qq{
	DO \$\$
	DECLARE
		victim int;
	BEGIN
		FOR i IN 1 .. 3000 LOOP
			SELECT l.pid INTO victim
			  FROM (SELECT pid FROM pg_locks WHERE $BIDGUARD_POSTING_LOCK_SQL AND granted) AS l
			  JOIN pg_stat_activity AS a USING (pid)
			 WHERE a.application_name = 'bidguard-load'
			 LIMIT 1;
			EXIT WHEN victim IS NOT NULL;
			PERFORM pg_sleep(0.01);
			PERFORM pg_stat_clear_snapshot();
		END LOOP;
		PERFORM set_config('bidguard_test.victim', coalesce(victim::text, ''), false);
	END
	\$\$;
	SELECT current_setting('bidguard_test.victim')});
like($victim, qr/^\d+$/, 'found a pgbench backend holding a posting lock');
my $log_offset = -s $node->logfile;
note "killing backend $victim with SIGKILL";
kill 'KILL', $victim;
finish_load($load, 'kill9');
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back after the crash';
# PostgreSQL 15 to 17 say "server process (PID n)", 18 names the process
# type: "client backend (PID n)".
ok( $node->log_contains(
		qr/(?:server process|client backend) \(PID $victim\) was terminated by signal 9/,
		$log_offset),
	'the postmaster saw the backend die of SIGKILL');
ok($node->log_contains(qr/all server processes terminated; reinitializing/, $log_offset),
	'the postmaster reinitialized');
check_acknowledged($load, 'after SIGKILL');
check_after_restart('after SIGKILL');

#
# Round 2: immediate shutdown under load, then start.
#
$load = start_load('immediate');
wait_for_load($load, 'immediate');
$node->stop('immediate');
finish_load($load, 'immediate');
$node->start;
check_acknowledged($load, 'after immediate shutdown');
check_after_restart('after immediate shutdown');

$node->stop;
done_testing();
