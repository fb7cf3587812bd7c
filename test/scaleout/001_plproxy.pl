
# Copyright (c) bidguard contributors

# test/scaleout/001_plproxy.pl
#	  bidguard on PL/Proxy: one proxy (extension bidguard_proxy) and two
#	  shards (bidguard + bidguard_shard), each shard one partition of two.
#	  - Every proxied function has bidguard's arguments and result columns,
#	    and runs on the shard that owns its posting, bot or id; errors keep
#	    their SQLSTATE; bidguard_lock is refused (0A000).
#	  - The fence: a shard refuses a bid, bot, trade or event of another
#	    partition, and an id from another partition's range, by plain SQL
#	    too (23514, bidguard_shard_fence); an unconfigured shard refuses all
#	    (55000); configure() refuses rows that do not belong.
#	  - BEGIN; try_trade; ROLLBACK through the proxy: the trade stays, open,
#	    and holds the cooldown until failed or swept; the sweeper fails
#	    only trades open longer than its horizon and their cooldown, and a
#	    late fill is refused (23514).
#	  - Cluster views (RUN ON ALL) add up the shards.
#	  - A race: pgbench, 16 clients through the proxy (bids, withdrawals,
#	    trades filled, failed, left open, rolled back) and 4 clients on each
#	    shard directly (the functions, plain INSERTs, and attempts at rows of
#	    the other shard), then SPEC §9's invariants on each shard, the
#	    proxy's audit views, and no key on two shards.
#	  - A shard stopped (immediate) and started again mid-run: every call
#	    acknowledged through the proxy is on its shard; while it was down
#	    only its keys failed, with a clear error, and the other shard's went
#	    on; afterwards the proxy reaches it again.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../t";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;
use ScaleoutTest;

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all => "PL/Proxy is not installed in this server (Debian: postgresql-N-plproxy)"
  unless -e "$sharedir/extension/plproxy.control";

my ($proxy, $shards) = plproxy_cluster(shards => 2);
my @shards = @$shards;

sub on_shard_of
{
	my ($keysql) = @_;
	return $shards[ $proxy->safe_psql('postgres', "SELECT ($keysql) & 1") ];
}

# ---------------------------------------------------------------- the contract
# Every public function of bidguard, by name and argument types, with its
# arguments (names and defaults) and result, exists on the proxy; the ones
# not proxied are triggers, the C functions the views sit on,
# bidguard_duplicate_active / bidguard_cooldown_violations (table audits: run
# them on a shard, or RUN ON ALL with a function of your own), and
# bidguard_create_bids (a batch spans shards; doc/scaleout.md, With PL/Proxy), and
# the rate-limit and slot guards and the pruning (run them on each shard).
my $functions_sql = q{
	SELECT p.oid::regprocedure::text || ' ' || pg_get_function_arguments(p.oid)
	       || ' -> ' || pg_get_function_result(p.oid)
	  FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'public' AND p.proname LIKE 'bidguard\_%'
	   AND p.prorettype <> 'trigger'::regtype
	 ORDER BY 1};
my %on_proxy = map { $_ => 1 } split /\n/, $proxy->safe_psql('postgres', $functions_sql);
my @missing = grep { !$on_proxy{$_} } split /\n/, $shards[0]->safe_psql('postgres', $functions_sql);
my @expected_missing = grep { $_ ne '' } split /\n/, q{
bidguard_cooldown_violations(regclass,name,name,interval,name)
bidguard_create_bids(text,text[],jsonb[])
bidguard_duplicate_active(regclass,name[],name,text[])
bidguard_guard_cooldown(regclass,name,name,interval,name)
bidguard_guard_rate_limit(regclass,name,integer,interval,text)
bidguard_guard_slots(regclass,name,integer,interval,text)
bidguard_guard_unique_active(regclass,name[],name,text[])
bidguard_lock_wait_histogram()
bidguard_prune_rate_events()
bidguard_shard_configure(integer,integer[])
bidguard_stats()
bidguard_stats_reset()
bidguard_unguard_cooldown(regclass)
bidguard_unguard_rate_limit(regclass)
bidguard_unguard_slots(regclass)
};
is_deeply([ map { (split / /)[0] } @missing ], \@expected_missing,
	'the proxy has every bidguard function with the same arguments and result, but for the documented ones');
# the guard functions take the table by name, and return a row per shard
like($proxy->safe_psql('postgres', q{SELECT pg_get_function_result('bidguard_guard_unique_active(text,name[],name,text[])'::regprocedure)}),
	qr/partitions integer\[\], index_name name/, 'guard_unique_active through the proxy: one row per shard');

# ---------------------------------------------------------------- routing
$proxy->safe_psql('postgres', q{
	SELECT bidguard_set_cooldown(b, '1 hour') FROM generate_series(1, 40) AS b;
	SELECT bidguard_create_bid('route', 'p-' || i, jsonb_build_object('i', i)) FROM generate_series(1, 100) AS i;
});
for my $i (0, 1)
{
	is( $shards[$i]->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE bidguard_shard_key(marketplace_id, posting_id) & 1 = $i
		                          AND bid_id >> 48 = $i) || '/' || count(*)
		  FROM bidguard_bids}),
		$shards[$i]->safe_psql('postgres', q{SELECT count(*) || '/' || count(*) FROM bidguard_bids}),
		"shard $i: every bid it holds routes to it, with an id from its range");
	is( $shards[$i]->safe_psql('postgres', qq{
		SELECT count(*) FROM bidguard_bots WHERE bidguard_shard_key(bot_id) & 1 <> $i}),
		'0', "shard $i: every bot it holds routes to it");
}
my ($n0, $n1) = map { $_->safe_psql('postgres', 'SELECT count(*) FROM bidguard_bids') } @shards;
is($n0 + $n1, 100, "the 100 postings are on the two shards ($n0 + $n1)");
cmp_ok($n0 * $n1, '>', 0, 'both shards hold postings');

# By id: both shards' bids and trades are found through the proxy.
for my $i (0, 1)
{
	my $bid = $shards[$i]->safe_psql('postgres', 'SELECT min(bid_id) FROM bidguard_bids');
	is($proxy->safe_psql('postgres', "SELECT changed, old_status, status FROM bidguard_set_bid_status($bid, 'submitted', 'routed')"),
		't|pending|submitted', "shard $i: set_bid_status by id through the proxy");
	is($proxy->safe_psql('postgres', "SELECT withdrawn, status FROM bidguard_withdraw_bid($bid)"),
		't|withdrawn', "shard $i: withdraw_bid by id through the proxy");
	my $bot = $proxy->safe_psql('postgres', "SELECT min(b) FROM generate_series(1, 40) AS b WHERE bidguard_shard_key(b::bigint) & 1 = $i");
	my $trade = $proxy->safe_psql('postgres', "SELECT trade_id FROM bidguard_try_trade($bot) WHERE executed");
	is($proxy->safe_psql('postgres', "SELECT bidguard_id_partition($trade)"), $i, "shard $i: the trade's id names its partition");
	is($proxy->safe_psql('postgres', "SELECT changed, status FROM bidguard_fill_trade($trade)"),
		't|filled', "shard $i: fill_trade by id through the proxy");
	is($shards[$i]->safe_psql('postgres', "SELECT status FROM bidguard_trades WHERE trade_id = $trade"),
		'filled', "shard $i: the fill is on the bot's shard");
	is($proxy->safe_psql('postgres', "SELECT reason FROM bidguard_try_trade($bot)"),
		'cooldown', "shard $i: the bot's cooldown holds through the proxy");
}
is($proxy->safe_psql('postgres', q{SELECT withdrawn, bid_id IS NULL FROM bidguard_withdraw_posting('route', 'no-such')}),
	'f|t', 'withdraw_posting of a posting without a bid: withdrawn = false, no bid_id');

# Errors keep their SQLSTATE (PL/Proxy prefixes the message with the
# function and "REMOTE ERROR").
like(error_of($proxy, 'SELECT * FROM bidguard_fill_trade(12345)'), qr/ERROR:  P0002: .*REMOTE ERROR: trade 12345 does not exist/,
	'unknown trade id: P0002 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_create_bid('', 'x')}), qr/ERROR:  22023: .*marketplace_id must not be empty/,
	'empty id: 22023 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_create_bid(NULL, 'x')}), qr/ERROR:  22004: marketplace_id must not be null/,
	'NULL posting: 22004 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_try_trade(NULL)}), qr/ERROR:  22004: bot_id must not be null/,
	'NULL bot: 22004 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_fill_trade(NULL)}), qr/ERROR:  22004: trade_id must not be null/,
	'NULL trade id: 22004 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_try_trade(999999)}), qr/ERROR:  23503: /,
	'unknown bot: 23503 through the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_set_bid_status(1, 'won')}), qr/ERROR:  23514: /,
	'a transition not allowed: 23514 through the proxy');
like(error_of($proxy, q{SELECT bidguard_lock('ns', 'k')}),
	qr/ERROR:  0A000: bidguard_lock cannot be used through PL\/Proxy\nDETAIL:  Each proxied call commits/,
	'bidguard_lock is refused on the proxy, with the reason');

like(error_of($proxy, q{SELECT * FROM bidguard_acquire_slot('job', 1)}),
	qr/ERROR:  0A000: bidguard_acquire_slot cannot be used through PL\/Proxy/,
	'bidguard_acquire_slot is refused on the proxy');
like(error_of($proxy, q{SELECT * FROM bidguard_acquire_session_slot('job', 1)}),
	qr/ERROR:  0A000: bidguard_acquire_session_slot cannot be used through PL\/Proxy/,
	'bidguard_acquire_session_slot is refused on the proxy');

# Rate limits through the proxy: every call of a key reaches the key's shard,
# whose window decides; the other shard never sees the key.
is($proxy->safe_psql('postgres', q{
	SELECT string_agg(allowed::text, ',' ORDER BY n)
	  FROM generate_series(1, 3) AS n, LATERAL bidguard_rate_limit('proxy:k', 2, '1 hour', n - n + 1)}),
	'true,true,false', 'a rate limit through the proxy: two admitted, the third refused');
{
	my $home = $proxy->safe_psql('postgres', q{SELECT bidguard_shard_key('proxy:k') & 1});
	is($shards[$home]->safe_psql('postgres', q{SELECT count(*) FROM bidguard_rate_events WHERE key = 'proxy:k'}),
		'2', "the two units are on the key's shard (partition $home)");
	is($shards[1 - $home]->safe_psql('postgres', q{SELECT count(*) FROM bidguard_rate_events WHERE key = 'proxy:k'}),
		'0', 'and none on the other shard');
}
like(error_of($proxy, q{SELECT * FROM bidguard_rate_limit(NULL, 1, '1 hour')}), qr/ERROR:  22004: /,
	'NULL rate key: 22004 through the proxy');

# ---------------------------------------------------------------- the fence
my $wrong_posting = $proxy->safe_psql('postgres',
	q{SELECT 'p-' || min(i) FROM generate_series(1, 100) AS i WHERE bidguard_shard_key('fence', 'p-' || i) & 1 = 1});
my $wrong_bot = $proxy->safe_psql('postgres', q{SELECT min(b) FROM generate_series(1, 40) AS b WHERE bidguard_shard_key(b::bigint) & 1 = 1});
my $right_bot = $proxy->safe_psql('postgres', q{SELECT min(b) FROM generate_series(1, 40) AS b WHERE bidguard_shard_key(b::bigint) & 1 = 0});
my $fence = qr/ERROR:  23514: .*belongs to partition 1 of 2, not to this shard\nDETAIL:  This shard holds partitions \{0\}\.\nHINT:  Make the call through the proxy.*\n(?s:.*)CONSTRAINT NAME:  bidguard_shard_fence/;
like(error_of($shards[0], "INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('fence', '$wrong_posting')"),
	$fence, 'plain INSERT of another shard\'s posting: 23514 bidguard_shard_fence, naming the partition');
like(error_of($shards[0], "SELECT * FROM bidguard_create_bid('fence', '$wrong_posting')"), $fence,
	'bidguard_create_bid on the wrong shard: refused');
like(error_of($shards[0], "SELECT bidguard_set_cooldown($wrong_bot, '1s')"), qr/ERROR:  23514: bot $wrong_bot belongs to partition 1/,
	'a bot of the other shard: refused');
like(error_of($shards[0], "INSERT INTO bidguard_trades (bot_id) VALUES ($wrong_bot)"), qr/ERROR:  23(514|503): /,
	'a trade of the other shard\'s bot: refused');
like(error_of($shards[0], "INSERT INTO bidguard_events (kind, bot_id) VALUES ('note', $wrong_bot)"), qr/ERROR:  23514: bot $wrong_bot belongs/,
	'an event about the other shard\'s bot: refused');
like(error_of($shards[0], "INSERT INTO bidguard_trades (trade_id, bot_id) VALUES (281474976710657, $right_bot)"),
	qr/ERROR:  23514: trade_id 281474976710657 was not allocated by this shard/, 'an id from another partition\'s range: refused');
my $stay = $proxy->safe_psql('postgres',
	q{SELECT 'stay-' || min(i) FROM generate_series(1, 100) AS i WHERE bidguard_shard_key('fence', 'stay-' || i) & 1 = 0});
$shards[0]->safe_psql('postgres', "SELECT bidguard_create_bid('fence', '$stay')");
like(error_of($shards[0], "UPDATE bidguard_bids SET posting_id = '$wrong_posting' WHERE posting_id = '$stay'"),
	$fence, 'an UPDATE that moves a bid to the other shard\'s posting: refused');
is(error_of($shards[0], "INSERT INTO bidguard_bids (marketplace_id, posting_id) SELECT 'fence', 'p-' || min(i) FROM generate_series(1, 100) AS i WHERE bidguard_shard_key('fence', 'p-' || i) & 1 = 0"),
	'', 'a plain INSERT of the shard\'s own posting is guarded as usual, and allowed');

# An unconfigured shard refuses everything; configure refuses foreign rows.
my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init;
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION bidguard');
$bare->safe_psql('postgres', q{SELECT bidguard_create_bid('m', 'p-' || i) FROM generate_series(1, 20) AS i});
$bare->safe_psql('postgres', 'CREATE EXTENSION bidguard_shard');
like(error_of($bare, q{SELECT bidguard_create_bid('m', 'new')}),
	qr/ERROR:  55000: this shard is not configured\n.*\nHINT:  Run SELECT bidguard_shard_configure/,
	'an unconfigured shard refuses rows: 55000, with the remedy');
like(error_of($bare, q{SELECT bidguard_shard_configure(2, '{0}')}),
	qr/ERROR:  23514: this database holds \d+ rows that do not belong to partitions \{0\} of 2/,
	'configure refuses a database holding rows of other partitions');
like(error_of($bare, q{SELECT bidguard_shard_configure(3, '{0}')}), qr/ERROR:  22023: partition_count must be a power of 2/,
	'partition_count must be a power of 2');
like(error_of($bare, q{SELECT bidguard_shard_configure(4, '{4}')}), qr/ERROR:  22023: partitions must be/,
	'partitions must lie below partition_count');
like(error_of($bare, q{SELECT bidguard_shard_configure(NULL, '{0}')}), qr/ERROR:  22004: /, 'NULL: 22004');
is($bare->safe_psql('postgres', q{SELECT holds_partitions, of_partition_count FROM bidguard_shard_configure(1, '{0}')}),
	'{0}|1', 'a database of one partition takes every row it has');
$bare->stop;
like(error_of($shards[1], q{SELECT bidguard_shard_configure(2, '{0}')}),
	qr/ERROR:  55000: this shard holds rows of partitions \{1\} of 2/, 'a shard with rows cannot change partitions');
is($shards[1]->safe_psql('postgres', q{SELECT holds_partitions FROM bidguard_shard_configure(2, '{1}')}),
	'{1}', 'configuring a shard again as it is changes nothing');

# ---------------------------------------------------------------- ROLLBACK and the sweeper
$proxy->safe_psql('postgres', q{SELECT bidguard_set_cooldown(b, '1.5 s') FROM generate_series(101, 104) AS b});
my $rb = $proxy->safe_psql('postgres', q{
	BEGIN;
	SELECT trade_id FROM bidguard_try_trade(101) WHERE executed;
	ROLLBACK;});
like($rb, qr/^\d+$/, 'BEGIN; try_trade; ROLLBACK through the proxy: the call returned a trade');
my $rb_shard = $shards[ $proxy->safe_psql('postgres', "SELECT bidguard_id_partition($rb)") ];
is($rb_shard->safe_psql('postgres', "SELECT status FROM bidguard_trades WHERE trade_id = $rb"), 'open',
	'... and the shard committed it: the trade stays, open (PL/Proxy commits each call)');
is($proxy->safe_psql('postgres', 'SELECT reason FROM bidguard_try_trade(101)'), 'cooldown',
	'... holding the bot\'s cooldown: no second trade');
is($proxy->safe_psql('postgres', "SELECT changed, status FROM bidguard_fail_trade($rb, 'client rolled back')"), 't|failed',
	'failing the reservation gives the cooldown back');
my $again = $proxy->safe_psql('postgres', 'SELECT trade_id FROM bidguard_try_trade(101) WHERE executed');
like($again, qr/^\d+$/, '... and the bot trades again');

# The sweeper: trades 102..104 left open.
my @open = map { $proxy->safe_psql('postgres', "SELECT trade_id FROM bidguard_try_trade($_) WHERE executed") } 102 .. 104;
is($proxy->safe_psql('postgres', q{SELECT count(*) FROM bidguard_sweep_open_trades('0')}), '0',
	'sweeper: nothing is swept inside its cooldown, whatever older_than says');
sleep 2;
is($proxy->safe_psql('postgres', q{SELECT count(*) FROM bidguard_sweep_open_trades('1 hour')}), '0',
	'sweeper: nothing younger than older_than');
is($proxy->safe_psql('postgres', q{SELECT string_agg(trade_id::text, ',' ORDER BY trade_id) FROM bidguard_sweep_open_trades('1 s') WHERE bot_id BETWEEN 101 AND 104}),
	join(',', sort { $a <=> $b } ($again, @open)), 'sweeper: the trades open longer than older_than and their cooldown, on both shards');
my $swept = $open[0];
my $swept_shard = $shards[ $proxy->safe_psql('postgres', "SELECT bidguard_id_partition($swept)") ];
like($swept_shard->safe_psql('postgres', "SELECT status || ' ' || status_reason FROM bidguard_trades WHERE trade_id = $swept"),
	qr/^failed expired: open for 00:00:0\d, swept by bidguard_sweep_open_trades$/, 'a swept trade is failed, reason expired');
is($swept_shard->safe_psql('postgres', "SELECT count(*) FROM bidguard_events WHERE trade_id = $swept AND new_status = 'failed'"), '1',
	'... with its event');
like(error_of($proxy, "SELECT * FROM bidguard_fill_trade($swept)"),
	qr/ERROR:  23514: .*trade $swept cannot move from status "failed" to "filled"/,
	'a fill after the sweep is refused: 23514, the trade is failed');
like(error_of($shards[0], q{SELECT * FROM bidguard_sweep_open_trades('-1 s')}), qr/ERROR:  22023: /, 'sweeper: a negative older_than is 22023');

# ---------------------------------------------------------------- cluster views
is($proxy->safe_psql('postgres', q{SELECT string_agg(partitions::text, ' ' ORDER BY partitions) FROM bidguard_shards}),
	'{0} {1}', 'bidguard_shards: one row per shard, its partitions');
is( $proxy->safe_psql('postgres', 'SELECT bids_created, trades_executed FROM bidguard_stats'),
	join('|', map { my $c = $_; my $s = 0; $s += $shards[$_]->safe_psql('postgres', "SELECT $c FROM bidguard_stats") for 0, 1; $s } qw(bids_created trades_executed)),
	'bidguard_stats on the proxy: the sum of the shards');
is( $proxy->safe_psql('postgres', 'SELECT rate_allowed, rate_limited FROM bidguard_stats'),
	join('|', map { my $c = $_; my $s = 0; $s += $shards[$_]->safe_psql('postgres', "SELECT $c FROM bidguard_stats") for 0, 1; $s } qw(rate_allowed rate_limited)),
	'rate-limit counters on the proxy: the sum of the shards');
{
	my $cols = q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	              WHERE attrelid = 'bidguard_stats'::regclass AND attnum > 0};
	is($proxy->safe_psql('postgres', $cols), $shards[0]->safe_psql('postgres', $cols),
		'the proxy\'s bidguard_stats has the columns of a shard\'s, in order (the Prometheus kit reads them)');
}
cmp_ok($proxy->safe_psql('postgres', 'SELECT bids_created FROM bidguard_stats'), '>=', 100, '... which counted the bids');

# ---------------------------------------------------------------- the race
$proxy->safe_psql('postgres', q{SELECT bidguard_set_cooldown(b, '40 ms') FROM generate_series(1001, 1020) AS b});
for my $i (0, 1)
{
	$shards[$i]->safe_psql('postgres', qq{
		CREATE TABLE local_bots AS SELECT b AS bot_id FROM generate_series(1001, 1020) AS b
		 WHERE bidguard_shard_key(b::bigint) & 1 = $i;
		CREATE TABLE other_bots AS SELECT b AS bot_id FROM generate_series(1001, 1020) AS b
		 WHERE bidguard_shard_key(b::bigint) & 1 <> $i;
		CREATE TABLE local_postings AS SELECT 'p-' || p AS posting_id FROM generate_series(1, 60) AS p
		 WHERE bidguard_shard_key('race', 'p-' || p) & 1 = $i;
		CREATE TABLE other_postings AS SELECT 'p-' || p AS posting_id FROM generate_series(1, 60) AS p
		 WHERE bidguard_shard_key('race', 'p-' || p) & 1 <> $i;
		CREATE TABLE refusals (kind text);
		-- a plain INSERT of a trade, the way an application without the
		-- functions would make one; the cooldown's 23P01 is an answer
		CREATE FUNCTION plain_trade() RETURNS text LANGUAGE plpgsql AS \$\$
		BEGIN
		    INSERT INTO bidguard_trades (bot_id) SELECT bot_id FROM local_bots ORDER BY random() LIMIT 1;
		    RETURN 'inserted';
		EXCEPTION WHEN exclusion_violation THEN RETURN 'cooldown';
		END \$\$;
		-- rows of the other shard, tried here: the fence must refuse each
		CREATE FUNCTION foreign_rows() RETURNS text LANGUAGE plpgsql AS \$\$
		BEGIN
		    BEGIN
		        INSERT INTO bidguard_bids (marketplace_id, posting_id)
		        SELECT 'race', posting_id FROM other_postings ORDER BY random() LIMIT 1;
		        INSERT INTO refusals VALUES ('bid accepted');
		    EXCEPTION WHEN check_violation THEN INSERT INTO refusals VALUES ('bid');
		    END;
		    BEGIN
		        -- 'busy' is an answer too: another client holds that bot's
		        -- lock for the moment it takes to be refused
		        IF (SELECT executed FROM bidguard_try_trade((SELECT bot_id FROM other_bots ORDER BY random() LIMIT 1))) THEN
		            INSERT INTO refusals VALUES ('trade accepted');
		        ELSE
		            INSERT INTO refusals VALUES ('trade busy');
		        END IF;
		    EXCEPTION WHEN check_violation OR foreign_key_violation THEN INSERT INTO refusals VALUES ('trade');
		    END;
		    RETURN 'refused';
		END \$\$;
	});
}

my $seconds = 8;
my @runs;
push @runs, start_pgbench($proxy, 'proxy', "-c 16 -j 4 -T $seconds", {
	'bid@5' => "\\set p random(1, 60)\nSELECT * FROM bidguard_create_bid('race', 'p-' || :p, '{\"via\": \"proxy\"}');\n",
	'withdraw@1' => "\\set p random(1, 60)\nSELECT * FROM bidguard_withdraw_posting('race', 'p-' || :p, 'race');\n",
	'trade_fill@4' => "\\set b random(1001, 1020)\nSELECT f.* FROM bidguard_try_trade(:b) AS t, LATERAL bidguard_fill_trade(t.trade_id) AS f WHERE t.executed;\n",
	'trade_fail@1' => "\\set b random(1001, 1020)\nSELECT f.* FROM bidguard_try_trade(:b) AS t, LATERAL bidguard_fail_trade(t.trade_id, 'exchange said no') AS f WHERE t.executed;\n",
	'trade_open@1' => "\\set b random(1001, 1020)\nSELECT * FROM bidguard_try_trade(:b, '{\"left\": \"open\"}');\n",
	'trade_rollback@1' => "\\set b random(1001, 1020)\nBEGIN;\nSELECT * FROM bidguard_try_trade(:b, '{\"rolled\": \"back\"}');\nROLLBACK;\n",
});
for my $i (0, 1)
{
	push @runs, start_pgbench($shards[$i], "shard$i", "-c 4 -j 2 -T $seconds", {
		'bid@3' => "SELECT * FROM bidguard_create_bid('race', (SELECT posting_id FROM local_postings ORDER BY random() LIMIT 1), '{\"via\": \"direct\"}');\n",
		'plain_bid@2' => "INSERT INTO bidguard_bids (marketplace_id, posting_id) SELECT 'race', posting_id FROM local_postings ORDER BY random() LIMIT 1 ON CONFLICT DO NOTHING;\n",
		'trade@3' => "SELECT * FROM bidguard_try_trade((SELECT bot_id FROM local_bots ORDER BY random() LIMIT 1));\n",
		'plain_trade@2' => "SELECT plain_trade();\n",
		'foreign@1' => "SELECT foreign_rows();\n",
	});
}
my @results = map { finish_pgbench($_) } @runs;
for my $r (@results)
{
	is($r->{status}, 0, "race: pgbench exited 0 ($r->{processed} transactions)") or diag $r->{stderr};
	is($r->{failed}, 0, 'race: no failed transaction');
}
my $via_proxy = $results[0]{processed};
cmp_ok($via_proxy, '>', 500, "race: the proxy served $via_proxy transactions");
note "race: tps proxy $results[0]{tps}, shard0 $results[1]{tps}, shard1 $results[2]{tps}";

for my $i (0, 1)
{
	check_bid_invariants($shards[$i], "race, shard $i");
	check_trade_invariants($shards[$i], "race, shard $i");
	is($shards[$i]->safe_psql('postgres', 'SELECT count(*) FROM bidguard_shard_misplaced'), '0',
		"race, shard $i: no misplaced row");
	is($shards[$i]->safe_psql('postgres', q{SELECT count(*) FROM refusals WHERE kind LIKE '%accepted'}), '0',
		"race, shard $i: the fence accepted no row of the other shard");
	cmp_ok($shards[$i]->safe_psql('postgres', q{SELECT count(*) FROM refusals}), '>', 20,
		"race, shard $i: and it was tried");
	cmp_ok($shards[$i]->safe_psql('postgres', q{SELECT count(*) FROM bidguard_trades WHERE trade_data ? 'rolled'}), '>', 0,
		"race, shard $i: trades whose client rolled back are there (open or closed), as documented");
}
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM bidguard_duplicate_active_bids'), '0',
	'race: no posting active twice, across shards');
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM bidguard_cooldown_violations'), '0',
	'race: no cooldown violation on any shard');
is($proxy->safe_psql('postgres', 'SELECT count(*) FROM bidguard_misplaced_rows'), '0',
	'race: no misplaced row on any shard');
check_no_key_on_two_nodes('race: bots', \@shards, 'SELECT bot_id FROM bidguard_bots');
check_no_key_on_two_nodes('race: postings', \@shards, 'SELECT DISTINCT marketplace_id || chr(1) || posting_id FROM bidguard_bids');
check_no_key_on_two_nodes('race: trade ids', \@shards, 'SELECT trade_id FROM bidguard_trades');
check_no_key_on_two_nodes('race: bid ids', \@shards, 'SELECT bid_id FROM bidguard_bids');
my $trades = 0;
$trades += $_->safe_psql('postgres', q{SELECT count(*) FROM bidguard_trades WHERE bot_id BETWEEN 1001 AND 1020 AND status <> 'failed'}) for @shards;
note "race: $trades counting trades of 20 bots in $seconds s";

# ---------------------------------------------------------------- a shard stopped mid-run
$proxy->safe_psql('postgres', q{SELECT bidguard_set_cooldown(b, '0') FROM generate_series(1, 20) AS b});
my $dsn = 'host=' . $proxy->host . ' port=' . $proxy->port . ' dbname=postgres';
my ($down_at, $up_at);
my $records = run_acked_calls($dsn, [ '--threads', '4', '--seconds', '7', '--bots', '20', '--postings', '200' ], sub {
	sleep 2;
	$down_at = time;
	$shards[1]->stop('immediate');
	sleep 2;
	$shards[1]->start;
	$up_at = time;
});
my @acked = grep { $_->{ack} && $_->{ack} ne 'refused' } @$records;
my @errors = grep { $_->{error} } @$records;
note 'stopped shard: ' . scalar(@acked) . ' acknowledged calls, ' . scalar(@errors) . ' errors';
cmp_ok(scalar(@acked), '>', 100, 'stopped shard: calls were acknowledged');
cmp_ok(scalar(@errors), '>', 0, 'stopped shard: calls to the stopped shard failed');
# Ids say their shard (id >> 48): one query per shard and kind.
my %lost;
for my $kind ('trade', 'bid')
{
	my $table = $kind eq 'trade' ? 'bidguard_trades AS t WHERE t.trade_id' : 'bidguard_bids AS t WHERE t.bid_id';
	for my $part (0, 1)
	{
		my @ids = map { $_->{id} } grep { $_->{ack} eq $kind && ($_->{id} >> 48) == $part } @acked;
		next unless @ids;
		my $missing = $shards[$part]->safe_psql('postgres',
			"SELECT string_agg(i::text, ',') FROM unnest('{" . join(',', @ids) . "}'::bigint[]) AS i"
			  . " WHERE NOT EXISTS (SELECT FROM $table = i)");
		$lost{"$kind $_"} = 1 for grep { $_ ne '' } split /,/, $missing;
	}
}
is(scalar(keys %lost), 0, 'stopped shard: every acknowledged bid and trade is on its shard')
  or diag join(', ', (sort keys %lost)[0 .. 9]);
# Every error is about a key of shard 1, and says what happened.
my %error_shards;
my @keys = map { $_->{key} =~ /^bot (\d+)$/ ? "bidguard_shard_key($1::bigint)"
	: $_->{key} =~ /^posting (.+)$/ ? "bidguard_shard_key('m', '$1')" : 'NULL::int' } @errors;
if (@keys)
{
	$error_shards{$_ eq '' ? 'connect' : $_}++ for split /\n/, $proxy->safe_psql('postgres',
		'SELECT k & 1 FROM (VALUES (' . join('), (', @keys) . ')) AS v(k)');
}
is_deeply([ sort keys %error_shards ], ['1'], 'stopped shard: only calls for its keys failed')
  or diag explain \%error_shards;
my %messages;
$messages{ $_->{error} . ' ' . ($_->{message} =~ s/\d+/N/gr) }++ for @errors;
note "stopped shard: errors:\n" . join("\n", map { "  $messages{$_} x $_" } sort keys %messages);
my @unclear = grep { !/REMOTE ERROR|could not connect|connection|terminat|shut/i } keys %messages;
is(scalar(@unclear), 0, 'stopped shard: every error says the shard was unreachable or went away')
  or diag join("\n", @unclear);
# While shard 1 was down (from its first error to its last), shard 0 answered.
my ($first_error, $last_error) = (1e9, 0);
for my $e (@errors)
{
	$first_error = $e->{t} if $e->{t} < $first_error;
	$last_error = $e->{t} if $e->{t} > $last_error;
}
my @shard0_while_down = grep { ($_->{id} >> 48) == 0 && $_->{t} > $first_error && $_->{t} < $last_error } @acked;
cmp_ok(scalar(@shard0_while_down), '>', 10,
	sprintf('stopped shard: the other shard went on answering meanwhile (%d calls in %.1f s)',
		scalar(@shard0_while_down), $last_error - $first_error));
my %late_parts;
$late_parts{ $_->{id} >> 48 }++ for grep { $_->{t} > 5.5 } @acked;
ok($late_parts{1}, 'stopped shard: after its restart the proxy reached it again');
for my $i (0, 1)
{
	check_bid_invariants($shards[$i], "after the stop, shard $i");
	check_trade_invariants($shards[$i], "after the stop, shard $i");
}

$proxy->stop;
$_->stop for @shards;
done_testing();
