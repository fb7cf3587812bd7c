
# Copyright (c) bidguard contributors

# test/scaleout/003_citus_upgrade.pl
#	  ALTER EXTENSION bidguard UPDATE on a Citus cluster laid out by
#	  bidguard_citus: a coordinator and two workers at 1.0, distributed and
#	  in use (bids and trades through the coordinator), updated from the
#	  coordinator.  Citus runs the update on every node; every node then has
#	  a fresh install's objects; the rows, the invariants and the guards
#	  hold; bidguard_citus's functions read the new statistics; rate limits
#	  and slots work on the coordinator, their tables local to it.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../t";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;
use ScaleoutTest;

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
unless (-e "$sharedir/extension/citus.control")
{
	BAIL_OUT('Citus is not installed in this server, and BIDGUARD_REQUIRE_CITUS is set')
	  if $ENV{BIDGUARD_REQUIRE_CITUS};
	plan skip_all => 'Citus is not installed in this server (scripts/build-citus.sh, or Citus\'s packages)';
}

my ($co, $workers) = citus_cluster(workers => 2, version => '1.0');
my @nodes = ($co, @$workers);
my $version_sql = q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'};
is(join(' ', map { $_->safe_psql('postgres', $version_sql) } @nodes), '1.0 1.0 1.0',
	'bidguard 1.0 on the coordinator and, through Citus, on both workers');
note citus_distribute($co);
# Calls through the coordinator, one delegated call per statement.
$co->safe_psql('postgres', join('', map { "SELECT bidguard_create_bid('m', 'p$_');\n" } 1 .. 20));
$co->safe_psql('postgres', join('', map { "SELECT bidguard_set_cooldown($_, '1 hour');\nSELECT bidguard_try_trade($_);\n" } 1 .. 10));

my $invariants_sql = 'SELECT sum(violations) FROM bidguard_citus_invariants()';
is($co->safe_psql('postgres', $invariants_sql), '0', 'before the update: every invariant holds');
my $rows_sql = q{SELECT b.n || ' bids, ' || t.n || ' trades'
	FROM (SELECT count(*) AS n FROM bidguard_bids) AS b, (SELECT count(*) AS n FROM bidguard_trades) AS t};
my $rows_before = $co->safe_psql('postgres', $rows_sql);
is($rows_before, '20 bids, 10 trades', 'before the update: the rows, through the coordinator');

# The update, from the coordinator: Citus runs it on every node.
$co->safe_psql('postgres', 'ALTER EXTENSION bidguard UPDATE');
my $current = $co->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'bidguard'});
is(join(' ', map { $_->safe_psql('postgres', $version_sql) } @nodes), "$current $current $current",
	"ALTER EXTENSION bidguard UPDATE on the coordinator updates every node to $current");

# Every node has the new version's objects: as many functions and views of
# bidguard as a fresh install (on a database of the coordinator).
my $objects_sql = q{
	SELECT count(*) FILTER (WHERE classid = 'pg_proc'::regclass) || ' functions, '
	    || count(*) FILTER (WHERE classid = 'pg_class'::regclass) || ' relations'
	  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bidguard')};
$co->safe_psql('postgres', 'CREATE DATABASE fresh');
$co->safe_psql('fresh', 'CREATE EXTENSION bidguard');
my $fresh_objects = $co->safe_psql('fresh', $objects_sql);
is(join(' | ', map { $_->safe_psql('postgres', $objects_sql) } @nodes),
	join(' | ', ($fresh_objects) x 3), "every node has the objects of a fresh $current install ($fresh_objects)");

# The data and the guards, through the coordinator.
is($co->safe_psql('postgres', $rows_sql), $rows_before, 'after the update: the same rows');
is($co->safe_psql('postgres', $invariants_sql), '0', 'after the update: every invariant holds');
is($co->safe_psql('postgres', q{SELECT created FROM bidguard_create_bid('m', 'p7')}), 'f',
	'after the update: a posting with an active bid still dedupes');
is($co->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(3)}), 'cooldown',
	'after the update: a bot traded under 1.0 is still inside its cooldown');
is($co->safe_psql('postgres', q{SELECT created FROM bidguard_create_bid('m', 'new after the update')}), 't',
	'after the update: a new posting gets its bid');
like(join(',', split /\n/, $co->safe_psql('postgres', 'SELECT node FROM bidguard_citus_stats()')),
	qr/^[^,]+,[^,]+,[^,]+$/, "bidguard_citus_stats() reads every node's updated bidguard_stats");

# What 1.1 added, on the coordinator (its rate events are a table of the
# coordinator's own: bidguard_citus does not distribute it).
is($co->safe_psql('postgres', q{SELECT allowed FROM bidguard_rate_limit('citus:k', 1, '1 hour');} x 2),
	"t\nf", 'bidguard_rate_limit works on the updated coordinator');
is($co->safe_psql('postgres', q{SELECT reason FROM bidguard_acquire_slot('citus:s', 1)}), 'acquired',
	'bidguard_acquire_slot works on the updated coordinator');
is( $co->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'bidguard_rate%'}),
	'0', "1.1's rate tables are not distributed (local to each node)");

$_->stop for @nodes;
done_testing();
