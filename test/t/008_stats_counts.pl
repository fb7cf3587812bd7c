
# Copyright (c) bidguard contributors

# test/t/008_stats_counts.pl
#	  After a pgbench run of known size, bidguard_stats matches what the run
#	  produced: bids created = bids in the table, created + deduplicated =
#	  calls; trades executed = trades in the table, executed + cooldown +
#	  busy = calls; lock acquisitions and waits add up.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('statscounts');
$node->safe_psql('postgres', q{
	SELECT bidguard_set_cooldown(b, '200 ms') FROM generate_series(1, 4) AS b;
	SELECT bidguard_stats_reset();
});

my $clients = 8;
my $per_client = 400;
my $r = run_pgbench(
	$node, 'counts', "-c $clients -j 2 -t $per_client",
	{
		'bid@1' => qq{\\set p random(1, 50)
SELECT created FROM bidguard_create_bid('sc', 'p' || :p);
},
		'trade@1' => qq{\\set b random(1, 4)
SELECT reason FROM bidguard_try_trade(:b, '{}', '0');
},
	});
is($r->{status}, 0, 'pgbench ran cleanly');
my ($calls) = $r->{stdout} =~ /number of transactions actually processed: (\d+)/;
is($calls, $clients * $per_client, 'all transactions were processed');

my $s = $node->safe_psql('postgres', q{
	SELECT s.bids_created, s.bids_deduplicated, s.trades_executed,
	       s.trades_rejected_cooldown, s.trades_rejected_busy,
	       s.lock_acquired, s.lock_waited, s.lock_timeouts,
	       (SELECT count(*) FROM bidguard_bids),
	       (SELECT count(*) FROM bidguard_trades)
	  FROM bidguard_stats AS s});
my ($created, $dedup, $executed, $cooldown, $busy, $acquired, $waited, $timeouts,
	$bids, $trades) = split /\|/, $s;
note "stats: $s";

is($created, $bids, 'bids_created equals the bids in the table');
is($executed, $trades, 'trades_executed equals the trades in the table');
my $bid_calls = $created + $dedup;
my $trade_calls = $executed + $cooldown + $busy;
is($bid_calls + $trade_calls, $calls,
	'every call was counted once: created + deduplicated + executed + cooldown + busy');
cmp_ok($dedup, '>', 0, 'some bids were deduplicated');
cmp_ok($cooldown, '>', 0, 'some trades were refused for the cooldown');
# every create_bid call takes the posting lock; every try_trade call that
# was not busy took the bot's lock
is($acquired, $bid_calls + $executed + $cooldown,
	'lock_acquired = bid calls + trade calls that got the bot');
is($timeouts, 0, 'no lock wait timed out (no bounded waits in this run)');
cmp_ok($waited, '<=', $bid_calls, 'only posting locks were waited for');

$node->stop;
done_testing();
