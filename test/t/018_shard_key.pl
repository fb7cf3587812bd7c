
# Copyright (c) bidguard contributors

# test/t/018_shard_key.pl
#	  bidguard_shard_key() is the same function outside the server: the
#	  Python of examples/python/shard_key.py (doc/api.md's routing recipe)
#	  and the server agree on 6,000 keys — ASCII, multibyte, long, empty,
#	  pairs whose parts hold what a separator would confuse, and bigints at
#	  both ends of their range — in a UTF8 database and in a LATIN1 one (the
#	  key is hashed as UTF-8 whatever the database encoding).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $python = '/usr/bin/python3';
plan skip_all => 'python3 is not installed' unless -x $python;
my $script = "$FindBin::RealBin/../../examples/python/shard_key.py";

my $node = bidguard_node('shard_key');
$node->safe_psql('postgres',
	q{CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('latin1', 'CREATE EXTENSION bidguard');

# The keys, generated in SQL from a fixed seed, one tab-separated row each.
my $keys_sql = q{
	SELECT setseed(0.1204);
	CREATE TABLE k (n int PRIMARY KEY, a text, b text, i bigint);
	INSERT INTO k
	SELECT n,
	       CASE n % 4
	         WHEN 0 THEN 'posting-' || n
	         WHEN 1 THEN repeat(chr(65 + (random() * 57)::int), (random() * 300)::int)
	         WHEN 2 THEN chr(192 + (random() * 60)::int) || 'é' || n || 'ß'
	         ELSE '' END,
	       CASE WHEN n % 3 = 0 THEN NULL
	            WHEN n % 3 = 1 THEN 'ebay-' || (random() * 1e6)::int
	            ELSE 'Ünïcode ' || chr(224 + n % 30) END,
	       CASE n % 5 WHEN 0 THEN 9223372036854775807 - n WHEN 1 THEN -9223372036854775808 + n
	            ELSE ((random() - 0.5) * 2e18)::bigint END
	  FROM generate_series(1, 2000) AS n;
};

# psql talks UTF-8 with both databases; the server converts.
$ENV{PGCLIENTENCODING} = 'UTF8';
for my $db ('postgres', 'latin1')
{
	$node->safe_psql($db, $keys_sql);
	# Three inputs per row: the text alone, the pair (text, text), the bigint.
	my $rows = $node->safe_psql($db, q{
		SELECT a, '', bidguard_shard_key(a) FROM k
		UNION ALL SELECT a, b, bidguard_shard_key(a, b) FROM k WHERE b IS NOT NULL
		UNION ALL SELECT i::text, '', bidguard_shard_key(i) FROM k
	}, extra_params => [ '-F', "\t", '-A', '-t' ]);
	my (@input, @expected);
	for my $line (split /\n/, $rows)
	{
		my ($a, $b, $v) = split /\t/, $line, -1;
		push @input, $b eq '' ? $a : "$a\t$b";
		push @expected, $v;
	}
	cmp_ok(scalar(@input), '>=', 5000, "$db: keys to compare");
	my ($out, $err) = ('', '');
	my $in = join('', map { "$_\n" } @input);
	utf8::encode($in) if utf8::is_utf8($in);
	IPC::Run::run([ $python, $script, '--stdin' ], '<', \$in, '>', \$out, '2>', \$err);
	is($? >> 8, 0, "$db: shard_key.py ran") or diag $err;
	my @got = split /\n/, $out;
	my @wrong = grep { ($got[$_] // '') ne $expected[$_] } 0 .. $#expected;
	is(scalar(@wrong), 0, "$db: Python and the server agree on " . scalar(@expected) . " keys")
	  or diag join("\n", map { "key <$input[$_]>: server $expected[$_], python " . ($got[$_] // '?') } @wrong[0 .. 4]);
}

# The two databases agree with each other too (a LATIN1 database hashes the
# UTF-8 bytes of its text, not its own).
is($node->safe_psql('latin1', q{SELECT bidguard_shard_key('ebay', 'Ünïcode é')}),
	$node->safe_psql('postgres', q{SELECT bidguard_shard_key('ebay', 'Ünïcode é')}),
	'LATIN1 and UTF8 databases route a key alike');

# The partition doc/api.md shows.
my ($out, $err) = ('', '');
IPC::Run::run([ $python, $script, '--partitions', '4', 'ebay', 'posting-42' ], '>', \$out, '2>', \$err);
chomp $out;
is($out, $node->safe_psql('postgres', q{SELECT bidguard_shard_key('ebay', 'posting-42') & 3}),
	'--partitions is the low bits, as PL/Proxy takes them');
IPC::Run::run([ $python, $script, '--partitions', '3', 'x' ], '>', \$out, '2>', \$err);
is($? >> 8, 2, 'a partition count that is not a power of 2 is refused');

$node->stop;
done_testing();
