
# Copyright (c) bidguard contributors

# test/t/007_no_preload.pl
#	  Without shared_preload_libraries = 'bidguard' everything works except
#	  the statistics, which say why (55000, with a hint); adding bidguard to
#	  shared_preload_libraries and restarting brings them.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bidguard');

is($node->safe_psql('postgres',
		q{SELECT created FROM bidguard_create_bid('np', 'p1')}),
	't', 'bids work without preloading');
$node->safe_psql('postgres', q{SELECT bidguard_set_cooldown(1, '1 hour')});
is($node->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(1)}),
	'executed', 'trades work without preloading');
is($node->safe_psql('postgres',
		q{BEGIN; SELECT bidguard_lock('np', 'k', '0'); COMMIT;}),
	't', 'bidguard_lock works without preloading');

for my $sql ('SELECT * FROM bidguard_stats',
	'SELECT * FROM bidguard_lock_wait_histogram',
	'SELECT bidguard_stats_reset()')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "$sql fails without preloading");
	like($err, qr/55000: bidguard statistics are not available/, "$sql: 55000");
	like($err, qr/HINT:  Add bidguard to shared_preload_libraries and restart the server\./,
		"$sql: with the hint");
}

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'bidguard'");
$node->restart;
is($node->safe_psql('postgres',
		q{SELECT created FROM bidguard_create_bid('np', 'p2')}),
	't', 'after preloading');
is($node->safe_psql('postgres', 'SELECT bids_created FROM bidguard_stats'),
	'1', 'the statistics count from the restart on');

$node->stop;
done_testing();
