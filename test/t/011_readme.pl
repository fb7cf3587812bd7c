
# Copyright (c) bidguard contributors

# test/t/011_readme.pl
#	  What a user reads in README.md works when typed.
#
#	  Every ```sql block of the README, in the order of the README, is run by
#	  psql in one database of a fresh node (bidguard preloaded, not yet
#	  created: the README's own CREATE EXTENSION does it), one psql session
#	  per block, statement by statement.  A statement whose line says
#	  "-- error XXXXX" must fail with that SQLSTATE; every other statement
#	  must succeed.  (Statements end with ";" or psql's \gset at the end of
#	  a line, before any comment.)
#
#	  Every ```python, ```js and ```c block must appear verbatim in the
#	  example client of that language in examples/, which 010_examples.pl
#	  runs: the README quotes the code that is tested.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");
my $readme = slurp_file("$src/README.md");

# The fenced blocks: [language, text, line of the opening fence].
my @blocks;
{
	my ($lang, $text, $start);
	my $n = 0;
	for my $line (split /\n/, $readme)
	{
		$n++;
		if (!defined $lang && $line =~ /^```(\S*)\s*$/)
		{
			($lang, $text, $start) = ($1, '', $n);
		}
		elsif (defined $lang && $line =~ /^```\s*$/)
		{
			push @blocks, [ $lang, $text, $start ];
			undef $lang;
		}
		elsif (defined $lang)
		{
			$text .= "$line\n";
		}
	}
	BAIL_OUT("README.md: unterminated block at line $start") if defined $lang;
}
my @sql = grep { $_->[0] eq 'sql' } @blocks;
cmp_ok(scalar @sql, '>=', 15, 'README.md has its SQL examples');

# The part of a line before its "--" comment (outside quotes).
sub code_part
{
	my ($line) = @_;
	my $quoted = 0;
	for my $i (0 .. length($line) - 1)
	{
		my $c = substr($line, $i, 1);
		$quoted = !$quoted if $c eq "'";
		return substr($line, 0, $i)
		  if !$quoted && substr($line, $i, 2) eq '--';
	}
	return $line;
}

# A block's statements: [text, expected SQLSTATE or undef].
sub statements
{
	my ($text) = @_;
	my (@stmts, $cur, $expect);
	$cur = '';
	for my $line (split /\n/, $text)
	{
		$cur .= "$line\n";
		$expect = $1 if $line =~ /--\s*error\s+([0-9A-Z]{5})\b/;
		my $code = code_part($line);
		if ($code =~ /(;|\\gset)\s*$/)
		{
			push @stmts, [ $cur, $expect ];
			($cur, $expect) = ('', undef);
		}
	}
	die "statement without an end: $cur" if $cur =~ /\S/ && code_part($cur) =~ /\S/;
	return @stmts;
}

my $node = bidguard_node('readme');
$node->safe_psql('postgres', 'CREATE DATABASE readme');

for my $block (@sql)
{
	my (undef, $text, $line) = @$block;
	my @stmts = statements($text);
	my $script = "\\set ON_ERROR_STOP 0\n";
	for my $i (0 .. $#stmts)
	{
		$script .= $stmts[$i][0] . "\\echo \@\@ $i :ERROR :SQLSTATE\n";
	}
	my ($stdout, $stderr) = ('', '');
	$node->psql('readme', $script, stdout => \$stdout, stderr => \$stderr);
	my %outcome = map { /^\@\@ (\d+) (\S+) (\S+)$/ ? ($1 => [ $2, $3 ]) : () }
	  split /\n/, $stdout;
	for my $i (0 .. $#stmts)
	{
		my ($stmt, $expect) = @{ $stmts[$i] };
		(my $first = $stmt) =~ s/^\s*(?:--[^\n]*\n\s*)*//;
		$first =~ s/\n.*//s;
		my $label = "README.md line $line: $first";
		my $got = $outcome{$i};
		if (!$got)
		{
			fail("$label: ran");
			diag("stdout: $stdout\nstderr: $stderr");
			next;
		}
		if (defined $expect)
		{
			is("@$got", "true $expect", "$label: fails with $expect");
		}
		else
		{
			is("@$got", 'false 00000', "$label: succeeds")
			  or diag("stderr: $stderr");
		}
	}
}

# The code quoted from the example clients is theirs, verbatim.
my %files = (
	python => [ glob("$src/examples/python/*.py"), glob("$src/examples/celery/*.py") ],
	js => [ glob("$src/examples/node/*.js") ],
	c => [ glob("$src/examples/c/*.c") ],);
my %source = map {
	my $lang = $_;
	($lang => join("\n", map { slurp_file($_) } @{ $files{$lang} }))
} keys %files;
for my $block (grep { exists $files{ $_->[0] } } @blocks)
{
	my ($lang, $text, $line) = @$block;
	ok(index($source{$lang}, $text) >= 0,
		"README.md line $line: the $lang excerpt is in examples/")
	  or diag($text);
}

$node->stop;
done_testing();
