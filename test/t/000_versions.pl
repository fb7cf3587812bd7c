
# Copyright (c) bidguard contributors

# test/t/000_versions.pl
#	  The supported PostgreSQL majors, 15 to 18, are one decision written in
#	  six places, and they must agree: the Makefile's PG_SUPPORTED_MAJORS,
#	  src/compat.h's #error, META.json's prerequisite, the control file's
#	  comment, doc/operations.md's table and scripts/test-matrix.sh's default.  And an
#	  unsupported major is refused at build time with one message naming the
#	  range, before anything is compiled (the Makefile) and by the #error
#	  (other build systems), while the server under test is accepted.
#
#	  The extension's own version is one decision too: bidguard.control's
#	  default_version X.Y, the Makefile's EXTVERSION, META.json's version and
#	  provides version X.Y.0 (semantic), the newest release in CHANGELOG.md
#	  and in debian/changelog.  Every released install script is frozen
#	  (its checksum is below: a change to the SQL surface is a new version
#	  with an upgrade script, never an edit), and from every released
#	  version the upgrade scripts lead to the current one.  No server is
#	  started.

use strict;
use warnings FATAL => 'all';

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;
use IPC::Run;
use Test::More;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', "$src/$path" or die "$src/$path: $!";
	local $/;
	return <$fh>;
}

my @supported = (15 .. 18);
my $range = '15, 16, 17 and 18';

# The six places.
like(slurp('Makefile'), qr/^PG_SUPPORTED_MAJORS = 15 16 17 18$/m,
	'Makefile: PG_SUPPORTED_MAJORS is 15 16 17 18');
my $compat = slurp('src/compat.h');
like($compat, qr/^#if PG_VERSION_NUM < 150000 \|\| PG_VERSION_NUM >= 190000$/m,
	'src/compat.h: the #error fires outside 150000..189999');
like($compat, qr/^#error "bidguard supports PostgreSQL \Q$range\E;/m,
	'src/compat.h: the #error names the range');
like(slurp('META.json'), qr/"PostgreSQL": ">= 15\.0\.0, < 19\.0\.0"/,
	'META.json: requires PostgreSQL >= 15.0.0, < 19.0.0');
like(slurp('bidguard.control'), qr/^# Supported: PostgreSQL \Q$range\E\b/m,
	'bidguard.control: says PostgreSQL 15 to 18');
my $versions_page = 'doc/operations.md';
my ($table) = slurp($versions_page) =~ /^## Supported versions\n(.*?)^## /ms;
ok(defined $table, "$versions_page has a Supported versions section");
$table //= '';
for my $major (@supported)
{
	like($table, qr/^\| $major \| supported\b/m, "$versions_page: $major is supported");
}
like($table, qr/^\| 14 and older, 19 and newer \| refused at build time \|/m,
	"$versions_page: the others are refused");
like(slurp('scripts/test-matrix.sh'), qr/^\[ "\$\{#majors\[@\]\}" -gt 0 \] \|\| majors=\(15 18\)$/m,
	'scripts/test-matrix.sh: CI tests 15 and 18');
like(slurp('.ci/run'), qr/make --no-print-directory test-matrix PG_MATRIX="15 18"/,
	'.ci/run: runs the matrix on 15 and 18');

# The extension's version, in every place that says it.
my ($extversion) = slurp('bidguard.control') =~ /^default_version = '(\d+\.\d+)'$/m;
ok(defined $extversion, "bidguard.control: default_version is X.Y ($extversion)");
$extversion //= '?';
like(slurp('Makefile'), qr/^EXTVERSION = \Q$extversion\E$/m, "Makefile: EXTVERSION is $extversion");
my $meta = slurp('META.json');
my @meta_versions = $meta =~ /"version": "([^"]+)"/g;
# the release's, provides.bidguard's, and meta-spec's (the last)
is($meta_versions[0], "$extversion.0", "META.json: version is $extversion.0");
is($meta_versions[1], "$extversion.0", "META.json: provides.bidguard.version is $extversion.0");
like($meta_versions[0] // '', qr/^\d+\.\d+\.\d+$/, 'META.json: the version is semantic (X.Y.Z)');
my $changelog = slurp('CHANGELOG.md');
like($changelog, qr/^The format is based on \[Keep a Changelog\]/m, 'CHANGELOG.md: Keep a Changelog');
my ($newest) = $changelog =~ /^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$/m;
is($newest, "$extversion.0", "CHANGELOG.md: the newest release is $extversion.0");
like($changelog, qr/^\[\Q$extversion.0\E\]: /m, "CHANGELOG.md: $extversion.0 has its link");
SKIP:
{
	skip 'no debian/changelog', 1 unless -e "$src/debian/changelog";
	like(slurp('debian/changelog'), qr/\A\S+ \(\Q$extversion.0\E(-\d+)?\) /,
		"debian/changelog: the newest package is of $extversion.0");
}

# Released install scripts never change.  Add a version (and its upgrade
# script) instead; add a line here when a version is released.
my %frozen = (
	'sql/bidguard--1.0.sql' => '82a0dd654f9633411ce6f07e236bf5390f43a26fb7584f77969d0349a566a13d',
	'scaleout/plproxy/bidguard_proxy--1.0.sql' => '239ef6e60a14bd16b78782eabd0798fb84db7ce71d223c9978d34176f04eac60',
	'scaleout/plproxy/bidguard_shard--1.0.sql' => 'f4c6296e21c52eb769ef4f0057a63a85633e7b8a4af1af63f8e587c74aa6f15a',
	'scaleout/citus/bidguard_citus--1.0.sql' => 'dec3404fabe8e75311dbf6dc2dccba1e956570a6d57b1742b9edfda8757e8b9b',);
for my $f (sort keys %frozen)
{
	my ($sum) = (`sha256sum '$src/$f'` // '') =~ /^([0-9a-f]{64})/;
	is($sum, $frozen{$f}, "$f: the released install script is unchanged");
}

# From every released version of each extension, a chain of upgrade
# scripts to its default_version; each script refuses psql.
for my $path ('bidguard.control', glob("$src/scaleout/*/*.control"))
{
	(my $control = $path) =~ s{^\Q$src\E/}{};
	my ($dir, $ext) = $control =~ m{^(?:(.*)/)?([^/]+)\.control$};
	$dir = defined $dir ? "$dir" : 'sql';
	my ($current) = slurp($control) =~ /^default_version = '([^']+)'$/m;
	my (%edges, @installs);
	for my $f (glob("$src/$dir/$ext--*.sql"))
	{
		my ($name) = $f =~ m{([^/]+)$};
		if ($name =~ /^\Q$ext\E--([0-9.]+)--([0-9.]+)\.sql$/)
		{
			push @{ $edges{$1} }, $2;
			like(slurp("$dir/$name"), qr/^\\echo Use "ALTER EXTENSION \Q$ext\E UPDATE TO '\Q$2\E'" to load this file\. \\quit$/m,
				"$dir/$name: refuses to run in psql");
		}
		elsif ($name =~ /^\Q$ext\E--([0-9.]+)\.sql$/)
		{
			push @installs, $1;
		}
	}
	# the current version's install script is built from sql/bidguard.sql
	push @installs, $current if $ext eq 'bidguard' && !grep { $_ eq $current } @installs;
	ok((grep { $_ eq $current } @installs), "$ext: there is an install script for $current");
	for my $from (grep { $_ ne $current } @installs)
	{
		my %seen;
		my @todo = ($from);
		while (my $v = shift @todo)
		{
			next if $seen{$v}++;
			push @todo, @{ $edges{$v} // [] };
		}
		ok($seen{$current}, "$ext: $from updates to $current");
	}
}

# The build refuses a major outside the range before compiling, with one
# message, and accepts this server's.  A stand-in pg_config says the
# version and defers everything else to the real one.
my $dir = tempdir(CLEANUP => 1);
sub fake_pg_config
{
	my ($version) = @_;
	my $path = "$dir/pg_config_$version";
	open my $fh, '>', $path or die;
	print $fh "#!/bin/sh\n"
	  . "if [ \"\$1\" = --version ]; then echo 'PostgreSQL $version'; exit 0; fi\n"
	  . "exec '$pg_config' \"\$@\"\n";
	close $fh;
	chmod 0755, $path;
	return $path;
}

for my $version ('14.12', '19beta2', '13.20')
{
	my $fake = fake_pg_config($version);
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'make', '-C', $src, '--no-print-directory', "PG_CONFIG=$fake" ],
		'<', \undef, '>', \$out, '2>', \$err);
	isnt($? >> 8, 0, "make with PostgreSQL $version fails");
	like($err, qr/^bidguard supports PostgreSQL \Q$range\E; \S+ is PostgreSQL \Q$version\E$/m,
		"make with PostgreSQL $version: one message naming the range and the server");
	unlike("$out$err", qr/\bgcc\b|\berror:/, "make with PostgreSQL $version: nothing was compiled");
}

my $real_major = `$pg_config --version` =~ /^PostgreSQL (\d+)/ ? $1 : '?';
ok((grep { $_ eq $real_major } @supported), "the server under test, $real_major, is supported");

# The #error, for builds that do not go through the Makefile: the server's
# own headers with PG_VERSION_NUM of an unsupported major, then of its own.
my $includedir = `$pg_config --includedir-server`;
chomp $includedir;
for my $num (140012, 190000, $real_major * 10000)
{
	my $c = "$dir/v$num.c";
	open my $fh, '>', $c or die;
	print $fh qq{#include "postgres.h"\n#undef PG_VERSION_NUM\n#define PG_VERSION_NUM $num\n#include "compat.h"\n};
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'gcc', '-fsyntax-only', "-I$src/src", "-I$includedir", $c ],
		'<', \undef, '>', \$out, '2>', \$err);
	if ($num == $real_major * 10000)
	{
		is($? >> 8, 0, "compat.h compiles for PG_VERSION_NUM $num") or diag $err;
	}
	else
	{
		like($err, qr/#error "bidguard supports PostgreSQL \Q$range\E;/,
			"compat.h stops PG_VERSION_NUM $num with the #error");
	}
}

done_testing();
