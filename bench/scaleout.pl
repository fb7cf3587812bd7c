# bench/scaleout.pl — run by bench/scaleout.sh (`make bench-scaleout`).
#
# Throughput through a PL/Proxy proxy (2 shards) and through a Citus
# coordinator (2 workers, bidguard_citus_distribute(), 32 shards per table)
# against one bidguard server, on this machine, in one run, interleaved: for
# each workload, ROUNDS x (single, proxy, citus), SECONDS each, CLIENTS
# clients, tables emptied between runs.  Citus is left out when it is not
# installed.
#   create_bid   a bid for one of 100,000 postings
#   try_trade    a trade for one of 10,000 bots, cooldown 1 s
# Prints a TSV line per run and the median ratio proxy / single per workload.
# Every server shares the same 2 cores: this measures what routing costs
# (an extra hop and a connection per shard per proxy backend), not what more
# machines would add.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../test/scaleout", "$FindBin::RealBin/../test/t";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;
use ScaleoutTest;

my $seconds = $ENV{BENCH_SECONDS} // 8;
my $rounds = $ENV{BENCH_ROUNDS} // 3;
my $clients = $ENV{BENCH_CLIENTS} // 16;
my $out = $ENV{BENCH_OUT} // '/dev/stdout';

my $single = bidguard_node('single', conf => "max_connections = 120\nsynchronous_commit = off\n");
my ($proxy, $shards) = plproxy_cluster(shards => 2);
$_->append_conf('postgresql.conf', "synchronous_commit = off\n"), $_->reload for @$shards;
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
my ($coordinator, $workers) = (undef, []);
if (-e "$sharedir/extension/citus.control")
{
	($coordinator, $workers) = citus_cluster(workers => 2);
	$_->append_conf('postgresql.conf', "synchronous_commit = off\n"), $_->reload for ($coordinator, @$workers);
	citus_distribute($coordinator);
}
my @targets = ('single', 'proxy', $coordinator ? ('citus') : ());

my %scripts = (
	create_bid => "\\set p random(1, 100000)\nSELECT * FROM bidguard_create_bid('bench', 'p-:p');\n",
	try_trade => "\\set b random(1, 10000)\nSELECT * FROM bidguard_try_trade(:b);\n",
);
my $reset = q{TRUNCATE bidguard_trades, bidguard_bids, bidguard_events};
sub setup_bots
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{SELECT bidguard_set_cooldown(b, '1 s') FROM generate_series(1, 10000) AS b});
}
setup_bots($single);
setup_bots($proxy);
# On Citus a call per row of a query is not delegated; bots are plain rows.
$coordinator->safe_psql('postgres',
	q{INSERT INTO bidguard_bots (bot_id, cooldown) SELECT b, '1 s' FROM generate_series(1, 10000) AS b})
  if $coordinator;

open(my $fh, '>>', $out) or die "$out: $!";
print $fh join("\t", qw(workload target round tps)) . "\n";
my %tps;
for my $round (1 .. $rounds)
{
	for my $w (sort keys %scripts)
	{
		for my $target (@targets)
		{
			if ($target eq 'single') { $single->safe_psql('postgres', $reset) }
			elsif ($target eq 'proxy') { $_->safe_psql('postgres', $reset) for @$shards }
			else
			{
				$coordinator->safe_psql('postgres', 'TRUNCATE bidguard_trades, bidguard_bids');
				$_->safe_psql('postgres', 'TRUNCATE bidguard_events') for ($coordinator, @$workers);
			}
			my $node = $target eq 'single' ? $single : $target eq 'proxy' ? $proxy : $coordinator;
			my $h = start_pgbench($node, "$w-$target-$round", "-c $clients -j 2 -T $seconds",
				{ $w => $scripts{$w} });
			my $r = finish_pgbench($h);
			die "pgbench failed: $r->{stderr}" if $r->{status} != 0;
			push @{ $tps{$w}{$target} }, $r->{tps};
			print $fh join("\t", $w, $target, $round, sprintf('%.0f', $r->{tps})) . "\n";
		}
	}
}
sub median { my @s = sort { $a <=> $b } @_; return $s[ int($#s / 2) ] }
for my $w (sort keys %tps)
{
	for my $target (grep { $_ ne 'single' } @targets)
	{
		my @ratios = map { $tps{$w}{$target}[$_] / $tps{$w}{single}[$_] } 0 .. $rounds - 1;
		my @sorted = sort { $a <=> $b } @ratios;
		printf $fh "# %s: single %.0f tps, %s %.0f tps (medians): %s/single %.2fx (rounds %.2f-%.2f)\n",
		  $w, median(@{ $tps{$w}{single} }), $target, median(@{ $tps{$w}{$target} }), $target,
		  median(@ratios), $sorted[0], $sorted[-1];
	}
}
close $fh;
ok(1, 'bench ran');
$_->stop for ($single, $proxy, @$shards, ($coordinator ? ($coordinator, @$workers) : ()));
done_testing();
