
# Copyright (c) bidguard contributors

# test/t/014_installcheck_no_preload.pl
#	  make installcheck against a server without shared_preload_libraries =
#	  'bidguard' (preloading is optional): every pg_regress test and every
#	  isolation spec passes, run the way PGXS's installcheck runs them
#	  (--inputdir=test --load-extension=bidguard) against that server.  The
#	  statistics test takes its other branch there (expected/stats_1.out:
#	  each statistics function raises 55000 with its hint), and this test
#	  checks that it did, so the alternate output cannot pass by accident.

use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use File::Spec;
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");
my $pg_regress = $ENV{PG_REGRESS} or die 'PG_REGRESS is not set';
my $pg_isolation_regress = dirname(dirname($pg_regress)) . '/isolation/pg_isolation_regress';

my $node = PostgreSQL::Test::Cluster->new('installcheck');
$node->init;
$node->append_conf('postgresql.conf', "max_prepared_transactions = 10\n");
$node->start;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the server does not preload bidguard');

my $bindir = $node->config_data('--bindir');
sub run_suite
{
	my ($label, $driver, $dir, $ext, $db) = @_;
	my @tests = map { (File::Spec->splitpath($_))[2] =~ s/\.$ext$//r }
	  sort glob("$src/test/$dir/*.$ext");
	ok(@tests > 0, "$label: found " . scalar(@tests) . ' tests');
	my $out = $node->basedir . "/$label";
	mkdir $out;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(
		[
			$driver, "--inputdir=$src/test", "--outputdir=$out",
			"--bindir=$bindir", '--load-extension=bidguard',
			"--dbname=$db", '--host=' . $node->host, '--port=' . $node->port,
			@tests
		],
		'<', \undef, '>', \$stdout, '2>', \$stderr);
	note "$label:\n$stdout$stderr";
	ok($ok, "$label: every test passes without preloading")
	  or diag slurp_file("$out/regression.diffs");
	return $out;
}

my $regress = run_suite('regress', $pg_regress, 'sql', 'sql', 'contrib_regression');
like(slurp_file("$regress/results/stats.out"), qr/^ preloaded \n-+\n f\n/m,
	'the statistics test ran its branch for a server without preloading');
run_suite('isolation', $pg_isolation_regress, 'specs', 'spec', 'isolation_regression');

$node->stop;
done_testing();
