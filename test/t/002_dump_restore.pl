
# Copyright (c) bidguard contributors

# test/t/002_dump_restore.pl
#	  bidguard's tables hold user data (SPEC §1): pg_dump keeps every row of
#	  bidguard_bids, bidguard_events, bidguard_bots and bidguard_trades, and
#	  restoring them neither loses, changes nor invents anything, however it
#	  is restored.  The source has bids in every status, made through the
#	  functions and by plain SQL (moved and deleted ones too, ids full of
#	  characters COPY must escape), a few thousand more bids and trades,
#	  trades admitted, filled and failed under a cooldown raised later, and
#	  an application table under both kinds of guard.  It is restored with
#	  pg_restore serially, -j 4 and -j 2 (custom format), -Fd -j 4,
#	  --single-transaction, --section pre-data / data -j 4 / post-data,
#	  --data-only -j 4 into a database with the schema, with pg_dump -Fp |
#	  psql, and pg_dumpall | psql into a second cluster.  Parallel restore
#	  loads bidguard's tables in any order (src/restore.c).  Every copy is
#	  checked by check_restored_copy: per-table fingerprints of every row,
#	  the extension's objects exactly a fresh install's, identity sequences
#	  going on after the restored rows, every guard refusing what it
#	  should.  A restored trade whose bot is not loaded yet waits for it, and
#	  only the table owner's COPY of every column counts as a restore.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('dump');

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION bidguard');

fill_sample_data($node, 'src');

check_bid_invariants($node, 'source', dbname => 'src');

is( $node->safe_psql(
		'src', q{
	SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM bidguard_bids}),
	'expired,failed,lost,pending,submitted,withdrawn,won',
	'the source has bids in every status');
is( $node->safe_psql(
		'src', q{
	SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM bidguard_events}),
	'bid_created,bid_deleted,bid_moved,bid_status_changed,trade_executed,trade_failed,trade_filled',
	'the source has every kind of bid event, and trade events');
is( $node->safe_psql(
		'src', q{
	SELECT EXISTS (SELECT 1
	                 FROM bidguard_trades AS a
	                 JOIN bidguard_trades AS b ON b.bot_id = a.bot_id AND b.trade_id > a.trade_id
	                 JOIN bidguard_bots AS o ON o.bot_id = a.bot_id
	                WHERE a.status <> 'failed' AND b.status <> 'failed'
	                  AND abs(extract(epoch FROM coalesce(a.filled_at, a.created_at)
	                                           - coalesce(b.filled_at, b.created_at)))
	                      < extract(epoch FROM o.cooldown))}),
	't', 'the source has history closer than today\'s cooldown (raised after admission)');
is($node->safe_psql('src', 'SELECT count(*) FROM bidguard_cooldown_violations'),
	'0', '... which the audit does not count: each trade is judged by the cooldown it was admitted under');

# More rows, so that the tables differ in size as in production (pg_restore
# -j starts with the largest), and the application's guarded table.
$node->safe_psql(
	'src', q{
SELECT bidguard_create_bid('bulk', 'p' || g, jsonb_build_object('g', g)) FROM generate_series(1, 3000) AS g;
SELECT bidguard_withdraw_posting('bulk', 'p' || g, 'bulk') FROM generate_series(1, 3000, 7) AS g;
SELECT bidguard_set_cooldown(1000 + g, '1 second') FROM generate_series(1, 40) AS g;
SET bidguard.test_clock = '2026-02-01 00:00:00+00';
SELECT bidguard_try_trade(1001 + g % 40, jsonb_build_object('g', g)) FROM generate_series(1, 40) AS g;
SET bidguard.test_clock = '2026-02-01 00:00:02+00';
SELECT bidguard_try_trade(1001 + g % 40, jsonb_build_object('g', g)) FROM generate_series(1, 40) AS g;
RESET bidguard.test_clock;
-- 20,000 trades by plain INSERT, each judged: trades is the second-largest
-- table, so pg_restore -j 2 starts it long before the tiny bidguard_bots
INSERT INTO bidguard_trades (bot_id, created_at, trade_data)
SELECT 1001 + g % 40, '2026-03-01 00:00:00+00'::timestamptz + (g / 40) * interval '2 seconds',
       jsonb_build_object('bulk', g)
  FROM generate_series(0, 19999) AS g;
});
$node->safe_psql('src', $APP_TABLE_SQL);
my $src = source_figures($node, 'src');
note "source: $src->{fp}; $src->{app}";

my $dir = $node->basedir;
my @conn = ('-h', $node->host, '-p', $node->port);
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$dir/src.dump", '-d', 'src' ],
	'pg_dump -Fc of the source');
$node->command_ok([ 'pg_dump', '-Fd', '-f', "$dir/src.dir", '-d', 'src' ],
	'pg_dump -Fd of the source');

# Restore with the steps given (DB stands for the new database), then check
# the copy.  Notes how often a restored trade waited for its bot.
my $n = 0;
my $restore_waits = 0;
sub restore_into
{
	my ($label, @steps) = @_;
	my $db = 'dst_' . ++$n;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	for my $step (@steps)
	{
		my @cmd = map { $_ eq 'DB' ? $db : $_ } @$step;
		my ($stdout, $stderr) = ('', '');
		my $log_offset = -s $node->logfile;
		my $ok = IPC::Run::run([ $cmd[0], @conn, @cmd[1 .. $#cmd] ],
			'<', \undef, '>', \$stdout, '2>', \$stderr);
		ok($ok, "$label: " . join(' ', grep { $_ ne $db } @cmd))
		  or diag $stderr;
		unlike($stderr, qr/ERROR/, "$label: no error") if $ok;
		# (pg_restore shows the server's warnings only with --verbose; the
		# server log has them)
		my $waits = () = slurp_file($node->logfile, $log_offset) =~ /waits for its bot/g;
		$restore_waits += $waits;
		note "$label: " . join(' ', @cmd) . ": $waits trade(s) waited for their bot";
	}
	check_restored_copy($node, $db, $label, $src);
	return;
}

restore_into('pg_restore',
	[ 'pg_restore', '--exit-on-error', '-d', 'DB', "$dir/src.dump" ]);
for my $round (1 .. 2)
{
	restore_into("pg_restore -j 4, round $round",
		[ 'pg_restore', '--exit-on-error', '-j', '4', '-d', 'DB', "$dir/src.dump" ]);
	restore_into("pg_restore -j 2, round $round",
		[ 'pg_restore', '--exit-on-error', '-j', '2', '-d', 'DB', "$dir/src.dump" ]);
}
restore_into('pg_restore -Fd -j 4',
	[ 'pg_restore', '--exit-on-error', '-j', '4', '-d', 'DB', "$dir/src.dir" ]);
restore_into('pg_restore --single-transaction',
	[ 'pg_restore', '--exit-on-error', '--single-transaction', '-d', 'DB', "$dir/src.dump" ]);
restore_into('pg_restore --section',
	[ 'pg_restore', '--exit-on-error', '--section=pre-data', '-d', 'DB', "$dir/src.dump" ],
	[ 'pg_restore', '--exit-on-error', '--section=data', '-j', '4', '-d', 'DB', "$dir/src.dump" ],
	[ 'pg_restore', '--exit-on-error', '--section=post-data', '-d', 'DB', "$dir/src.dump" ]);
restore_into('pg_restore --data-only',
	[ 'pg_restore', '--exit-on-error', '--schema-only', '-d', 'DB', "$dir/src.dump" ],
	[ 'pg_restore', '--exit-on-error', '--data-only', '-j', '4', '-d', 'DB', "$dir/src.dump" ]);

note "restored trades that waited for their bot, over every pg_restore above: $restore_waits";

# Plain format: pg_dump | psql.
{
	$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
	my ($stderr_dump, $stderr_psql) = ('', '');
	my $ok = IPC::Run::run(
		[ 'pg_dump', '-Fp', @conn, '-d', 'src' ], '2>', \$stderr_dump, '|',
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', @conn, '-d', 'dst_plain' ],
		'>', \my $stdout_psql, '2>', \$stderr_psql);
	ok($ok, 'pg_dump -Fp | psql');
	is($stderr_dump . $stderr_psql, '', 'pg_dump | psql: no error, no warning');
	check_restored_copy($node, 'dst_plain', 'pg_dump | psql', $src);
}

# pg_dumpall | psql into a second cluster: every database, roles and all.
{
	my $other = PostgreSQL::Test::Cluster->new('dumpall');
	$other->init;
	$other->append_conf('postgresql.conf', "shared_preload_libraries = 'bidguard'\n");
	$other->start;
	my $script = "$dir/all.sql";
	$node->command_ok([ 'pg_dumpall', '-f', $script ], 'pg_dumpall');
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(
		[ 'psql', '-X', '-q', '-h', $other->host, '-p', $other->port, '-d', 'postgres', '-f', $script ],
		'>', \$stdout, '2>', \$stderr);
	ok($ok, 'psql -f of the pg_dumpall script');
	# The only complaint allowed: the bootstrap superuser exists already.
	is(join("\n", grep { !/role "postgres" already exists/ && /ERROR/ } split /\n/, $stderr),
		'', 'pg_dumpall | psql: no error');
	check_restored_copy($other, 'src', 'pg_dumpall | psql', $src);
	$other->stop;
}

# A restored trade whose bot is not loaded yet waits for it (parallel
# restore loads bidguard_bots in any order), then goes in as it was.
{
	$node->safe_psql('postgres', 'CREATE DATABASE wait_bot');
	$node->safe_psql('wait_bot', 'CREATE EXTENSION bidguard');
	my $copy = $node->background_psql('wait_bot', on_error_stop => 0);
	$copy->query_until(qr/started/, q{
\echo started
COPY bidguard_trades (trade_id, bot_id, status, trade_data, status_reason, atomic_event_id, created_at, filled_at, cooldown) FROM stdin;
5000	77	filled	{}	\N	00000000-0000-0000-0000-000000000077	2026-01-01 00:00:00+00	2026-01-01 00:00:05+00	01:00:00
\.
\echo copied
});
	ok( $node->poll_query_until(
			'wait_bot', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE datname = 'wait_bot' AND wait_event_type = 'Extension'
		   AND query LIKE 'COPY bidguard_trades%'}),
		'a restored trade whose bot is not there waits, on an Extension wait event');
	is($node->safe_psql('wait_bot', 'SELECT count(*) FROM bidguard_trades'), '0',
		'... and is not in the table meanwhile');
	$node->safe_psql('wait_bot', q{
COPY bidguard_bots (bot_id, cooldown, created_at, updated_at) FROM stdin;
77	01:00:00	2025-12-01 00:00:00+00	2025-12-01 00:00:00+00
\.
});
	$copy->query_until(qr/copied/, '');
	$copy->quit;
	is( $node->safe_psql(
			'wait_bot', q{
		SELECT bot_id || ' ' || status || ' ' || created_at || ' ' || cooldown FROM bidguard_trades}),
		'77 filled 2026-01-01 00:00:00+00 01:00:00',
		'once the bot is loaded, the trade goes in as it was dumped');
	is($node->safe_psql('wait_bot', 'SELECT count(*) FROM bidguard_events'), '0',
		'... writing no event (its events come with bidguard_events)');
}

# Only a COPY of every column by the table's owner counts as a restore: a
# role that may only insert gets its COPY judged like an INSERT (bot 77's
# restored trade is at 00:00:05, its cooldown an hour).
{
	$node->safe_psql('wait_bot', q{
CREATE ROLE regress_loader LOGIN;
GRANT INSERT, SELECT ON bidguard_trades TO regress_loader;
});
	my ($ret, $out, $err) = $node->psql('wait_bot', q{
SET ROLE regress_loader;
COPY bidguard_trades (trade_id, bot_id, status, trade_data, status_reason, atomic_event_id, created_at, filled_at, cooldown) FROM stdin;
5001	77	open	{}	\N	00000000-0000-0000-0000-000000000100	2026-01-01 00:30:00+00	\N	01:00:00
\.
});
	like($err, qr/trade of bot 77 is inside its cooldown/,
		'a COPY of every column by a role that is not the owner is judged');
	is($node->safe_psql('wait_bot', 'SELECT count(*) FROM bidguard_trades'), '1',
		'... and refused');
	$node->safe_psql('wait_bot', 'DROP OWNED BY regress_loader; DROP ROLE regress_loader');
}

is($node->safe_psql('src', $FINGERPRINT_SQL), $src->{fp}, 'the source is unchanged');

$node->stop;
done_testing();
