
# Copyright (c) bidguard contributors

# test/t/002_dump_restore.pl
#	  bidguard's tables hold user data (SPEC §1): pg_dump keeps every row of
#	  bidguard_bids, bidguard_events, bidguard_bots and bidguard_trades, and
#	  restoring them neither loses, changes nor invents anything.  Bids in
#	  every status, made through the functions and by plain SQL (moved and
#	  deleted ones too, ids full of characters COPY must escape), and trades
#	  admitted, filled and failed under a cooldown that was raised later, are
#	  dumped with pg_dump -Fc and restored with pg_restore (serially, with
#	  --single-transaction, and with the README's parallel recipe: -j for
#	  everything but bidguard's data, then that data serially), and with a
#	  plain-format pg_dump | psql.  Each copy must be row for row identical,
#	  its identity sequences must go on after the restored rows, and the
#	  guards must work on it.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('dump');

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION bidguard');

fill_sample_data($node, 'src');

check_bid_invariants($node, 'source', dbname => 'src');

is( $node->safe_psql(
		'src', q{
	SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM bidguard_bids}),
	'expired,failed,lost,pending,submitted,withdrawn,won',
	'the source has bids in every status');
is( $node->safe_psql(
		'src', q{
	SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM bidguard_events}),
	'bid_created,bid_deleted,bid_moved,bid_status_changed,trade_executed,trade_failed,trade_filled',
	'the source has every kind of bid event, and trade events');
is( $node->safe_psql(
		'src', q{
	SELECT EXISTS (SELECT 1
	                 FROM bidguard_trades AS a
	                 JOIN bidguard_trades AS b ON b.bot_id = a.bot_id AND b.trade_id > a.trade_id
	                 JOIN bidguard_bots AS o ON o.bot_id = a.bot_id
	                WHERE a.status <> 'failed' AND b.status <> 'failed'
	                  AND abs(extract(epoch FROM coalesce(a.filled_at, a.created_at)
	                                           - coalesce(b.filled_at, b.created_at)))
	                      < extract(epoch FROM o.cooldown))}),
	't', 'the source has history closer than today\'s cooldown (raised after admission)');
is($node->safe_psql('src', 'SELECT count(*) FROM bidguard_cooldown_violations'),
	'0', '... which the audit does not count: each trade is judged by the cooldown it was admitted under');

my $src_fp = $node->safe_psql('src', $FINGERPRINT_SQL);
my $src_max = $node->safe_psql('src', 'SELECT max(bid_id) FROM bidguard_bids');
my $src_events = $node->safe_psql('src', 'SELECT count(*) FROM bidguard_events');
note "source: $src_fp; max bid_id $src_max";

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', 'src' ],
	'pg_dump -Fc of the source');

# The checks every restored copy must pass.
sub check_copy
{
	my ($db, $label) = @_;
	is($node->safe_psql($db, $FINGERPRINT_SQL),
		$src_fp, "$label: every row of the bids, events, bots and trades is identical");
	is( $node->safe_psql(
			$db, q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
		'1.0',
		"$label: the extension was re-created, not its tables loose");
	check_bid_invariants($node, $label, dbname => $db);

	# The guards work on the restored data.
	my ($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('fn', 'posting-1')});
	like($err, qr/bidguard_bids_one_active/,
		"$label: a second active bid for a restored posting is refused");
	($ret, $out, $err) = $node->psql($db,
		q{UPDATE bidguard_bids SET status = 'pending' WHERE status = 'won'});
	like($err, qr/cannot move|bidguard_bid_transition/,
		"$label: a restored won bid cannot leave its terminal status");
	is( $node->safe_psql(
			$db, q{
		SELECT b.bid_id = c.bid_id AND NOT c.created
		  FROM bidguard_create_bid('fn', 'posting-2') AS c,
		       bidguard_bids AS b
		 WHERE (b.marketplace_id, b.posting_id) = ('fn', 'posting-2') AND b.status = 'submitted'}),
		't',
		"$label: create_bid returns the restored active bid");

	# A new bid goes on after the restored ones, with exactly one new event.
	my $new = $node->safe_psql($db,
		q{SELECT bid_id || ' ' || created::int FROM bidguard_create_bid('fn', 'after restore')});
	my ($new_id, $created) = split / /, $new;
	is($created, '1', "$label: create_bid after the restore creates a bid");
	cmp_ok($new_id, '>', $src_max,
		"$label: its bid_id ($new_id) is greater than every restored one ($src_max)");
	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_events'),
		$src_events + 1,
		"$label: the restore invented no event; the new bid added one");
	is( $node->safe_psql(
			$db, qq{
		SELECT count(*) FROM bidguard_events AS e JOIN bidguard_bids AS b
		    ON e.event_id = b.atomic_event_id
		 WHERE b.bid_id = $new_id AND e.kind = 'bid_created'}),
		'1',
		"$label: the new bid has its creation event");
	check_bid_invariants($node, "$label after a new bid", dbname => $db);
	return;
}

# pg_restore, serially.
$node->safe_psql('postgres', 'CREATE DATABASE dst_fc');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst_fc', $dump ],
	'pg_restore of the custom-format dump');
check_copy('dst_fc', 'pg_restore');

# pg_restore -j: PostgreSQL's parallel restore does not keep the
# foreign-key order pg_dump gives extension tables' data, so the README's
# recipe restores everything but bidguard's data in parallel, then that data
# serially in the archive's order (events, bids, bots, trades).
my $list_all = $node->basedir . '/all.list';
my $list_bg = $node->basedir . '/bidguard.list';
{
	my $toc = `pg_restore -l $dump`;
	my @lines = split /\n/, $toc;
	open my $fa, '>', $list_all or die;
	open my $fb, '>', $list_bg or die;
	for (@lines)
	{
		if (/ TABLE DATA \S+ bidguard_/) { print $fb "$_\n"; }
		else { print $fa "$_\n"; }
	}
	close $fa;
	close $fb;
}
$node->safe_psql('postgres', 'CREATE DATABASE dst_j2');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-j', '2', '-L', $list_all, '-d', 'dst_j2', $dump ],
	'pg_restore -j 2 of everything but bidguard\'s data');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-L', $list_bg, '-d', 'dst_j2', $dump ],
	'then bidguard\'s data, serially');
check_copy('dst_j2', 'pg_restore -j 2 recipe');

# pg_restore in a single transaction.
$node->safe_psql('postgres', 'CREATE DATABASE dst_1');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '--single-transaction', '-d', 'dst_1', $dump ],
	'pg_restore --single-transaction of the custom-format dump');
check_copy('dst_1', 'pg_restore --single-transaction');

# Plain format: pg_dump | psql.
$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
{
	my ($stderr_dump, $stderr_psql) = ('', '');
	my $ok = IPC::Run::run(
		[ 'pg_dump', '-Fp', '-h', $node->host, '-p', $node->port, '-d', 'src' ],
		'2>', \$stderr_dump, '|',
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $node->host,
			'-p', $node->port, '-d', 'dst_plain'
		],
		'>', \my $stdout_psql, '2>', \$stderr_psql);
	ok($ok, 'pg_dump -Fp | psql');
	is($stderr_dump . $stderr_psql, '', 'pg_dump | psql: no error, no warning');
}
check_copy('dst_plain', 'pg_dump | psql');

# And the source, untouched by all the dumping.
is($node->safe_psql('src', $FINGERPRINT_SQL), $src_fp, 'the source is unchanged');

$node->stop;
done_testing();
