
# Copyright (c) bidguard contributors

# test/t/006_trade_short_cooldown.pl
#	  A short cooldown under a hammering: 6 bots with a cooldown of 20 ms,
#	  32 pgbench clients calling bidguard_try_trade (wait '0', and a bounded
#	  wait of '30ms') for 6 s on the real server clock (no
#	  bidguard.test_clock), so that thousands of trades are admitted.
#
#	  A bot can admit at most floor(window / cooldown) + 1 trades in the
#	  window pgbench ran in (server clock before and after); with 5-6
#	  clients per bot polling without pause, a trade should be admitted
#	  soon after each cooldown ends: more than half of that ceiling per bot,
#	  never more than the ceiling.  The smallest gap between consecutive
#	  admissions (created_at) of a bot is never below the cooldown, and
#	  each 'executed' answer is a trade (autocommit: nothing rolls back).
#	  The outcome mix is counted in sequences (cheap, not transactional).
#	  Then check_trade_invariants (BidguardTest.pm).  The figures (admissions,
#	  smallest gaps, outcomes) are in the notes.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $BOTS = 6;
my $COOLDOWN_MS = 20;
my $CLIENTS = 32;
my $SECONDS = 6;

my $node = bidguard_node('short_cooldown');

is($node->safe_psql('postgres', 'SHOW bidguard.test_clock'),
	'', 'the real server clock is in use (bidguard.test_clock is empty)');

$node->safe_psql(
	'postgres', qq{
CREATE SEQUENCE outcome_executed;
CREATE SEQUENCE outcome_cooldown;
CREATE SEQUENCE outcome_busy;
SELECT bidguard_set_cooldown(b, '$COOLDOWN_MS ms') FROM generate_series(1, $BOTS) AS b;
});

# Each call counts its answer in a sequence.
my $try = sub {
	my ($wait) = @_;
	return qq{\\set bot random(1, $BOTS)
SELECT CASE r.reason WHEN 'executed' THEN nextval('outcome_executed')
                     WHEN 'cooldown' THEN nextval('outcome_cooldown')
                     WHEN 'busy' THEN nextval('outcome_busy') END
  FROM bidguard_try_trade(:bot, '{"wait": "$wait"}', '$wait') AS r;
};
};

my $start = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my $r = run_pgbench(
	$node, 'short-cooldown',
	"-c $CLIENTS -j 2 -T $SECONDS",
	{ 'try_nowait@3' => $try->('0'), 'try_wait@1' => $try->('30ms') });
my $end = $node->safe_psql('postgres', 'SELECT clock_timestamp()');

is($r->{status}, 0, 'pgbench exits with status 0');
unlike($r->{stderr}, qr/aborted|ERROR/, 'no client aborted, no error');
is($r->{failed}, 0, 'no failed transaction');
ok(defined $r->{processed} && $r->{processed} > 0,
	'calls were made (' . ($r->{processed} // 'none') . ')');

my %seq;
$seq{$_} = $node->safe_psql('postgres',
	"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outcome_$_")
  for qw(executed cooldown busy);
note "outcomes: executed=$seq{executed} cooldown=$seq{cooldown} busy=$seq{busy} "
  . '(of ' . ($r->{processed} // '?') . ' calls)';
# pgbench may stop counting a call still in flight when -T is up.
my $answers = $seq{executed} + $seq{cooldown} + $seq{busy};
ok( defined $r->{processed}
	  && $answers >= $r->{processed}
	  && $answers <= $r->{processed} + $CLIENTS,
	"every call answered executed, cooldown or busy ($answers answers)");
cmp_ok($seq{cooldown}, '>', 0, 'calls were refused for the cooldown');
cmp_ok($seq{busy}, '>', 0, 'calls found the bot busy');

my $trades = $node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_trades');
is($trades, $seq{executed},
	"every 'executed' answer is a trade, and every trade was answered 'executed'");
cmp_ok($trades, '>=', 1000, "thousands of trades were admitted ($trades)");
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM bidguard_trades
	 WHERE created_at NOT BETWEEN '$start' AND '$end'}),
	'0',
	'every admission time is the server clock during the run');

# Per bot: admissions against the ceiling of the window, and the gaps.
my $window_ms = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM '$end'::timestamptz - '$start'::timestamptz) * 1000");
my $ceiling = int($window_ms / $COOLDOWN_MS) + 1;
note sprintf('window %.1f ms, cooldown %d ms: at most %d admissions per bot, %d for %d bots',
	$window_ms, $COOLDOWN_MS, $ceiling, $ceiling * $BOTS, $BOTS);
my @rows = split(
	/\n/,
	$node->safe_psql(
		'postgres', q{
	SELECT g.bot_id, count(*),
	       round((extract(epoch FROM min(g.gap)) * 1000)::numeric, 3),
	       round((extract(epoch FROM avg(g.gap)) * 1000)::numeric, 3),
	       round((extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap)) * 1000)::numeric, 3),
	       round((extract(epoch FROM max(g.gap)) * 1000)::numeric, 3)
	  FROM (SELECT bot_id,
	               created_at - lag(created_at) OVER (PARTITION BY bot_id ORDER BY created_at, trade_id) AS gap
	          FROM bidguard_trades WHERE status <> 'failed') AS g
	 GROUP BY g.bot_id ORDER BY g.bot_id}));
is(scalar @rows, $BOTS, "every bot traded");
my ($min_gap, $min_bot);
for my $row (@rows)
{
	my ($bot, $n, $min, $avg, $median, $max) = split /\|/, $row;
	note sprintf(
		'bot %d: %d admissions (%.0f%% of the ceiling %d); gap min %s ms, mean %s ms, median %s ms, max %s ms',
		$bot, $n, 100 * $n / $ceiling, $ceiling, $min, $avg, $median, $max);
	cmp_ok($n, '<=', $ceiling, "bot $bot: no more admissions than the window allows");
	cmp_ok($n, '>', $ceiling / 2,
		"bot $bot: more than half of the possible admissions were made");
	cmp_ok($min, '>=', $COOLDOWN_MS,
		"bot $bot: consecutive admissions at least the cooldown apart (min gap $min ms)");
	($min_gap, $min_bot) = ($min, $bot) if !defined $min_gap || $min < $min_gap;
}
note "smallest gap between consecutive admissions of a bot: $min_gap ms (bot $min_bot; cooldown $COOLDOWN_MS ms); $trades admissions in all";

my $f = check_trade_invariants($node, 'short-cooldown');
note "check_trade_invariants: $f->{trades} trades, smallest gap $f->{min_gap_ms} ms (bot $f->{min_gap_bot})";

$node->stop;
done_testing();
