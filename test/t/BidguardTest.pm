
# Copyright (c) bidguard contributors

# test/t/BidguardTest.pm
#	  What bidguard's TAP tests share: a node set up the way bidguard runs in
#	  production (preloaded), a pgbench runner that logs pgbench's report and
#	  returns its counts, and the bid invariants of SPEC §9 as SQL checks.
#
#	  Loaded with "use FindBin; use lib $FindBin::RealBin;" so that it is
#	  found whatever prove's -I options are.

package BidguardTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  bidguard_node
  run_pgbench
  check_bid_invariants
  bidguard_locks_held
  $ALLOWED_TRANSITIONS_SQL
  $BIDGUARD_LOCK_CLASSES_SQL
  $BIDGUARD_POSTING_LOCK_SQL
);

# The allowed transitions of SPEC §3, as a VALUES list.
our $ALLOWED_TRANSITIONS_SQL = q{(VALUES
	('pending', 'submitted'), ('pending', 'withdrawn'), ('pending', 'failed'),
	('pending', 'expired'), ('submitted', 'won'), ('submitted', 'lost'),
	('submitted', 'withdrawn'), ('submitted', 'expired'))};

# bidguard's locks as pg_locks shows them (README): advisory locks whose
# objsubid is bidguard's lock class, 25089 for a posting, 25090 for a bot,
# 25091 for bidguard_lock().
our $BIDGUARD_LOCK_CLASSES_SQL =
  q{locktype = 'advisory' AND objsubid IN (25089, 25090, 25091)};
our $BIDGUARD_POSTING_LOCK_SQL = q{locktype = 'advisory' AND objsubid = 25089};

# A started node with bidguard preloaded and created in database "postgres".
sub bidguard_node
{
	my ($name, %params) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $params{init} // {} });
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'bidguard'
max_connections = 60
log_min_messages = warning
log_error_verbosity = default
lock_timeout = '60s'
deadlock_timeout = '100ms'
} . ($params{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION bidguard');
	return $node;
}

# Run pgbench against $node; $files maps "name@weight" to script text.
# The scripts go into the node's base directory.  Returns a hash of the
# exit status, the output and the counts pgbench reported.
sub run_pgbench
{
	my ($node, $label, $opts, $files, %params) = @_;
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port,
		split(/\s+/, $opts));
	for my $key (sort keys %$files)
	{
		(my $fn = $key) =~ s/\@\d+$//;
		my $path = $node->basedir . "/$fn.pgbench";
		die "$path exists already" if -e $path;
		PostgreSQL::Test::Utils::append_to_file($path, $files->{$key});
		(my $weight = $key) =~ s/^[^@]*//;
		push @cmd, '-f', $path . $weight;
	}
	push @cmd, $params{dbname} // 'postgres';

	local $ENV{PGOPTIONS} = $params{pgoptions} if defined $params{pgoptions};
	note "$label: running: "
	  . (defined $params{pgoptions} ? "PGOPTIONS='$params{pgoptions}' " : '')
	  . join(' ', @cmd);
	my ($stdout, $stderr) = ('', '');
	my $t0 = time;
	IPC::Run::run(\@cmd, '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $status = $? >> 8;
	note "$label: pgbench exited with status $status after "
	  . (time - $t0) . " s";
	note "$label: pgbench stdout:\n$stdout";
	note "$label: pgbench stderr:\n$stderr" if $stderr ne '';

	my %r = (status => $status, stdout => $stdout, stderr => $stderr);
	$r{processed} = $1
	  if $stdout =~ /number of transactions actually processed: (\d+)/;
	$r{failed} = $1 if $stdout =~ /number of failed transactions: (\d+)/;
	$r{retried} = $1 if $stdout =~ /number of transactions retried: (\d+)/;
	$r{retries} = $1 if $stdout =~ /total number of retries: (\d+)/;
	$r{failed} //= 0;
	$r{retried} //= 0;
	return \%r;
}

# The number of bidguard locks held or awaited in the node right now.
sub bidguard_locks_held
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname // 'postgres',
		"SELECT count(*) FROM pg_locks WHERE $BIDGUARD_LOCK_CLASSES_SQL");
}

# The invariants of SPEC §9 for bids, over the whole of bidguard_bids and
# bidguard_events of $dbname (the extension in schema public).
sub check_bid_invariants
{
	my ($node, $label, %params) = @_;
	my $db = $params{dbname} // 'postgres';
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM (
			SELECT marketplace_id, posting_id FROM bidguard_bids
			 WHERE status IN ('pending', 'submitted')
			 GROUP BY marketplace_id, posting_id HAVING count(*) > 1) AS d}),
		'0',
		"$label: no posting has more than one active bid");

	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_duplicate_active_bids'),
		'0', "$label: bidguard_duplicate_active_bids is empty");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_bids AS b
		 WHERE NOT EXISTS (
			SELECT 1 FROM bidguard_events AS e
			 WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created'
			   AND e.bid_id = b.bid_id)}),
		'0',
		"$label: every bid has its creation event (event_id = atomic_event_id)");

	is( $node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM bidguard_events WHERE kind = 'bid_created')
		     - (SELECT count(*) FROM bidguard_bids)
		     - (SELECT count(*) FROM bidguard_events WHERE kind = 'bid_deleted')}),
		'0',
		"$label: as many creation events as bids (plus deleted bids)");

	is( $node->safe_psql(
			$db, qq{
		SELECT count(*) FROM bidguard_events
		 WHERE kind <> 'bid_created' AND bid_id IS NOT NULL
		   AND old_status IS NOT NULL AND new_status IS NOT NULL
		   AND old_status <> new_status
		   AND (old_status, new_status) NOT IN $ALLOWED_TRANSITIONS_SQL}),
		'0',
		"$label: every status change event is an allowed transition");

	# Each bid's events, in the order they happened, form one chain from
	# its creation to its current status: no change was lost or made from
	# a stale status, no bid left a terminal status.
	is( $node->safe_psql(
			$db, q{
		WITH ev AS (
			SELECT e.bid_id, e.kind, e.old_status, e.new_status,
			       lag(e.new_status) OVER w AS prev_status,
			       row_number() OVER w AS n
			  FROM bidguard_events AS e
			 WHERE e.bid_id IS NOT NULL AND e.new_status IS NOT NULL
			WINDOW w AS (PARTITION BY e.bid_id
			             ORDER BY e.occurred_at, e.kind <> 'bid_created'))
		SELECT count(*) FROM ev
		 WHERE (n = 1 AND (kind <> 'bid_created' OR new_status IS NULL))
		    OR (n > 1 AND (kind = 'bid_created' OR old_status IS DISTINCT FROM prev_status))}),
		'0',
		"$label: each bid's events chain from its creation, each change from the previous status");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_bids AS b
		 WHERE b.status IS DISTINCT FROM (
			SELECT e.new_status FROM bidguard_events AS e
			 WHERE e.bid_id = b.bid_id AND e.new_status IS NOT NULL
			 ORDER BY e.occurred_at DESC, e.kind <> 'bid_created' DESC
			 LIMIT 1)}),
		'0',
		"$label: every bid's status is the new status of its latest event");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_events AS e
		 WHERE e.bid_id IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM bidguard_bids AS b WHERE b.bid_id = e.bid_id)
		   AND NOT EXISTS (SELECT 1 FROM bidguard_events AS d
		                    WHERE d.bid_id = e.bid_id AND d.kind = 'bid_deleted')}),
		'0',
		"$label: no event names a bid that does not exist");

	is(bidguard_locks_held($node, $db), '0',
		"$label: no bidguard lock is held or awaited");
	# Whatever classes bidguard uses: nothing but core's advisory locks
	# (classes 1 and 2, none taken by these tests) may be left.
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid NOT IN (1, 2)}),
		'0',
		"$label: no advisory lock of any other class is held or awaited");
	return;
}

1;
