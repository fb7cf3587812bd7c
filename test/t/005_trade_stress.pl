
# Copyright (c) bidguard contributors

# test/t/005_trade_stress.pl
#	  32 pgbench clients race over 8 bots (cooldowns 50-200 ms, so that a
#	  run admits hundreds of trades) with a mix of every way to make a trade:
#	    try0        bidguard_try_trade(bot, data, '0'): never waits
#	    trywait     bidguard_try_trade(bot, data, '20ms'): a bounded wait
#	    trynull     bidguard_try_trade(bot, data, NULL): waits as lock_timeout
#	                allows
#	    insert      plain INSERT INTO bidguard_trades in a DO block that
#	                catches exclusion_violation: the trigger path, whose
#	                23P01 inside the cooldown would otherwise abort the client
#	                (PG15's pgbench has no --continue-on-error)
#	    backdated   BEGIN; <sleep 0-250 ms>; INSERT with created_at = now(),
#	                the transaction's start: a trade back-dated past the
#	                trades admitted (and filled) meanwhile, which it must
#	                answer to by their admission times; DO block as above
#	    flow_same   BEGIN; try_trade; <the exchange: sleep 0-40 ms>; fill
#	                (filled_at default, or given as clock_timestamp() under
#	                the bot's lock) or fail; COMMIT
#	    flow_later  BEGIN; try_trade; COMMIT; <sleep 0-300 ms>; fill (default
#	                filled_at) or fail in a transaction of its own: fills land
#	                after later trades' admissions
#	    rollback    BEGIN; try_trade; <sleep 0-10 ms>; ROLLBACK: the cooldown
#	                is given back, nothing of the trade stays
#	  Each script records its outcome (executed, cooldown, busy) in
#	  stress_outcomes in the same transaction as the trade, so committed
#	  'executed' outcomes and trades must match one for one; the rollback
#	  path counts its admissions in a sequence (which survives ROLLBACK).
#
#	  Three runs: READ COMMITTED (no failure allowed), REPEATABLE READ and
#	  SERIALIZABLE with --max-tries=10 (40001 retried; a few transactions
#	  may fail after 10 tries).  After every run check_trade_invariants
#	  (BidguardTest.pm): no counting trade admitted within the cooldown of an
#	  earlier one (effective time as of the admission, SPEC §9), consecutive
#	  admissions (created_at) at least the cooldown apart, every trade with
#	  its trade_executed event and a consistent trail, the extension's own
#	  audit view bidguard_cooldown_violations empty, no lock left.  At the
#	  end, every path and outcome was exercised.
#
#	  A fill recorded after a later trade's admission (the flow_later path)
#	  may legitimately put two trades' effective times, as they are today,
#	  closer than the cooldown: SPEC §9 guarantees the cooldown at
#	  admission.  Those pairs are counted in a note only.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $CLIENTS = 32;
my @COOLDOWN_MS = (50, 60, 75, 100, 120, 150, 175, 200);
my $BOTS = scalar @COOLDOWN_MS;

my $node = bidguard_node('trade_stress');

$node->safe_psql(
	'postgres', qq{
-- One row per call, in the caller's transaction: rolled back with it.
CREATE UNLOGGED TABLE stress_outcomes (
	run text NOT NULL, path text NOT NULL, reason text NOT NULL);
-- Admissions of the rollback path, which leave nothing else behind.
CREATE SEQUENCE stress_rollback_executed;
SELECT bidguard_set_cooldown(b, make_interval(secs => (ARRAY[@{[ join(', ', @COOLDOWN_MS) ]}])[b] / 1000.0))
  FROM generate_series(1, $BOTS) AS b;
});

# The scripts of a run; trade_data says which path and run made the trade.
sub scripts
{
	my ($run) = @_;
	my $bot = "\\set bot random(1, $BOTS)\n";
	my $data = sub { qq{'{"via": "$_[0]", "run": "$run"}'} };
	# try_trade whose outcome is recorded; \gset tid (0 unless executed)
	my $try = sub {
		my ($path, $wait) = @_;
		return qq{WITH r AS (SELECT * FROM bidguard_try_trade(:bot, @{[ $data->($path) ]}, $wait)),
     o AS (INSERT INTO stress_outcomes (run, path, reason) SELECT '$run', '$path', reason FROM r)
SELECT coalesce(trade_id, 0) AS tid FROM r \\gset
};
	};
	my $record = sub {
		my ($path, $wait) = @_;
		return qq{WITH r AS (SELECT * FROM bidguard_try_trade(:bot, @{[ $data->($path) ]}, $wait))
INSERT INTO stress_outcomes (run, path, reason) SELECT '$run', '$path', reason FROM r;
};
	};
	return {
		"${run}_try0\@6" => $bot . $record->('try0', q{'0'}),
		"${run}_trywait\@3" => $bot . $record->('trywait', q{'20ms'}),
		"${run}_trynull\@1" => $bot . $record->('trynull', 'NULL'),
		"${run}_insert\@3" => $bot . qq{DO \$\$
BEGIN
	INSERT INTO bidguard_trades (bot_id, trade_data) VALUES (:bot, @{[ $data->('insert') ]});
	INSERT INTO stress_outcomes (run, path, reason) VALUES ('$run', 'insert', 'executed');
EXCEPTION WHEN exclusion_violation THEN
	INSERT INTO stress_outcomes (run, path, reason) VALUES ('$run', 'insert', 'cooldown');
END
\$\$;
},
		"${run}_backdated\@2" => $bot . qq{\\set s random(0, 250)
BEGIN;
SELECT 1;
\\sleep :s ms
DO \$\$
BEGIN
	INSERT INTO bidguard_trades (bot_id, created_at, trade_data)
	VALUES (:bot, now(), @{[ $data->('backdated') ]});
	INSERT INTO stress_outcomes (run, path, reason) VALUES ('$run', 'backdated', 'executed');
EXCEPTION WHEN exclusion_violation THEN
	INSERT INTO stress_outcomes (run, path, reason) VALUES ('$run', 'backdated', 'cooldown');
END
\$\$;
COMMIT;
},
		"${run}_flow_same\@2" => $bot . qq{\\set o random(1, 3)
\\set s random(0, 40)
BEGIN;
@{[ $try->('flow_same', q{'10ms'}) ]}\\if :tid > 0
\\sleep :s ms
\\if :o = 1
SELECT * FROM bidguard_fill_trade(:tid);
\\elif :o = 2
SELECT * FROM bidguard_fill_trade(:tid, clock_timestamp());
\\else
SELECT * FROM bidguard_fail_trade(:tid, 'exchange rejected');
\\endif
\\endif
COMMIT;
},
		"${run}_flow_later\@2" => $bot . qq{\\set o random(1, 3)
\\set s random(0, 300)
BEGIN;
@{[ $try->('flow_later', q{'10ms'}) ]}COMMIT;
\\if :tid > 0
\\sleep :s ms
\\if :o < 3
SELECT * FROM bidguard_fill_trade(:tid);
\\else
SELECT * FROM bidguard_fail_trade(:tid, 'exchange rejected later');
\\endif
\\endif
},
		"${run}_rollback\@1" => $bot . qq{\\set s random(0, 10)
BEGIN;
SELECT CASE WHEN executed THEN nextval('stress_rollback_executed') END
  FROM bidguard_try_trade(:bot, @{[ $data->('rollback') ]}, '0');
\\sleep :s ms
ROLLBACK;
},
	};
}

my @runs = (
	{ name => 'rc', isolation => 'read committed', seconds => 8, strict => 1 },
	{
		name => 'rr',
		isolation => 'repeatable read',
		seconds => 4,
		retries => 10
	},
	{
		name => 'ser',
		isolation => 'serializable',
		seconds => 4,
		retries => 10
	},);

my @PATHS = qw(try0 trywait trynull insert backdated flow_same flow_later);
my $rollback_sql = q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                       FROM stress_rollback_executed};
my $trades_before = 0;
for my $run (@runs)
{
	my $name = $run->{name};
	my $opts = "-c $CLIENTS -j 2 -T $run->{seconds}";
	$opts .= " --max-tries=$run->{retries}" if $run->{retries};
	my $pgoptions = '-c default_transaction_isolation='
	  . ($run->{isolation} =~ s/ /\\ /gr);
	{
		local $ENV{PGOPTIONS} = $pgoptions;
		is($node->safe_psql('postgres', 'SHOW transaction_isolation'),
			$run->{isolation}, "$name: pgbench's sessions run at $run->{isolation}");
	}
	my $rollbacks_before = $node->safe_psql('postgres', $rollback_sql);
	my $r = run_pgbench($node, $name, $opts, scripts($name),
		pgoptions => $pgoptions);

	is($r->{status}, 0, "$name: pgbench exits with status 0");
	unlike($r->{stderr}, qr/aborted|ERROR/, "$name: no client aborted, no error");
	ok(defined $r->{processed} && $r->{processed} > 0,
		"$name: transactions were processed (" . ($r->{processed} // 'none') . ')');
	if ($run->{strict})
	{
		is($r->{failed}, 0, "$name: no failed transaction");
	}
	else
	{
		note "$name: $r->{retried} transactions retried, "
		  . ($r->{retries} // 0)
		  . " retries, $r->{failed} failed after $run->{retries} tries";
		# A few transactions may meet 40001 ten times in a row on a bot
		# 32 clients fight over: at most 1 in 100.
		ok( defined $r->{processed} && $r->{failed} * 100 <= $r->{processed},
			"$name: at most 1% of the transactions failed after $run->{retries} tries ($r->{failed})"
		);
	}

	my $f = check_trade_invariants($node, $name);

	# Committed 'executed' outcomes and trades match one for one, per path.
	is( $node->safe_psql(
			'postgres', qq{
		SELECT string_agg(p.path || ': ' || coalesce(o.n, 0) || ' executed, '
		                  || coalesce(t.n, 0) || ' trades', '; ' ORDER BY p.path COLLATE "C")
		  FROM unnest('{@{[ join(',', @PATHS) ]}}'::text[]) AS p(path)
		  LEFT JOIN (SELECT path, count(*) AS n FROM stress_outcomes
		              WHERE run = '$name' AND reason = 'executed' GROUP BY path) AS o
		    ON o.path = p.path
		  LEFT JOIN (SELECT trade_data->>'via' AS path, count(*) AS n FROM bidguard_trades
		              WHERE trade_data->>'run' = '$name' GROUP BY 1) AS t
		    ON t.path = p.path
		 WHERE coalesce(o.n, 0) <> coalesce(t.n, 0)}),
		'',
		"$name: every committed 'executed' outcome is a trade and every trade was reported executed"
	);

	my $trades = $f->{trades};
	cmp_ok($trades, '>', $trades_before, "$name: new trades were admitted");
	note "$name: trades: $trades ("
	  . ($trades - $trades_before)
	  . " new), $f->{counting} counting; outcomes: "
	  . $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(path || ' ' || reasons, '; ' ORDER BY path COLLATE "C")
		  FROM (SELECT path, string_agg(reason || '=' || n, ' ' ORDER BY reason) AS reasons
		          FROM (SELECT path, reason, count(*) AS n FROM stress_outcomes
		                 WHERE run = '$name' GROUP BY 1, 2) AS c
		         GROUP BY path) AS s})
	  . "; rollback admissions: "
	  . ($node->safe_psql('postgres', $rollback_sql) - $rollbacks_before)
	  . "; statuses: "
	  . $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(status || '=' || n, ' ' ORDER BY status)
		  FROM (SELECT status, count(*) AS n FROM bidguard_trades
		         WHERE trade_data->>'run' = '$name' GROUP BY 1) AS s});
	note "$name: min gap between consecutive admissions per bot (ms, bot:gap/cooldown): $f->{min_gaps}";
	note "$name: consecutive effective times (today) closer than the cooldown, from late fills: $f->{late_fill_pairs}";
	$trades_before = $trades;
}

# Every path and every outcome was exercised.
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(path || ':' || reasons, ' ' ORDER BY path COLLATE "C")
	  FROM (SELECT path, string_agg(DISTINCT reason, ',' ORDER BY reason) AS reasons
	          FROM stress_outcomes GROUP BY path) AS s}),
	'backdated:cooldown,executed flow_later:busy,cooldown,executed flow_same:busy,cooldown,executed '
	  . 'insert:cooldown,executed try0:busy,cooldown,executed '
	  . 'trynull:cooldown,executed trywait:busy,cooldown,executed',
	'every path admitted trades and was refused for the cooldown; the bounded waits also answered busy'
);
cmp_ok($node->safe_psql('postgres', $rollback_sql),
	'>', 0, 'the rollback path admitted trades');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(v, ',' ORDER BY v COLLATE "C") FROM (
		SELECT DISTINCT trade_data->>'via' AS v FROM bidguard_trades) AS s}),
	'backdated,flow_later,flow_same,insert,try0,trynull,trywait',
	'trades were made by every path, none by a rolled-back admission');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(kind || '=' || (n > 0), ' ' ORDER BY kind)
	  FROM (SELECT kind, count(*) AS n FROM bidguard_events
	         WHERE trade_id IS NOT NULL GROUP BY kind) AS s}),
	'trade_executed=true trade_failed=true trade_filled=true',
	'the trail has trade_executed, trade_filled and trade_failed events, and no other trade event'
);
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(status || '=' || (n > 0), ' ' ORDER BY status)
	  FROM (SELECT status, count(*) AS n FROM bidguard_trades GROUP BY status) AS s}),
	'failed=true filled=true open=true',
	'trades ended open, filled and failed');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FILTER (WHERE status = 'filled' AND trade_data->>'via' = 'flow_same') > 0
	   AND count(*) FILTER (WHERE status = 'filled' AND trade_data->>'via' = 'flow_later') > 0
	   AND count(*) FILTER (WHERE status = 'failed' AND trade_data->>'via' = 'flow_same') > 0
	   AND count(*) FILTER (WHERE status = 'failed' AND trade_data->>'via' = 'flow_later') > 0
	  FROM bidguard_trades}),
	't',
	'both flows filled and failed trades');

# ROLLBACK after an admission gives the cooldown back, at once.
$node->safe_psql('postgres',
	q{SELECT bidguard_set_cooldown(100, '1 hour')});
is( $node->safe_psql(
		'postgres', q{
	BEGIN;
	SELECT reason FROM bidguard_try_trade(100, '{"via": "rollback check"}');
	ROLLBACK;
	SELECT reason FROM bidguard_try_trade(100, '{"via": "after rollback"}');
	SELECT reason FROM bidguard_try_trade(100, '{"via": "within cooldown"}');
	SELECT string_agg(trade_data->>'via', ',') FROM bidguard_trades WHERE bot_id = 100}),
	"executed\nexecuted\ncooldown\nafter rollback",
	'an admission rolled back gives the cooldown back');
check_trade_invariants($node, 'final');

$node->stop;
done_testing();
