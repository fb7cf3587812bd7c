
# Copyright (c) bidguard contributors

# test/t/004_moved_bid_lock_order.pl
#	  The locking protocol of src/bids.c: the lock order is always posting
#	  lock, then row lock, so that bidguard's functions never wait for each
#	  other in a cycle.  A bid moved to another posting by a plain UPDATE
#	  while bidguard_withdraw_bid() waits for its row must not make that call
#	  wait for the new posting's lock while it holds the row:
#
#	    s1: BEGIN; UPDATE bidguard_bids SET posting_id = 'B' WHERE bid_id = X;
#	    s2: SELECT * FROM bidguard_withdraw_bid(X);            -- waits for s1's row
#	    s3: BEGIN; SELECT * FROM bidguard_withdraw_posting('m', 'B');  -- holds B
#	    s1: COMMIT;      -- s2 locks the row and finds it moved to B, whose lock
#	                     -- s3 holds: s2 fails at once with 40001 (retry)
#	    s3: SELECT * FROM bidguard_set_bid_status(X, 'submitted');  -- proceeds
#
#	  No deadlock; the data and the trail stay consistent and no lock is left.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('lockorder', conf => "deadlock_timeout = '100ms'\n");

my $bid = $node->safe_psql('postgres',
	q{SELECT bid_id FROM bidguard_create_bid('m', 'A', '{"n": 1}')});

my $s1 = $node->background_psql('postgres');
my $s2 = $node->background_psql('postgres', on_error_stop => 0);
my $s3 = $node->background_psql('postgres', on_error_stop => 0);
my $s2_pid = $s2->query_safe('SELECT pg_backend_pid()');

my $log_offset = -s $node->logfile;

$s1->query_safe(
	"BEGIN; UPDATE bidguard_bids SET posting_id = 'B' WHERE bid_id = $bid");
$s2->query_until(qr/s2 started/,
	"\\echo s2 started\nSELECT 's2', * FROM bidguard_withdraw_bid($bid, 's2');\n");
$node->poll_query_until('postgres',
	"SELECT wait_event = 'transactionid' FROM pg_stat_activity WHERE pid = $s2_pid")
  or die 's2 did not wait for the row';
$s3->query_safe(
	q{BEGIN; SELECT 's3', * FROM bidguard_withdraw_posting('m', 'B', 's3')});
$s1->query_safe('COMMIT');
# s2 ends on its own: it does not wait for B while holding the row.
$node->poll_query_until('postgres',
	"SELECT state = 'idle' FROM pg_stat_activity WHERE pid = $s2_pid")
  or die 's2 did not finish';
ok($node->log_contains(qr/could not serialize access due to concurrent update/, $log_offset),
	's2 fails with a retryable serialization failure instead of waiting');
my $s3_out = $s3->query(
	"SELECT 's3', * FROM bidguard_set_bid_status($bid, 'submitted', 's3')");
$s3->query('COMMIT');
note "s3: $s3_out";
like($s3_out, qr/^s3\|$bid\|t\|pending\|submitted$/m, 's3 submits the bid');
$s1->quit;
$s2->quit;
$s3->quit;

ok(!$node->log_contains(qr/deadlock detected/, $log_offset),
	'no deadlock between bidguard_withdraw_bid and bidguard_set_bid_status after a move');
is($node->safe_psql('postgres', "SELECT status FROM bidguard_bids WHERE bid_id = $bid"),
	'submitted', 'the bid is submitted; the failed withdrawal left nothing behind');

# s2's retry goes through.
is($node->safe_psql('postgres',
		"SELECT withdrawn::text || ' ' || status FROM bidguard_withdraw_bid($bid, 's2 retry')"),
	'true withdrawn', 'the retried withdrawal withdraws the moved bid');

# Whatever the outcome, the data and the trail are consistent.
check_bid_invariants($node, 'after the move');
is( $node->safe_psql(
		'postgres', "SELECT posting_id FROM bidguard_bids WHERE bid_id = $bid"),
	'B',
	'the bid is on the posting it was moved to');

$node->stop;
done_testing();
