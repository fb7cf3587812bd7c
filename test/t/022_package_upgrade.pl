
# Copyright (c) bidguard contributors

# test/t/022_package_upgrade.pl
#	  A new release installed on a running server (apt upgrading the
#	  package), as doc/operations.md, Upgrading bidguard, tells operators to
#	  do it.
#
#	  The 1.0 release is built from its commit (test/releases.txt; its
#	  sql/bidguard.sql is sql/bidguard--1.0.sql, checked) and installed into
#	  a private copy of this server's installation, so that replacing its
#	  files touches nobody else's.  Two nodes run from that copy, one with
#	  bidguard preloaded and one without, each with a 1.0 database.  Then
#	  this release's files replace 1.0's (each written beside and renamed
#	  over, as dpkg does), and:
#	    - the new version is offered at once, and 1.0's SQL keeps working;
#	    - preloaded: every backend has the postmaster's 1.0 library, so
#	      ALTER EXTENSION bidguard UPDATE fails ("could not find function")
#	      and changes nothing until the server restarts; then it succeeds;
#	    - not preloaded: a new session updates at once, while a session that
#	      loaded the 1.0 library before keeps it, and cannot call the new
#	      version's functions until it reconnects (a pooler's long-lived
#	      server connections are such sessions).
#	  The rows written under 1.0 are there after the update.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(remove_tree);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';

# The 1.0 release's source tree: scripts/run-tests.sh makes it from the
# commit test/releases.txt names (git archive) and says where.
my $old_src = ($ENV{BIDGUARD_RELEASES} // '') . '/1.0';
plan skip_all => "no source tree of the 1.0 release (BIDGUARD_RELEASES; the commit of test/releases.txt is not in this clone's history?)"
  unless -f "$old_src/Makefile";

sub pg_config_value
{
	my ($opt) = @_;
	my $v = `'$pg_config' --$opt`;
	chomp $v;
	die "pg_config --$opt failed" if $? != 0 || $v eq '';
	return $v;
}
my $bindir = pg_config_value('bindir');
my $pkglibdir = pg_config_value('pkglibdir');
my $sharedir = pg_config_value('sharedir');

my $tmp = PostgreSQL::Test::Utils::tempdir;

# 1.0, built from its source with this server's pg_config.
my $old = "$tmp/bidguard-1.0";
system('cp', '-a', $old_src, $old) == 0 or die "copying $old_src failed";
is(slurp_file("$old/sql/bidguard.sql") =~ s/\A[^\n]*\n//r,
	slurp_file("$src/sql/bidguard--1.0.sql") =~ s/\A[^\n]*\n//r,
	"the 1.0 release's install script is sql/bidguard--1.0.sql");
my ($build_out, $build_err) = ('', '');
my $built = IPC::Run::run([ 'make', '-C', $old, '--no-print-directory', "PG_CONFIG=$pg_config" ],
	'<', \undef, '>', \$build_out, '2>', \$build_err);
ok($built, 'the 1.0 release builds for this server') or diag($build_err);

# A private copy of the installation (its binaries find their share and
# lib directories relative to themselves).
my $root = "$tmp/root";
for my $dir (dirname($bindir), $sharedir)
{
	next if -d "$root$dir";
	system('mkdir', '-p', dirname("$root$dir")) == 0 or die;
	system('cp', '-a', $dir, "$root$dir") == 0 or die "copying $dir failed";
}
my $extdir = "$root$sharedir/extension";
my $libdir = "$root$pkglibdir";

# What a package of bidguard installs: the library, the control file, the
# scripts.  Removing a release, then installing another, as dpkg would.
sub remove_bidguard
{
	unlink("$libdir/bidguard.so", glob("$extdir/bidguard.control"), glob("$extdir/bidguard--*.sql"));
	return;
}
sub install_file
{
	my ($from, $to) = @_;
	copy($from, "$to.dpkg-new") or die "copy $from: $!";
	rename("$to.dpkg-new", $to) or die "rename $to: $!";
	return;
}
remove_bidguard();
install_file("$old/bidguard.so", "$libdir/bidguard.so");
install_file("$old/bidguard.control", "$extdir/bidguard.control");
install_file("$old/sql/bidguard--1.0.sql", "$extdir/bidguard--1.0.sql");

my $install_path = $root . dirname($bindir);
my %nodes;
for my $name ('preloaded', 'loaded')
{
	my $node = PostgreSQL::Test::Cluster->new($name, install_path => $install_path);
	$node->init;
	$node->append_conf('postgresql.conf',
		$name eq 'preloaded' ? "shared_preload_libraries = 'bidguard'\n" : '');
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION bidguard');
	is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
		'1.0', "$name: the 1.0 package installs 1.0");
	$node->safe_psql('postgres', q{
		SELECT bidguard_create_bid('m', 'before');
		SELECT bidguard_set_cooldown(1, '1 hour');
		SELECT bidguard_try_trade(1)});
	$nodes{$name} = $node;
}

# A session that has used bidguard (so its backend has the 1.0 library
# loaded), open across the package upgrade.
my $long_lived = $nodes{loaded}->background_psql('postgres', on_error_stop => 0);
is($long_lived->query_safe(q{SELECT created FROM bidguard_create_bid('m', 'long-lived')}),
	't', 'loaded: a session uses bidguard (and loads the 1.0 library)');

# The package upgrade: this release's files over 1.0's.
remove_bidguard();
install_file("$pkglibdir/bidguard.so", "$libdir/bidguard.so");
install_file("$sharedir/extension/bidguard.control", "$extdir/bidguard.control");
install_file($_, "$extdir/" . (File::Spec->splitpath($_))[2]) for glob("$sharedir/extension/bidguard--*.sql");
my ($current) = slurp_file("$extdir/bidguard.control") =~ /^default_version = '([^']+)'/m;
isnt($current, '1.0', "this release's default version is $current");

for my $name ('preloaded', 'loaded')
{
	my $node = $nodes{$name};
	is( $node->safe_psql(
			'postgres', q{SELECT string_agg(version, ' ' ORDER BY version)
			                FROM pg_available_extension_versions WHERE name = 'bidguard'}),
		"1.0 $current", "$name: after the package upgrade, 1.0 and $current are offered");
	is($node->safe_psql('postgres', q{SELECT created FROM bidguard_create_bid('m', 'after the package')}),
		't', "$name: 1.0's SQL works in a new session");
}

# Preloaded: the update waits for the restart.
my $pre = $nodes{preloaded};
my ($ret, $out, $err) = $pre->psql('postgres', 'ALTER EXTENSION bidguard UPDATE');
like($err, qr/could not find function "bidguard_\w+" in file/,
	'preloaded: ALTER EXTENSION bidguard UPDATE fails before the restart (the 1.0 library is loaded)');
is($pre->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
	'1.0', 'preloaded: ... and the database is still at 1.0');
$pre->restart;
$pre->safe_psql('postgres', 'ALTER EXTENSION bidguard UPDATE');
is($pre->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
	$current, "preloaded: after the restart, the update to $current succeeds");

# Not preloaded: a new session updates; the old one keeps the old library.
my $loaded = $nodes{loaded};
$loaded->safe_psql('postgres', 'ALTER EXTENSION bidguard UPDATE');
is($loaded->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
	$current, "loaded: a new session updates to $current without a restart");
$long_lived->query(q{SELECT allowed FROM bidguard_rate_limit('k', 1, '1 hour')});
like($long_lived->{stderr}, qr/could not find function "bidguard_rate_limit" in file/,
	"loaded: a session that loaded the 1.0 library cannot call ${current}'s functions");
$long_lived->quit;
is($loaded->safe_psql('postgres', q{SELECT allowed FROM bidguard_rate_limit('k', 1, '1 hour')}),
	't', '... until it reconnects');

for my $name ('preloaded', 'loaded')
{
	my $node = $nodes{$name};
	is( $node->safe_psql(
			'postgres', q{SELECT string_agg(posting_id, ' ' ORDER BY posting_id) FROM bidguard_bids}),
		$name eq 'loaded' ? 'after the package before long-lived' : 'after the package before',
		"$name: the bids written under 1.0 are there");
	is($node->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(1)}),
		'cooldown', "$name: bot 1's trade under 1.0 still holds its cooldown");
	is($node->safe_psql('postgres', q{SELECT allowed FROM bidguard_rate_limit('k2', 1, '1 hour')}),
		't', "$name: ${current}'s rate limit works");
	$node->stop;
}

done_testing();
