
# Copyright (c) bidguard contributors

# test/t/011_docs.pl
#	  What a user reads in the documentation works when typed: README.md,
#	  every page of doc/ and CONTRIBUTING.md.
#
#	  Each page runs in a fresh database of its own on one node (bidguard
#	  preloaded), its ```sql blocks in the page's order, one psql session
#	  per block, statement by statement.  A page whose ```sql blocks contain
#	  CREATE EXTENSION bidguard creates the extension itself; for any other
#	  page the test runs CREATE EXTENSION bidguard in the page's database
#	  first.  So a page's examples may rely on what its earlier examples made
#	  (a bid, a bot, a table), never on another page's.  A statement whose
#	  line says "-- error XXXXX" must fail with that SQLSTATE; every other
#	  statement must succeed.  (Statements end with ";" or psql's \gset at
#	  the end of a line, before any comment.)  Blocks of any other language
#	  (```sh, ```text, ```sql-shard, ...) are not run.
#
#	  Every ```python, ```js and ```c block must appear verbatim in the
#	  example client of that language in examples/, which 010_examples.pl
#	  runs: the documentation quotes the code that is tested.
#
#	  And the pages cannot drift apart: every page of doc/ is run and is
#	  linked from README.md; every relative link of every page names a file
#	  that exists, and a heading of it when it has a #anchor (GitHub's
#	  anchors); every function, view and table of sql/bidguard.sql (but
#	  trigger functions) and every bidguard.* setting is in doc/api.md.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use Encode qw(decode);
use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");

# The pages, in the order they run: README.md, doc/*.md by name, CONTRIBUTING.md.
opendir(my $dh, "$src/doc") or BAIL_OUT("$src/doc: $!");
my @doc_pages = map { "doc/$_" } sort grep { /\.md$/ && -f "$src/doc/$_" } readdir $dh;
closedir $dh;
my @pages = ('README.md', @doc_pages, grep { -f "$src/$_" } 'CONTRIBUTING.md');
my %text = map { $_ => slurp_file("$src/$_") } @pages;

# The fenced blocks of a page: [language, text, line of the opening fence].
sub blocks_of
{
	my ($page) = @_;
	my (@blocks, $lang, $text, $start, $indent);
	my $n = 0;
	for my $line (split /\n/, $text{$page})
	{
		$n++;
		# a fence may be indented (a block inside a list item): its lines
		# lose that indentation
		if (!defined $lang && $line =~ /^( {0,3})```(\S*)\s*$/)
		{
			($indent, $lang, $text, $start) = ($1, $2, '', $n);
		}
		elsif (defined $lang && $line =~ /^ {0,3}```\s*$/)
		{
			push @blocks, [ $lang, $text, $start ];
			undef $lang;
		}
		elsif (defined $lang)
		{
			$line =~ s/^\Q$indent\E//;
			$text .= "$line\n";
		}
	}
	BAIL_OUT("$page: unterminated block at line $start") if defined $lang;
	return @blocks;
}
my %blocks = map { $_ => [ blocks_of($_) ] } @pages;

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

my $node = bidguard_node('docs');

# ---------------------------------------------------------------- the SQL
my (%seen, %sql_blocks);
my $total_sql = 0;
for my $page (@pages)
{
	my @sql = grep { $_->[0] eq 'sql' } @{ $blocks{$page} };
	(my $db = lc "docs_$page") =~ s/[^a-z0-9]+/_/g;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	my $creates = grep {
		join("\n", map { code_part($_) } split /\n/, $_->[1]) =~
		  /\bCREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?bidguard\b/i
	} @sql;
	$node->safe_psql($db, 'CREATE EXTENSION bidguard') unless $creates;
	note("$page: " . scalar(@sql) . " SQL blocks in database $db"
		  . ($creates ? ' (the page creates bidguard)' : ''));

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
		$node->psql($db, $script, stdout => \$stdout, stderr => \$stderr);
		my %outcome = map { /^\@\@ (\d+) (\S+) (\S+)$/ ? ($1 => [ $2, $3 ]) : () }
		  split /\n/, $stdout;
		for my $i (0 .. $#stmts)
		{
			my ($stmt, $expect) = @{ $stmts[$i] };
			(my $first = $stmt) =~ s/^\s*(?:--[^\n]*\n\s*)*//;
			$first =~ s/\n.*//s;
			my $label = "$page line $line: $first";
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
	$seen{$page} = 1;
	$sql_blocks{$page} = scalar @sql;
	$total_sql += @sql;
}
cmp_ok($total_sql, '>=', 35, "the pages have their SQL examples ($total_sql blocks)");
cmp_ok($sql_blocks{'README.md'}, '>=', 1, 'README.md has its SQL example');
cmp_ok($sql_blocks{'doc/api.md'} // 0, '>=', 25, 'doc/api.md has its SQL examples');

# Every page of doc/ ran, and README.md links to it.
ok(scalar @doc_pages >= 1, 'doc/ has pages');
for my $page (@doc_pages)
{
	ok($seen{$page}, "$page: its SQL examples ran");
	like($text{'README.md'}, qr/\]\(\Q$page\E(?:#[^)]*)?\)/, "README.md links to $page");
}

# ---------------------------------------------------------------- the code quoted
my %files = (
	python => [ glob("$src/examples/python/*.py"), glob("$src/examples/celery/*.py") ],
	js => [ glob("$src/examples/node/*.js") ],
	c => [ glob("$src/examples/c/*.c") ],);
my %source = map {
	my $lang = $_;
	($lang => join("\n", map { slurp_file($_) } @{ $files{$lang} }))
} keys %files;
for my $page (@pages)
{
	for my $block (grep { exists $files{ $_->[0] } } @{ $blocks{$page} })
	{
		my ($lang, $text, $line) = @$block;
		ok(index($source{$lang}, $text) >= 0,
			"$page line $line: the $lang excerpt is in examples/")
		  or diag($text);
	}
}

# ---------------------------------------------------------------- the links
# A page's text outside fenced blocks (their lines blanked, so that line
# numbers stay), decoded.
sub prose_of
{
	my ($page) = @_;
	my ($fence, @out) = (0);
	for my $line (split /\n/, decode('UTF-8', $text{$page}), -1)
	{
		if ($line =~ /^ {0,3}```/) { $fence = !$fence; push @out, ''; next; }
		push @out, $fence ? '' : $line;
	}
	return join("\n", @out);
}

# GitHub's anchors of a page's headings: the heading's text without its
# markup, lower case, without punctuation, spaces as hyphens; "-1", "-2"
# after repeats.
my %anchors;
sub anchors_of
{
	my ($page) = @_;
	return $anchors{$page} if $anchors{$page};
	my (%set, %count);
	for my $line (split /\n/, prose_of($page))
	{
		next unless $line =~ /^#{1,6} (.*?)\s*$/;
		(my $a = $1) =~ s/`//g;
		$a =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;
		$a = lc $a;
		$a =~ s/[^\w\- ]//g;
		$a =~ s/ /-/g;
		my $n = $count{$a}++;
		$set{ $n ? "$a-$n" : $a } = 1;
	}
	return $anchors{$page} = \%set;
}

my $links = 0;
for my $page (@pages)
{
	my $prose = prose_of($page);
	(my $plain = $prose) =~ s/`[^`\n]*`/'x' x length($&)/ge;    # no links in code spans
	while ($plain =~ /\]\(([^)\s]+)\)/g)
	{
		my $target = $1;
		my $line = 1 + (() = substr($plain, 0, $-[0]) =~ /\n/g);
		next if $target =~ /^[a-z][a-z0-9+.-]*:/i;    # https:, mailto:
		$links++;
		my ($path, $anchor) = $target =~ /^([^#]*)(?:#(.*))?$/;
		my $dir = dirname($page);
		my $file = $path eq '' ? $page : File::Spec->canonpath($dir eq '.' ? $path : "$dir/$path");
		if (!ok(-e "$src/$file", "$page line $line: the link to $target names a file"))
		{
			next;
		}
		next unless defined $anchor && $file =~ /\.md$/;
		$text{$file} //= slurp_file("$src/$file");
		ok(anchors_of($file)->{$anchor}, "$page line $line: $file has the heading of #$anchor");
	}
}
cmp_ok($links, '>=', 30, "the pages link to each other ($links relative links)");

# ---------------------------------------------------------------- the reference
# Every function (but trigger functions), view and table of the install
# script, and every setting, is named in doc/api.md.
my $api = $text{'doc/api.md'} // '';
my $script = slurp_file("$src/sql/bidguard.sql");
my %objects;
while ($script =~ /^CREATE (FUNCTION|VIEW|TABLE) \@extschema\@\.(\w+)(.*?);$/msg)
{
	my ($kind, $name, $rest) = ($1, $2, $3);
	next if $kind eq 'FUNCTION' && $rest =~ /\bRETURNS trigger\b/;
	$objects{$name} //= lc $kind;
}
cmp_ok(scalar keys %objects, '>=', 35, 'sql/bidguard.sql: its functions, views and tables found');
for my $name (sort keys %objects)
{
	like($api, qr/`\Q$name\E\b/, "doc/api.md names the $objects{$name} $name");
}
my @settings = slurp_file("$src/src/module.c") =~ /DefineCustom\w+Variable\("(bidguard\.\w+)"/g;
cmp_ok(scalar @settings, '>=', 3, 'src/module.c: its settings found');
like($api, qr/^\| `\Q$_\E` \|/m, "doc/api.md's Settings table has $_") for @settings;

$node->stop;
done_testing();
