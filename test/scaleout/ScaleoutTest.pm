
# Copyright (c) bidguard contributors

# test/scaleout/ScaleoutTest.pm
#	  What the scale-out tests share: a PL/Proxy cluster (a proxy and N
#	  shards) and a Citus cluster (a coordinator and workers) of throwaway
#	  nodes, pgbench runs started side by side, the acknowledged-calls
#	  driver, and the cross-node invariants.
#
#	  Loaded with "use FindBin; use lib $FindBin::RealBin, ../t;" so that
#	  BidguardTest (SPEC §9's invariants per node) is found too.

package ScaleoutTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  plproxy_cluster
  citus_cluster
  citus_node
  citus_distribute
  error_of
  start_pgbench
  finish_pgbench
  run_acked_calls
  check_no_key_on_two_nodes
);

# doc/scaleout.md's set-up blocks (```sql-shard, ```sql-proxy), so that the
# cluster is made the way doc/scaleout.md tells users to make it.
sub readme_block
{
	my ($lang) = @_;
	my $src = $ENV{BIDGUARD_SRCDIR} // "$FindBin::RealBin/../..";
	my $readme = slurp_file("$src/doc/scaleout.md");
	$readme =~ /^```\Q$lang\E\n(.*?)^```$/ms
	  or BAIL_OUT("doc/scaleout.md has no ```$lang block");
	return $1;
}

# A PL/Proxy cluster: $params{shards} shard nodes (default 2), each with
# bidguard preloaded, bidguard and bidguard_shard created and configured as
# partition i of the shard count, and a proxy node with plproxy and
# bidguard_proxy, whose server "bidguard" names the shards: doc/scaleout.md's
# blocks, with this cluster's partitions and connection strings.  Returns
# ($proxy, [$shard0, $shard1, ...]).
sub plproxy_cluster
{
	my (%params) = @_;
	my $n = $params{shards} // 2;
	my $shard_sql = readme_block('sql-shard');
	my $proxy_sql = readme_block('sql-proxy');
	my @shards;
	for my $i (0 .. $n - 1)
	{
		my $node = PostgreSQL::Test::Cluster->new("shard$i");
		$node->init;
		$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bidguard'
max_connections = 120
log_min_messages = warning
lock_timeout = '30s'
deadlock_timeout = '100ms'
});
		$node->start;
		(my $sql = $shard_sql) =~ s/bidguard_shard_configure\(2, '\{0\}'\)/bidguard_shard_configure($n, '{$i}')/
		  or BAIL_OUT('doc/scaleout.md: the sql-shard block does not call bidguard_shard_configure(2, \'{0}\')');
		$node->safe_psql('postgres', $sql);
		push @shards, $node;
	}
	my $proxy = PostgreSQL::Test::Cluster->new('proxy');
	$proxy->init;
	$proxy->append_conf('postgresql.conf', "max_connections = 120\nlog_min_messages = warning\n");
	$proxy->start;
	my $options = join(', ',
		map { "p$_ 'host=" . $shards[$_]->host . ' port=' . $shards[$_]->port . " dbname=postgres'" }
		  0 .. $n - 1);
	$proxy_sql =~ s/OPTIONS \(p0 [^)]*\)/OPTIONS ($options)/
	  or BAIL_OUT('doc/scaleout.md: the sql-proxy block has no OPTIONS (p0 ...)');
	$proxy->safe_psql('postgres', $proxy_sql);
	return ($proxy, \@shards);
}

# A Citus cluster: a coordinator and $params{workers} workers (default 2),
# each with citus and bidguard preloaded and doc/scaleout.md's settings, citus
# created on each, the workers added to the coordinator, and bidguard
# created on the coordinator (Citus creates it on the workers).  Nothing is
# distributed yet: citus_distribute runs doc/scaleout.md's block.  Returns
# ($coordinator, [$worker1, ...]).  $params{version}: bidguard's version
# (default: the control file's).
sub citus_cluster
{
	my (%params) = @_;
	my $n = $params{workers} // 2;
	my $coordinator = citus_node('coordinator');
	my @workers = map { citus_node("worker$_") } 1 .. $n;
	$coordinator->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('" . $coordinator->host . "', " . $coordinator->port . ')');
	$coordinator->safe_psql('postgres',
		"SELECT citus_add_node('" . $_->host . "', " . $_->port . ')') for @workers;
	$coordinator->safe_psql('postgres',
		'CREATE EXTENSION bidguard' . ($params{version} ? " VERSION '$params{version}'" : ''));
	return ($coordinator, \@workers);
}

# One node of a Citus cluster, started, with citus created (citus_cluster;
# a worker added later is made the same way).  citus.local_hostname: the
# rebalancer connects to its own node, here through the socket directory.
sub citus_node
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus,bidguard'
citus.enable_unsafe_triggers = on
citus.local_hostname = '@{[ $node->host ]}'
max_prepared_transactions = 100
max_connections = 150
log_min_messages = warning
lock_timeout = '30s'
deadlock_timeout = '100ms'
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# doc/scaleout.md's ```sql-citus block, on the coordinator: bidguard_citus and
# the layout.  Returns what bidguard_citus_distribute() reported.
sub citus_distribute
{
	my ($coordinator) = @_;
	return $coordinator->safe_psql('postgres', readme_block('sql-citus'));
}

# The error $sql raises on $node, verbose (with its SQLSTATE and
# CONSTRAINT NAME lines); '' when it succeeds.
sub error_of
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $rc == 0 ? '' : $err;
}

# Start pgbench against host/port (a node, or any libpq target) with the
# scripts of $files ("name@weight" => text), in the background.  Returns a
# handle for finish_pgbench.
sub start_pgbench
{
	my ($node, $label, $opts, $files, %params) = @_;
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port, split(/\s+/, $opts));
	for my $key (sort keys %$files)
	{
		(my $fn = $key) =~ s/\@\d+$//;
		my $path = $node->basedir . "/$label-$fn.pgbench";
		PostgreSQL::Test::Utils::append_to_file($path, $files->{$key});
		(my $weight = $key) =~ s/^[^@]*//;
		push @cmd, '-f', $path . $weight;
	}
	push @cmd, $params{dbname} // 'postgres';
	note "$label: starting: " . join(' ', @cmd);
	my %h = (label => $label, stdout => '', stderr => '');
	$h{run} = IPC::Run::start(\@cmd, '<', \undef, '>', \$h{stdout}, '2>', \$h{stderr},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%h;
}

# Wait for a start_pgbench run; returns {status, processed, failed, stdout,
# stderr} and logs pgbench's report.
sub finish_pgbench
{
	my ($h) = @_;
	$h->{run}->finish;
	my $status = $? >> 8;
	note "$h->{label}: pgbench exited with status $status\n$h->{stdout}";
	note "$h->{label}: stderr:\n$h->{stderr}" if $h->{stderr} ne '';
	my %r = (status => $status, stdout => $h->{stdout}, stderr => $h->{stderr});
	$r{processed} = $1 if $h->{stdout} =~ /number of transactions actually processed: (\d+)/;
	$r{tps} = $1 if $h->{stdout} =~ /tps = ([\d.]+)/;
	$r{failed} = $1 if $h->{stdout} =~ /number of failed transactions: (\d+)/;
	$r{failed} //= 0;
	$r{processed} //= 0;
	return \%r;
}

# Run test/scaleout/acked_calls.py against $dsn with the given options, and
# $during->() while it runs (after $params{wait_before} seconds).  Returns
# the list of decoded JSON records it printed.
sub run_acked_calls
{
	my ($dsn, $opts, $during, %params) = @_;
	# Its output goes to a file: a pipe that nobody reads while $during
	# sleeps would stop the workers once it is full.
	my $file = PostgreSQL::Test::Utils::tempdir() . '/acked_calls.jsonl';
	my $err = '';
	my @cmd = ('python3', "$FindBin::RealBin/acked_calls.py", '--dsn', $dsn, @$opts);
	note 'acked calls: ' . join(' ', @cmd);
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', $file, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$during->($h) if $during;
	$h->finish;
	is($? >> 8, 0, 'acked calls: the driver ran to its end') or diag $err;
	my @records = map { decode_json($_) } grep { /^\{/ } split /\n/, slurp_file($file);
	return \@records;
}

# No key on two nodes: $sql, run on every node, lists keys (one per row);
# the union must have no repeats.
sub check_no_key_on_two_nodes
{
	my ($label, $nodes, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my %seen;
	my @twice;
	for my $i (0 .. $#$nodes)
	{
		for my $key (split /\n/, $nodes->[$i]->safe_psql('postgres', $sql))
		{
			push @twice, "$key (nodes $seen{$key} and $i)" if defined $seen{$key};
			$seen{$key} = $i;
		}
	}
	is(scalar(@twice), 0, "$label: no key on two nodes (" . scalar(keys %seen) . ' keys)')
	  or diag join("\n", @twice[0 .. ($#twice < 9 ? $#twice : 9)]);
	return scalar(keys %seen);
}

1;
