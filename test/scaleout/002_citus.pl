
# Copyright (c) bidguard contributors

# test/scaleout/002_citus.pl
#	  bidguard on Citus: a coordinator and two workers, laid out by the
#	  doc/scaleout.md's block (bidguard_citus_distribute()).
#	  - Moving a single-node database: every bid, bot, trade and event
#	    survives, on the worker that holds its key, with the same ids,
#	    statuses and times; a posting with an active bid still dedupes.
#	  - Routing: calls through the coordinator run on the worker that holds
#	    the key (ids from that worker's range, events on that worker).
#	  - Refused: a call Citus cannot delegate (CTE, per-row, (f()).*), a call
#	    on a worker for a key it does not hold (0A000); the by-id functions
#	    (0A000, hint names the keyed variant); a row written into the wrong
#	    shard (23514 bidguard_citus_fence).  The keyed variants work.
#	  - BEGIN; try_trade; ROLLBACK through the coordinator gives the cooldown
#	    back; a transaction over keys of both workers commits on both.
#	  - The invariant checks find violations when there are some.
#	  - A race: pgbench, 16 clients through the coordinator (bids,
#	    withdrawals, trades filled, failed, left open, rolled back) and 4 on
#	    each worker directly (the functions, plain INSERTs, attempts at keys
#	    of the other worker), then the invariants of every node and no key
#	    on two nodes.
#	  - A worker stopped (immediate) and started mid-run: every call the
#	    coordinator acknowledged is there; only that worker's keys failed
#	    meanwhile, with a clear error; afterwards it answers again.
#	  - A worker added: prepared (its id range), shards moved to it by
#	    Citus's rebalancer, the moved rows' events moved after them
#	    (bidguard_citus_move_events), every invariant holding again.

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
unless (-e "$sharedir/extension/citus.control")
{
	# CI builds Citus (scripts/build-citus.sh) and requires it: a skip there
	# would hide that the Citus layout went untested.
	BAIL_OUT('Citus is not installed in this server, and BIDGUARD_REQUIRE_CITUS is set')
	  if $ENV{BIDGUARD_REQUIRE_CITUS};
	plan skip_all => 'Citus is not installed in this server (scripts/build-citus.sh, or Citus\'s packages)';
}

my ($co, $workers) = citus_cluster(workers => 2);
my @workers = @$workers;

# The worker (index into @workers) that holds $key of $table.
sub worker_of
{
	my ($table, $key) = @_;
	my $port = $co->safe_psql('postgres', qq{
		SELECT n.nodeport FROM pg_dist_placement AS p JOIN pg_dist_node AS n USING (groupid)
		 WHERE p.shardid = get_shard_id_for_distribution_column('$table', $key)});
	for my $i (0 .. $#workers)
	{
		return $i if $workers[$i]->port == $port;
	}
	BAIL_OUT("no worker holds $key of $table (port '$port')");
}

# { key => worker index } for @keys (of SQL type $type) of $table, in one query.
sub workers_of
{
	my ($table, $type, @keys) = @_;
	my %index = map { ($workers[$_]->port => $_) } 0 .. $#workers;
	my $list = join(',', map { $type eq 'text' ? "'$_'" : $_ } @keys);
	my %w;
	for (split /\n/, $co->safe_psql('postgres', qq{
		SELECT k::text || '|' || n.nodeport FROM unnest(ARRAY[$list]::$type\[]) AS k
		  JOIN pg_dist_placement AS p ON p.shardid = get_shard_id_for_distribution_column('$table', k)
		  JOIN pg_dist_node AS n USING (groupid)}))
	{
		my ($k, $port) = split /\|/;
		$w{$k} = $index{$port};
	}
	return \%w;
}

sub invariants
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $rows = $co->safe_psql('postgres',
		'SELECT node, check_name, violations FROM bidguard_citus_invariants() ORDER BY 1, 2');
	my @bad = grep { !/\|0$/ } split /\n/, $rows;
	is(scalar(@bad), 0, "$label: every invariant holds on every node") or diag join("\n", @bad,
		'the trades close to their predecessor (bot, trade, status, created, filled, cooldown, data; the previous one):',
		$co->safe_psql('postgres', q{
			SELECT * FROM (
				SELECT bot_id, trade_id, status, created_at, filled_at, cooldown, trade_data,
				       lag(trade_id) OVER w AS prev_id, lag(status) OVER w AS prev_status,
				       lag(created_at) OVER w AS prev_created, lag(filled_at) OVER w AS prev_filled,
				       lag(trade_data) OVER w AS prev_data
				  FROM bidguard_trades WHERE status <> 'failed'
				WINDOW w AS (PARTITION BY bot_id ORDER BY created_at, trade_id)) AS x
			 WHERE created_at - COALESCE(prev_filled, prev_created) < cooldown
			    OR created_at - prev_created < cooldown}));
	is($co->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT marketplace_id, posting_id FROM bidguard_bids
		  WHERE status IN ('pending', 'submitted') GROUP BY 1, 2 HAVING count(*) > 1) AS d}),
		'0', "$label: no posting has two active bids, across the cluster");
	return $rows;
}

# ---------------------------------------------------------------- moving a single-node database
$co->safe_psql('postgres', q{
	SELECT bidguard_create_bid('old', 'p-' || i, jsonb_build_object('i', i)) FROM generate_series(1, 30) AS i;
	SELECT bidguard_withdraw_posting('old', 'p-' || i, 'moved') FROM generate_series(1, 5) AS i;
	SELECT bidguard_set_cooldown(b, '1 hour') FROM generate_series(1, 12) AS b;
	SELECT t.trade_id FROM generate_series(1, 12) AS b, bidguard_try_trade(b) AS t;
	SELECT bidguard_fill_trade(t) FROM generate_series(1, 4) AS t;
	SELECT bidguard_fail_trade(t, 'old') FROM generate_series(5, 6) AS t;
});
my $snapshot = q{
	SELECT (SELECT string_agg(concat_ws(',', bid_id, marketplace_id, posting_id, status, atomic_event_id, created_at), ';' ORDER BY bid_id) FROM bidguard_bids)
	    || '|' || (SELECT string_agg(concat_ws(',', trade_id, bot_id, status, atomic_event_id, created_at, filled_at, cooldown), ';' ORDER BY trade_id) FROM bidguard_trades)
	    || '|' || (SELECT string_agg(concat_ws(',', bot_id, cooldown), ';' ORDER BY bot_id) FROM bidguard_bots)};
my $before = $co->safe_psql('postgres', $snapshot);
my $events_before = $co->safe_psql('postgres',
	q{SELECT string_agg(concat_ws(',', event_id, kind, bid_id, trade_id, occurred_at), ';' ORDER BY event_id) FROM bidguard_events});

my $n_events = $co->safe_psql('postgres', 'SELECT count(*) FROM bidguard_events');

my $report = citus_distribute($co);
note "bidguard_citus_distribute():\n$report";
like($report, qr/^distributed: .* 32 shards each$/m, 'distribute: the three tables, with citus.shard_count shards');
like($report, qr/^events moved to their rows' workers: $n_events$/m, "distribute: the $n_events events moved to the workers");
is(scalar(() = $report =~ /^delegated: /mg), 8, 'distribute: eight functions delegated');
like(error_of($co, 'SELECT * FROM bidguard_citus_distribute()'), qr/ERROR:  55000: bidguard's tables are distributed already/,
	'distribute twice: 55000');
like(error_of($workers[0], 'SELECT * FROM bidguard_citus_distribute()'), qr/ERROR:  55000: .*runs on the coordinator/,
	'distribute on a worker: 55000');

is($co->safe_psql('postgres', $snapshot), $before, 'moved: every bid, trade and bot, with its ids, statuses and times');
is($co->safe_psql('postgres',
	q{SELECT string_agg(concat_ws(',', event_id, kind, bid_id, trade_id, occurred_at), ';' ORDER BY event_id) FROM bidguard_citus_events()}),
	$events_before, 'moved: every event, once, across the nodes');
is($co->safe_psql('postgres', 'SELECT count(*) FROM bidguard_events'), '0', 'moved: none left on the coordinator');
invariants('moved');
my $old = $co->safe_psql('postgres', q{SELECT bid_id FROM bidguard_bids WHERE posting_id = 'p-9'});
is($co->safe_psql('postgres', q{SELECT bid_id, created FROM bidguard_create_bid('old', 'p-9')}), "$old|f",
	'moved: a posting with an active bid dedupes through the coordinator');
is($co->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(7)}), 'cooldown',
	'moved: a bot inside its cooldown stays inside it');

# ---------------------------------------------------------------- routing
$co->safe_psql('postgres', "SELECT * FROM bidguard_create_bid('route', 'r-$_')") for 1 .. 20;
for my $i (0, 1)
{
	my $group = $workers[$i]->safe_psql('postgres', 'SELECT groupid FROM pg_dist_local_group');
	my $mine = $co->safe_psql('postgres', qq{
		SELECT count(*) FROM bidguard_bids AS b
		  JOIN pg_dist_placement AS p ON p.shardid = get_shard_id_for_distribution_column('bidguard_bids', b.posting_id)
		 WHERE b.marketplace_id = 'route' AND p.groupid = $group AND b.bid_id >> 48 = $group});
	my $all = $co->safe_psql('postgres', qq{
		SELECT count(*) FROM bidguard_bids AS b
		  JOIN pg_dist_placement AS p ON p.shardid = get_shard_id_for_distribution_column('bidguard_bids', b.posting_id)
		 WHERE b.marketplace_id = 'route' AND p.groupid = $group});
	cmp_ok($all, '>', 0, "routing: worker $i holds some of the postings");
	is($mine, $all, "routing: worker $i made the ids of the bids it holds (id >> 48 = its group)");
	is($workers[$i]->safe_psql('postgres', qq{
		SELECT count(*) FROM bidguard_events WHERE kind = 'bid_created' AND marketplace_id = 'route'}),
		$all, "routing: worker $i has the creation events of its bids");
}

# ---------------------------------------------------------------- refused, and the keyed variants
my $refused = qr/ERROR:  0A000: .* is held by shard \d+ of bidguard_\w+, which is not on this node\n.*\nHINT:  Distribute bidguard's functions/;
like(error_of($co, q{WITH x AS (SELECT * FROM bidguard_create_bid('route', 'r-1')) SELECT * FROM x}), $refused,
	'a call in a CTE is not delegated: refused, 0A000');
like(error_of($co, q{SELECT (bidguard_try_trade(3)).*}), $refused, 'SELECT (f(...)).* is not delegated: refused');
like(error_of($co, q{SELECT bidguard_set_cooldown(b, '1 s') FROM generate_series(1, 3) AS b}), $refused,
	'a call per row of a query is not delegated: refused');
like(error_of($co, q{SELECT * FROM bidguard_try_trade((SELECT 3))}), $refused, 'a subquery argument: refused');
my $bid = $co->safe_psql('postgres', q{SELECT bid_id FROM bidguard_bids WHERE posting_id = 'r-2'});
like(error_of($co, "SELECT * FROM bidguard_set_bid_status($bid, 'submitted')"),
	qr/ERROR:  0A000: bidguard_set_bid_status\(bid_id, new_status, reason\) cannot find its row: public.bidguard_bids is distributed by Citus\n.*\nHINT:  Call bidguard_citus_set_bid_status\(posting_id, bid_id, new_status, reason\) instead\./,
	'set_bid_status by id: 0A000, the hint names the keyed variant');
like(error_of($co, 'SELECT * FROM bidguard_withdraw_bid(1)'), qr/ERROR:  0A000: .*\n.*\nHINT:  Call bidguard_citus_withdraw_bid/,
	'withdraw_bid by id: 0A000');
like(error_of($co, 'SELECT * FROM bidguard_fill_trade(1)'), qr/HINT:  Call bidguard_citus_fill_trade\(bot_id, trade_id, filled_at\)/,
	'fill_trade by id: 0A000');
like(error_of($co, 'SELECT * FROM bidguard_fail_trade(1)'), qr/HINT:  Call bidguard_citus_fail_trade/, 'fail_trade by id: 0A000');
is($co->safe_psql('postgres', "SELECT changed, old_status, status FROM bidguard_citus_set_bid_status('r-2', $bid, 'submitted')"),
	't|pending|submitted', 'bidguard_citus_set_bid_status');
is($co->safe_psql('postgres', "SELECT withdrawn, status FROM bidguard_citus_withdraw_bid('r-2', $bid, 'done')"),
	't|withdrawn', 'bidguard_citus_withdraw_bid');
$co->safe_psql('postgres', q{SELECT bidguard_set_cooldown(100, '0')});
$co->safe_psql('postgres', q{SELECT bidguard_set_cooldown(101, '0')});
my $trade = $co->safe_psql('postgres', 'SELECT trade_id FROM bidguard_try_trade(100)');
is($co->safe_psql('postgres', "SELECT changed, status FROM bidguard_citus_fill_trade(100, $trade)"), 't|filled',
	'bidguard_citus_fill_trade');
like(error_of($co, "SELECT * FROM bidguard_citus_fill_trade(101, $trade)"), qr/ERROR:  P0002: trade $trade (is not a trade of bot 101|does not exist)/,
	'a keyed call with the wrong key: P0002');
my $trade2 = $co->safe_psql('postgres', 'SELECT trade_id FROM bidguard_try_trade(100)');
is($co->safe_psql('postgres', "SELECT changed, status FROM bidguard_citus_fail_trade(100, $trade2, 'x')"), 't|failed',
	'bidguard_citus_fail_trade');
is($co->safe_psql('postgres', "SELECT status FROM bidguard_bids WHERE posting_id = 'r-2'"), 'withdrawn',
	'... and the keyed calls changed the rows');

# On a worker directly: its own keys run there, others' are refused.
my ($own_bot, $other_bot);
for my $b (200 .. 260)
{
	my $w = worker_of('bidguard_trades', "${b}::bigint");
	$own_bot //= $b if $w == 0;
	$other_bot //= $b if $w == 1;
}
$co->safe_psql('postgres', "SELECT bidguard_set_cooldown($_, '1 hour')") for $own_bot, $other_bot;
is($workers[0]->safe_psql('postgres', "SELECT reason FROM bidguard_try_trade($own_bot)"), 'executed',
	'on a worker: a call for a key it holds runs there');
is($workers[0]->safe_psql('postgres', "SELECT reason FROM bidguard_try_trade($other_bot)"), 'executed',
	'on a worker: a call for a key of the other worker is delegated to it');
is($workers[1]->safe_psql('postgres', "SELECT count(*) FROM bidguard_events WHERE bot_id = $other_bot AND kind = 'trade_executed'"), '1',
	'... and ran there: the event is on the other worker');
like(error_of($workers[0], "WITH x AS (SELECT * FROM bidguard_try_trade($other_bot)) SELECT * FROM x"), $refused,
	'on a worker: a call for the other worker\'s key that cannot be delegated is refused');
is($workers[0]->safe_psql('postgres', "WITH x AS (SELECT * FROM bidguard_try_trade($own_bot)) SELECT reason FROM x"), 'cooldown',
	'on a worker: a call that cannot be delegated runs when the worker holds the key');
is($co->safe_psql('postgres', "SELECT reason FROM bidguard_try_trade($own_bot)"), 'cooldown',
	'... and the coordinator sees the trade made on the worker: one lock space per key');

# The fence: a row written into a shard (by name) that does not hold it.
my $shards = $workers[0]->safe_psql('postgres', q{
	SELECT string_agg(s.shardid::text, ' ' ORDER BY s.shardid) FROM pg_dist_shard AS s JOIN pg_dist_placement AS p USING (shardid)
	 WHERE s.logicalrelid = 'bidguard_trades'::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group)});
my ($s1, $s2) = split / /, $shards;
my $holder = $workers[0]->safe_psql('postgres', "SELECT get_shard_id_for_distribution_column('bidguard_trades', ${own_bot}::bigint)");
my $wrong = $holder == $s1 ? $s2 : $s1;
like(error_of($workers[0], "INSERT INTO bidguard_trades_$wrong (trade_id, bot_id, created_at) VALUES (1, $own_bot, now())"),
	qr/ERROR:  23514: bot $own_bot belongs to shard $holder of bidguard_trades, not in "bidguard_trades_$wrong"\n(?s:.*)CONSTRAINT NAME:  bidguard_citus_fence/,
	'a trade written into the wrong shard: 23514 bidguard_citus_fence');
my $bshard = $workers[0]->safe_psql('postgres', q{
	SELECT min(s.shardid) FROM pg_dist_shard AS s JOIN pg_dist_placement AS p USING (shardid)
	 WHERE s.logicalrelid = 'bidguard_bids'::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group)});
my $foreign_posting = $co->safe_psql('postgres', qq{
	SELECT 'f-' || min(i) FROM generate_series(1, 500) AS i
	 WHERE get_shard_id_for_distribution_column('bidguard_bids', 'f-' || i) <> $bshard});
like(error_of($workers[0], "INSERT INTO bidguard_bids_$bshard (bid_id, marketplace_id, posting_id) VALUES (1, 'f', '$foreign_posting')"),
	qr/ERROR:  23514: posting "$foreign_posting" belongs to shard \d+ of bidguard_bids, not in "bidguard_bids_$bshard"/,
	'a bid written into the wrong shard: 23514');
# Plain SQL through the coordinator is routed to the shard, and guarded there.
like(error_of($co, "INSERT INTO bidguard_trades (bot_id, created_at) VALUES ($own_bot, now())"),
	qr/ERROR:  23P01: trade of bot $own_bot is inside its cooldown/, 'a plain INSERT through the coordinator: judged on the worker (23P01)');
like(error_of($co, "INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('route', 'r-3')"),
	qr/ERROR:  23505: duplicate key value violates unique constraint "bidguard_bids_one_active_\d+"/,
	'a second active bid by plain INSERT: 23505 on the shard');

# ---------------------------------------------------------------- transactions
$co->safe_psql('postgres', q{SELECT bidguard_set_cooldown(300, '1 hour')});
$co->safe_psql('postgres', q{SELECT bidguard_set_cooldown(301, '1 hour')});
like($co->safe_psql('postgres', q{
	BEGIN;
	SELECT trade_id FROM bidguard_try_trade(300);
	ROLLBACK;}), qr/^\d+$/, 'BEGIN; try_trade; ROLLBACK through the coordinator: the call admitted a trade');
is($co->safe_psql('postgres', 'SELECT count(*) FROM bidguard_trades WHERE bot_id = 300'), '0',
	'... the rollback took it back');
is($co->safe_psql('postgres', 'SELECT reason FROM bidguard_try_trade(300)'), 'executed', '... and gave the cooldown back');
is($co->safe_psql('postgres', q{
	BEGIN;
	SELECT reason FROM bidguard_try_trade(301);
	SELECT reason FROM bidguard_try_trade(301);
	SELECT created FROM bidguard_create_bid('tx', 'a');
	SELECT created FROM bidguard_create_bid('tx', 'b');
	SELECT created FROM bidguard_create_bid('tx', 'c');
	COMMIT;}), "executed\ncooldown\nt\nt\nt", 'one transaction over keys of several shards: each guarded, all committed');

# ---------------------------------------------------------------- the checks can fail
# Rows made behind the triggers' back (session_replication_role = replica):
# a trade inside the cooldown and without its event, and a bid in a shard
# that does not hold its posting.
$workers[0]->safe_psql('postgres', qq{
	SET session_replication_role = replica;
	INSERT INTO bidguard_trades_$holder (trade_id, bot_id, created_at) VALUES (77, $own_bot, now());
	INSERT INTO bidguard_bids_$bshard (bid_id, marketplace_id, posting_id) VALUES (77, 'f', '$foreign_posting');
});
my %found;
for (split /\n/, $co->safe_psql('postgres', 'SELECT check_name, sum(violations) FROM bidguard_citus_invariants() GROUP BY 1'))
{
	my ($c, $v) = split /\|/;
	$found{$c} = $v;
}
is_deeply([ map { $found{$_} } qw(cooldown_violations trades_without_event bids_on_wrong_shard bids_without_event) ],
	[ 1, 1, 1, 1 ], 'bidguard_citus_invariants() finds planted violations');
$workers[0]->safe_psql('postgres', qq{
	SET session_replication_role = replica;
	DELETE FROM bidguard_trades_$holder WHERE trade_id = 77;
	DELETE FROM bidguard_bids_$bshard WHERE bid_id = 77;
});
invariants('after the planted rows are gone');

# ---------------------------------------------------------------- the race
# one call per bot: a call per row of a query is refused (above)
$co->safe_psql('postgres', "SELECT bidguard_set_cooldown($_, '40 ms')") for 1001 .. 1020;
my $race_bots = workers_of('bidguard_trades', 'bigint', 1001 .. 1020);
my $race_postings = workers_of('bidguard_bids', 'text', map { "p-$_" } 1 .. 60);
for my $i (0, 1)
{
	my @bots = grep { $race_bots->{$_} == $i } 1001 .. 1020;
	my @others = grep { $race_bots->{$_} != $i } 1001 .. 1020;
	my @postings = grep { $race_postings->{"p-$_"} == $i } 1 .. 60;
	my @other_postings = grep { $race_postings->{"p-$_"} != $i } 1 .. 60;
	$workers[$i]->safe_psql('postgres', 'CREATE TABLE local_bots (bot_id bigint); CREATE TABLE other_bots (bot_id bigint);'
		. ' CREATE TABLE local_postings (posting_id text); CREATE TABLE other_postings (posting_id text);'
		. ' CREATE TABLE refusals (kind text);'
		. ' INSERT INTO local_bots VALUES (' . join('), (', @bots) . ');'
		. ' INSERT INTO other_bots VALUES (' . join('), (', @others) . ');'
		. " INSERT INTO local_postings VALUES ('p-" . join("'), ('p-", @postings) . "');"
		. " INSERT INTO other_postings VALUES ('p-" . join("'), ('p-", @other_postings) . "');");
	$workers[$i]->safe_psql('postgres', q{
		SET citus.enable_ddl_propagation = off;    -- local helpers, not Citus's
		-- a plain INSERT of a trade, through Citus's routing; 23P01 is an answer
		CREATE FUNCTION plain_trade() RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
		    INSERT INTO bidguard_trades (bot_id, created_at)
		    SELECT bot_id, now() FROM local_bots ORDER BY random() LIMIT 1;
		    RETURN 'inserted';
		EXCEPTION WHEN exclusion_violation THEN RETURN 'cooldown';
		END $$;
		-- a key of the other worker, tried here: refused
		CREATE FUNCTION foreign_call() RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
		    BEGIN
		        PERFORM bidguard_try_trade((SELECT bot_id FROM other_bots ORDER BY random() LIMIT 1));
		        INSERT INTO refusals VALUES ('trade accepted');
		    EXCEPTION WHEN feature_not_supported THEN INSERT INTO refusals VALUES ('trade');
		    END;
		    BEGIN
		        PERFORM bidguard_create_bid('race', (SELECT posting_id FROM other_postings ORDER BY random() LIMIT 1));
		        INSERT INTO refusals VALUES ('bid accepted');
		    EXCEPTION WHEN feature_not_supported THEN INSERT INTO refusals VALUES ('bid');
		    END;
		    RETURN 'refused';
		END $$;
	});
}

my $seconds = 8;
my @runs;
push @runs, start_pgbench($co, 'coordinator', "-c 16 -j 4 -T $seconds", {
	'bid@5' => "\\set p random(1, 60)\nSELECT * FROM bidguard_create_bid('race', 'p-:p', '{\"via\": \"coordinator\"}');\n",
	'withdraw@1' => "\\set p random(1, 60)\nSELECT * FROM bidguard_withdraw_posting('race', 'p-:p', 'race');\n",
	'trade_fill@4' => "\\set b random(1001, 1020)\nBEGIN;\nSELECT trade_id AS t, executed AS ok FROM bidguard_try_trade(:b) \\gset\n\\if :ok\nSELECT * FROM bidguard_citus_fill_trade(:b, :t);\n\\endif\nCOMMIT;\n",
	'trade_fail@1' => "\\set b random(1001, 1020)\nBEGIN;\nSELECT trade_id AS t, executed AS ok FROM bidguard_try_trade(:b) \\gset\n\\if :ok\nSELECT * FROM bidguard_citus_fail_trade(:b, :t, 'exchange said no');\n\\endif\nCOMMIT;\n",
	'trade_open@1' => "\\set b random(1001, 1020)\nSELECT * FROM bidguard_try_trade(:b, '{\"left\": \"open\"}');\n",
	'trade_rollback@1' => "\\set b random(1001, 1020)\nBEGIN;\nSELECT * FROM bidguard_try_trade(:b, '{\"rolled\": \"back\"}');\nROLLBACK;\n",
});
for my $i (0, 1)
{
	push @runs, start_pgbench($workers[$i], "worker$i", "-c 4 -j 2 -T $seconds", {
		'bid@3' => "SELECT * FROM bidguard_create_bid('race', (SELECT posting_id FROM local_postings ORDER BY random() LIMIT 1), '{\"via\": \"direct\"}');\n",
		'plain_bid@2' => "INSERT INTO bidguard_bids (marketplace_id, posting_id) SELECT 'race', posting_id FROM local_postings ORDER BY random() LIMIT 1 ON CONFLICT DO NOTHING;\n",
		'trade@3' => "SELECT * FROM bidguard_try_trade((SELECT bot_id FROM local_bots ORDER BY random() LIMIT 1));\n",
		'plain_trade@2' => "SELECT plain_trade();\n",
		'foreign@1' => "SELECT foreign_call();\n",
	});
}
my @results = map { finish_pgbench($_) } @runs;
for my $r (@results)
{
	is($r->{status}, 0, "race: pgbench exited 0 ($r->{processed} transactions)") or diag $r->{stderr};
	is($r->{failed}, 0, 'race: no failed transaction');
}
cmp_ok($results[0]{processed}, '>', 500, "race: the coordinator served $results[0]{processed} transactions");
note "race: tps coordinator $results[0]{tps}, worker0 $results[1]{tps}, worker1 $results[2]{tps}";
my $counts = invariants('race');
note "race: invariants:\n$counts";
for my $i (0, 1)
{
	is($workers[$i]->safe_psql('postgres', q{SELECT count(*) FROM refusals WHERE kind LIKE '%accepted'}), '0',
		"race, worker $i: no call for the other worker's keys ran here");
	cmp_ok($workers[$i]->safe_psql('postgres', 'SELECT count(*) FROM refusals'), '>', 20, "race, worker $i: and they were tried");
}
is($co->safe_psql('postgres', q{SELECT count(*) FROM bidguard_trades WHERE trade_data ? 'rolled'}), '0',
	'race: no trade of a rolled-back transaction is left');
my $race = $co->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'filled') || ' filled, ' || count(*) FILTER (WHERE status = 'failed') || ' failed, '
	       || count(*) FILTER (WHERE status = 'open') || ' open'
	  FROM bidguard_trades WHERE bot_id BETWEEN 1001 AND 1020});
note "race: trades of 20 bots: $race";
like($race, qr/^[1-9]\d* filled, [1-9]\d* failed, [1-9]\d* open$/, 'race: trades were filled, failed and left open');
# The keys each worker holds, read from its own shards.
for my $w (@workers)
{
	$w->safe_psql('postgres', q{
		SET citus.enable_ddl_propagation = off;
		CREATE FUNCTION local_keys(tbl text, col text) RETURNS SETOF text LANGUAGE plpgsql AS $$
		DECLARE s bigint;
		BEGIN
		    FOR s IN SELECT d.shardid FROM pg_dist_shard AS d JOIN pg_dist_placement AS p USING (shardid)
		              WHERE d.logicalrelid = tbl::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group)
		    LOOP
		        RETURN QUERY EXECUTE format('SELECT DISTINCT %I::text FROM %I', col, tbl || '_' || s);
		    END LOOP;
		END $$;});
}
check_no_key_on_two_nodes('race: bots', \@workers, q{SELECT local_keys('bidguard_bots', 'bot_id')});
check_no_key_on_two_nodes('race: postings', \@workers, q{SELECT DISTINCT local_keys('bidguard_bids', 'posting_id')});
check_no_key_on_two_nodes('race: trade ids', \@workers, q{SELECT local_keys('bidguard_trades', 'trade_id')});
check_no_key_on_two_nodes('race: bid ids', \@workers, q{SELECT local_keys('bidguard_bids', 'bid_id')});

# ---------------------------------------------------------------- a worker stopped mid-run
$co->safe_psql('postgres', "SELECT bidguard_set_cooldown($_, '0')") for 1 .. 20;
my $dsn = 'host=' . $co->host . ' port=' . $co->port . ' dbname=postgres';
my $records = run_acked_calls($dsn, [ '--threads', '4', '--seconds', '7', '--bots', '20', '--postings', '200' ], sub {
	sleep 2;
	$workers[1]->stop('immediate');
	sleep 2;
	$workers[1]->start;
});
my @acked = grep { $_->{ack} && $_->{ack} ne 'refused' } @$records;
my @errors = grep { $_->{error} } @$records;
note 'stopped worker: ' . scalar(@acked) . ' acknowledged calls, ' . scalar(@errors) . ' errors';
cmp_ok(scalar(@acked), '>', 100, 'stopped worker: calls were acknowledged');
cmp_ok(scalar(@errors), '>', 0, 'stopped worker: calls for its keys failed');
my @trade_ids = map { $_->{id} } grep { $_->{ack} eq 'trade' } @acked;
my @bid_ids = map { $_->{id} } grep { $_->{ack} eq 'bid' } @acked;
my %uniq_trades = map { ($_ => 1) } @trade_ids;
my %uniq_bids = map { ($_ => 1) } @bid_ids;
is($co->safe_psql('postgres', 'SELECT count(*) FROM bidguard_trades WHERE trade_id = ANY (\'{' . join(',', keys %uniq_trades) . '}\')'),
	scalar(keys %uniq_trades), 'stopped worker: every acknowledged trade is there (' . scalar(keys %uniq_trades) . ')');
is($co->safe_psql('postgres', 'SELECT count(DISTINCT bid_id) FROM bidguard_bids WHERE bid_id = ANY (\'{' . join(',', keys %uniq_bids) . '}\')'),
	scalar(keys %uniq_bids), 'stopped worker: every acknowledged bid is there (' . scalar(keys %uniq_bids) . ')');
my $bot_worker = workers_of('bidguard_trades', 'bigint', 1 .. 20);
my $posting_worker = workers_of('bidguard_bids', 'text', map { "p-$_" } 1 .. 200);
my %error_workers;
for my $e (@errors)
{
	my $w = $e->{key} =~ /^bot (\d+)$/ ? $bot_worker->{$1}
	  : $e->{key} =~ /^posting (.+)$/ ? $posting_worker->{$1} : 'connect';
	$error_workers{$w}++;
}
is_deeply([ sort keys %error_workers ], ['1'], 'stopped worker: only calls for its keys failed')
  or diag explain \%error_workers;
my %messages;
$messages{ $_->{error} . ' ' . ($_->{message} =~ s/\d+/N/gr) }++ for @errors;
note "stopped worker: errors:\n" . join("\n", map { "  $messages{$_} x $_" } sort keys %messages);
my @unclear = grep { !/connect|connection|terminat|shut|recovery/i } keys %messages;
is(scalar(@unclear), 0, 'stopped worker: every error says the worker was unreachable or went away')
  or diag join("\n", @unclear);
my ($first_error, $last_error) = (1e9, 0);
for my $e (@errors)
{
	$first_error = $e->{t} if $e->{t} < $first_error;
	$last_error = $e->{t} if $e->{t} > $last_error;
}
my @other_while_down = grep {
	$_->{t} > $first_error && $_->{t} < $last_error
	  && ($_->{ack} eq 'trade' ? $bot_worker->{ $_->{bot} } : $posting_worker->{ $_->{p} }) == 0
} @acked;
cmp_ok(scalar(@other_while_down), '>', 10,
	sprintf('stopped worker: the other worker went on answering meanwhile (%d calls in %.1f s)',
		scalar(@other_while_down), $last_error - $first_error));
my @late = grep { $_->{t} > 5.5 && $_->{ack} eq 'trade' && $bot_worker->{ $_->{bot} } == 1 } @acked;
ok(scalar(@late), 'stopped worker: after its restart the coordinator reached it again');
invariants('after the stop');

# ---------------------------------------------------------------- a worker added, shards moved
# doc/scaleout.md's steps: the new node's id range, Citus's rebalancer, then the
# events of the rows that moved follow them.
my $worker3 = citus_node('worker3');
$co->safe_psql('postgres', "SELECT citus_add_node('" . $worker3->host . "', " . $worker3->port . ')');
like($worker3->safe_psql('postgres', 'SELECT bidguard_citus_prepare_node()'),
	qr/bidguard_bids_bid_id_seq in \[844424930131968, 1125899906842623\]/, 'added worker: prepared, with its own id range');
$co->safe_psql('postgres', q{SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')});
my $on_new = $co->safe_psql('postgres', 'SELECT count(*) FROM pg_dist_shard_placement WHERE nodeport = ' . $worker3->port);
cmp_ok($on_new, '>', 0, "added worker: the rebalancer moved $on_new shards to it");
my $strays = $co->safe_psql('postgres', 'SELECT sum(violations) FROM bidguard_citus_invariants() WHERE check_name LIKE \'%without_event\'');
cmp_ok($strays, '>', 0, "added worker: before the events follow, $strays moved rows have theirs elsewhere");
my $moved = $co->safe_psql('postgres', 'SELECT bidguard_citus_move_events()');
cmp_ok($moved, '>=', $strays, "added worker: bidguard_citus_move_events() moves their $moved events (every event of each moved row)");
is($co->safe_psql('postgres', 'SELECT bidguard_citus_move_events()'), '0', '... and a second call finds none');
invariants('after the rebalance');
my $moved_bot = (grep { $_ } map {
	my $b = $_;
	$co->safe_psql('postgres', qq{SELECT n.nodeport FROM pg_dist_placement AS p JOIN pg_dist_node AS n USING (groupid)
		 WHERE p.shardid = get_shard_id_for_distribution_column('bidguard_trades', ${b}::bigint)}) == $worker3->port ? $b : undef
} 1001 .. 1020)[0];
SKIP:
{
	skip 'no race bot moved to the new worker', 2 unless defined $moved_bot;
	is($co->safe_psql('postgres', "SELECT reason FROM bidguard_try_trade($moved_bot, '{}', '1 s')") =~ /^(executed|cooldown)$/ ? 'ok' : 'no',
		'ok', "added worker: bot $moved_bot, moved there, is guarded there");
	is($worker3->safe_psql('postgres', "SELECT count(*) > 0 FROM bidguard_events WHERE bot_id = $moved_bot"), 't',
		'... with its events');
}
$worker3->stop;

$co->stop;
$_->stop for @workers;
done_testing();
