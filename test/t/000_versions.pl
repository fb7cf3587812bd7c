
# Copyright (c) bidguard contributors

# test/t/000_versions.pl
#	  The supported PostgreSQL majors, 15 to 18, are one decision written in
#	  six places, and they must agree: the Makefile's PG_SUPPORTED_MAJORS,
#	  src/compat.h's #error, META.json's prerequisite, the control file's
#	  comment, README.md's table and scripts/test-matrix.sh's default.  And an
#	  unsupported major is refused at build time with one message naming the
#	  range, before anything is compiled (the Makefile) and by the #error
#	  (other build systems), while the server under test is accepted.  No
#	  server is started.

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
my $readme = slurp('README.md');
my ($table) = $readme =~ /^## Supported versions\n(.*?)^## /ms;
ok(defined $table, 'README.md has a Supported versions section');
$table //= '';
for my $major (@supported)
{
	like($table, qr/^\| $major \| supported\b/m, "README.md: $major is supported");
}
like($table, qr/^\| 14 and older, 19 and newer \| refused at build time \|/m,
	'README.md: the others are refused');
like(slurp('scripts/test-matrix.sh'), qr/^\[ "\$\{#majors\[@\]\}" -gt 0 \] \|\| majors=\(15 18\)$/m,
	'scripts/test-matrix.sh: CI tests 15 and 18');
like(slurp('.ci/run'), qr/make --no-print-directory test-matrix PG_MATRIX="15 18"/,
	'.ci/run: runs the matrix on 15 and 18');

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
