
# Copyright (c) bidguard contributors

# test/t/021_upgrade.pl
#	  ALTER EXTENSION bidguard UPDATE, from every released version.
#
#	  Each released version's install script is frozen in sql/ (and in the
#	  scale-out kits' directories) as <extension>--X.Y.sql.  For each: a
#	  database is created at X.Y and filled through the old SQL running
#	  against this library (every table, guards on an application table,
#	  the statistics view in its old shape); then it is updated to the
#	  control file's default_version and
#	    - its catalog (extension_catalog: every function's definition,
#	      tables, columns in order, constraints, indexes, triggers, views,
#	      privileges, initial privileges, comments, dumped tables) is
#	      identical to a fresh CREATE EXTENSION's on the same server;
#	    - every row of the old tables, and of the application's table, is
#	      as before; the guards listed before are listed still;
#	    - every guard still refuses what it should (check_restored_copy),
#	      and what the new version added works there;
#	    - a pg_dump / pg_restore of the updated database is again identical
#	      to a fresh install, with the same rows;
#	    - a dump taken at X.Y, restored onto this release, is the current
#	      version with the old rows;
#	    - from 1.0, a view of the user's over bidguard_stats (which the
#	      update drops and makes again) stops the update as a whole (2BP01).
#	  A change to the catalog the comparison must see is made and seen (so
#	  the comparison can fail).  Downgrading is refused: there are no
#	  downgrade scripts (doc/operations.md, Upgrading bidguard).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(basename);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");

# default_version of a control file.
sub default_version
{
	my ($control) = @_;
	my ($v) = slurp_file($control) =~ /^default_version\s*=\s*'([^']+)'/m
	  or die "$control: no default_version";
	return $v;
}

# The released versions of an extension: its frozen install scripts.
sub frozen_versions
{
	my ($dir, $ext, $current) = @_;
	my @v = map { basename($_) =~ /^\Q$ext\E--([0-9.]+)\.sql$/ ? $1 : () }
	  glob("$dir/$ext--*.sql");
	return grep { $_ ne $current } sort @v;
}

# Per-table fingerprints of the tables pg_dump dumps for bidguard (its
# extconfig), of the application's table, and of the guards' rows in the
# columns the old bidguard_guards had: what must survive the update.
sub data_fingerprints
{
	my ($node, $db, $guard_columns) = @_;
	my $tables = $node->safe_psql($db, q{
		SELECT string_agg(c::regclass::text, ' ' ORDER BY c::regclass::text)
		  FROM pg_extension AS x, unnest(x.extconfig) AS c
		 WHERE x.extname = 'bidguard' AND (SELECT relkind FROM pg_class WHERE oid = c) = 'r'});
	my %fp;
	for my $t (split / /, $tables, -1)
	{
		$fp{$t} = $node->safe_psql($db,
			"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM $t AS t");
	}
	$fp{app_orders} = $node->safe_psql($db, $APP_FINGERPRINT_SQL);
	$fp{guards} = $node->safe_psql($db,
		"SELECT string_agg(row($guard_columns)::text, E'\\n' ORDER BY row($guard_columns)::text) FROM bidguard_guards");
	return \%fp;
}

my $node = bidguard_node('upgrade');
my $current = default_version("$src/bidguard.control");
my @released = frozen_versions("$src/sql", 'bidguard', $current);
ok(scalar @released >= 1, "released versions of bidguard: @released; current $current");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION bidguard');
my $fresh = extension_catalog($node, 'fresh', 'bidguard');
cmp_ok(scalar(split /\n/, $fresh), '>', 500,
	'the catalog of a fresh install is described (' . scalar(split /\n/, $fresh) . ' lines)');
like($fresh, qr/^extension bidguard \Q$current\E schema public$/m, "a fresh install is $current");

# The application's table as a 1.0 database can have it: its guards of
# 1.0 (cooldown, unique active), without the rate-limit guard of 1.1.
my $app_1_0 = join("\n", grep { !/rate_limit/ } split /\n/, $APP_TABLE_SQL);

for my $from (@released)
{
	my $db = 'from_' . ($from =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION bidguard VERSION '$from'");
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
		$from, "$from: installed at $from");
	like( $node->safe_psql(
			$db, qq{SELECT path FROM pg_extension_update_paths('bidguard')
			         WHERE source = '$from' AND target = '$current'}),
		qr/^\Q$from\E--.*\Q$current\E$/, "$from: there is an update path to $current");

	# The old SQL against this library: every table filled, guards made.
	fill_sample_data($node, $db);
	$node->safe_psql($db, $app_1_0);
	my $stats_columns = $node->safe_psql($db,
		q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'bidguard_stats'::regclass AND attnum > 0});
	cmp_ok($node->safe_psql($db, 'SELECT bids_created FROM bidguard_stats'), '>', 0,
		"$from: the old bidguard_stats ($stats_columns columns) reads this library's counters");
	my $guard_columns = $node->safe_psql($db, q{
		SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
		 WHERE attrelid = 'bidguard_guards'::regclass AND attnum > 0});
	my $before = data_fingerprints($node, $db, $guard_columns);
	like($before->{guards}, qr/cooldown.*\n.*unique_active/s, "$from: the application's table has two guards");

	# A dump taken at the old version, for the restore onto this release.
	my $old_dump = $node->basedir . "/$db.old.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $old_dump, '-d', $db ], "$from: pg_dump -Fc at $from");

	# A view of the user's over bidguard_stats, which the 1.0 -> 1.1 update
	# drops and makes again: the update fails as a whole (2BP01) and the
	# database stays at the old version until the view is dropped.
	my ($ret, $out, $err);
	if ($from eq '1.0')
	{
		$node->safe_psql($db, 'CREATE VIEW my_stats AS SELECT bids_created FROM bidguard_stats');
		($ret, $out, $err) = $node->psql($db, 'ALTER EXTENSION bidguard UPDATE');
		like($err, qr/cannot drop view bidguard_stats because other objects depend on it/,
			"$from: a view of the user's over bidguard_stats stops the update");
		is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
			$from, "$from: ... and the database is still at $from, untouched");
		$node->safe_psql($db, 'DROP VIEW my_stats');
	}

	$node->safe_psql($db, 'ALTER EXTENSION bidguard UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'bidguard'}),
		$current, "$from: updated to $current");

	my $updated = extension_catalog($node, $db, 'bidguard');
	is($updated, $fresh, "$from: after the update, the catalog is a fresh $current install's")
	  or diag(catalog_diff($fresh, $updated));

	my $after = data_fingerprints($node, $db, $guard_columns);
	for my $t (sort keys %$before)
	{
		is($after->{$t}, $before->{$t}, "$from: $t is as it was before the update");
	}

	# The guards, and everything check_restored_copy checks of a copy (the
	# figures are taken now: the comparison with the old data is above).
	check_restored_copy($node, $db, "updated from $from", source_figures($node, $db));

	# What the new version brought works in the updated database.
	$node->safe_psql($db, q{SELECT bidguard_guard_rate_limit('app_orders', 'account', 1, '1 hour')});
	($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-9', now(), 'done'),
		                                                          ('acct-9', now() + interval '2 hours', 'done')});
	like($err, qr/bidguard_rate_limit_guard/, "$from: the rate-limit guard of $current refuses the second row");
	is($node->safe_psql($db, q{SELECT allowed FROM bidguard_rate_limit('upgrade:k', 2, '1 hour');} x 3),
		"t\nt\nf", "$from: bidguard_rate_limit admits two of three");
	is($node->safe_psql($db, q{SELECT reason FROM bidguard_acquire_slot('upgrade:s', 1)}),
		'acquired', "$from: bidguard_acquire_slot takes a slot");
	cmp_ok($node->safe_psql($db, q{SELECT rate_limited FROM bidguard_stats}), '>=', 1,
		"$from: the updated bidguard_stats has the new counters");

	# A dump of the updated database restores to a fresh install's catalog
	# and the same rows.
	my $dump = $node->basedir . "/$db.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $db ], "$from: pg_dump -Fc of the updated database");
	$node->safe_psql('postgres', "CREATE DATABASE restored_$db");
	$node->command_ok([ 'pg_restore', '-d', "restored_$db", $dump ], "$from: pg_restore of it");
	my $restored = extension_catalog($node, "restored_$db", 'bidguard');
	is($restored, $fresh, "$from: the restored copy's catalog is a fresh install's")
	  or diag(catalog_diff($fresh, $restored));
	is($node->safe_psql("restored_$db", $FINGERPRINT_SQL), $node->safe_psql($db, $FINGERPRINT_SQL),
		"$from: the restored copy has every row");

	# The dump taken at the old version, restored onto this release: the
	# current version (pg_dump names no version), with the old rows.
	$node->safe_psql('postgres', "CREATE DATABASE old_dump_$db");
	$node->command_ok([ 'pg_restore', '-d', "old_dump_$db", $old_dump ],
		"$from: pg_restore of the dump taken at $from");
	my $from_old_dump = extension_catalog($node, "old_dump_$db", 'bidguard');
	is($from_old_dump, $fresh, "$from: restored from the $from dump, the catalog is a fresh $current install's")
	  or diag(catalog_diff($fresh, $from_old_dump));
	my $old_dump_fp = data_fingerprints($node, "old_dump_$db", $guard_columns);
	for my $t (sort keys %$before)
	{
		is($old_dump_fp->{$t}, $before->{$t}, "$from: restored from the $from dump, $t is as it was");
	}

	# The comparison sees a change: a comment and a grant of the extension's.
	$node->safe_psql($db, q{
		COMMENT ON FUNCTION bidguard_lock_key(text, text) IS 'changed';
		GRANT SELECT ON bidguard_bids TO PUBLIC});
	my $changed = extension_catalog($node, $db, 'bidguard');
	my $diff = catalog_diff($fresh, $changed);
	like($diff, qr/comment changed/, "$from: the comparison sees a changed comment");
	like($diff, qr/bidguard_bids .*=r\/postgres/, "$from: the comparison sees a changed privilege");

	# Downgrading: refused, there is no path back.
	($ret, $out, $err) = $node->psql($db, "ALTER EXTENSION bidguard UPDATE TO '$from'");
	like($err, qr/has no update path from version "\Q$current\E" to version "\Q$from\E"/,
		"$from: downgrading from $current is refused");
}

# The PL/Proxy proxy's kit, bidguard_proxy, where PL/Proxy is installed.
SKIP:
{
	skip 'PL/Proxy is not installed for this server', 1
	  unless $node->safe_psql('postgres',
		  q{SELECT count(*) FROM pg_available_extensions WHERE name = 'plproxy'});
	my $kit = "$src/scaleout/plproxy";
	my $kit_current = default_version("$kit/bidguard_proxy.control");
	my @kit_released = frozen_versions($kit, 'bidguard_proxy', $kit_current);
	ok(scalar @kit_released >= 1, "released versions of bidguard_proxy: @kit_released; current $kit_current");
	$node->safe_psql('postgres', 'CREATE DATABASE proxy_fresh');
	$node->safe_psql('proxy_fresh', 'CREATE EXTENSION plproxy; CREATE EXTENSION bidguard_proxy');
	my $kit_fresh = extension_catalog($node, 'proxy_fresh', 'bidguard_proxy');
	for my $from (@kit_released)
	{
		my $db = 'proxy_from_' . ($from =~ s/\./_/gr);
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, "CREATE EXTENSION plproxy; CREATE EXTENSION bidguard_proxy VERSION '$from'");
		$node->safe_psql($db, 'ALTER EXTENSION bidguard_proxy UPDATE');
		my $updated = extension_catalog($node, $db, 'bidguard_proxy');
		is($updated, $kit_fresh, "bidguard_proxy $from: after the update, the catalog is a fresh $kit_current install's")
		  or diag(catalog_diff($kit_fresh, $updated));
	}
}

# The lines only one of two catalog descriptions has.
sub catalog_diff
{
	my ($want, $got) = @_;
	my %w = map { $_ => 1 } split /\n/, $want;
	my %g = map { $_ => 1 } split /\n/, $got;
	return join("\n",
		(map { "- $_" } grep { !$g{$_} } split /\n/, $want),
		(map { "+ $_" } grep { !$w{$_} } split /\n/, $got));
}

done_testing();
