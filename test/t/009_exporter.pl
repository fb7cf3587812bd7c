
# Copyright (c) bidguard contributors

# test/t/009_exporter.pl
#	  The monitoring kit works with the real exporter: Debian's
#	  prometheus-postgres-exporter, given monitoring/queries.yaml, connected
#	  as a role with only the privileges monitoring/README.md grants (and a
#	  search_path without bidguard's schema), exports every bidguard metric
#	  with the right type and the value the views give: the counters of
#	  bidguard_stats, the lock-wait histogram (its le buckets, cumulative, up
#	  to +Inf = _count), the locks held and awaited by kind while a session
#	  holds them and another waits, and the audit views' row counts (one
#	  cooldown violation, made by a late fill).  promtool, if installed,
#	  checks alerts.yml and the scrape's metric names.  Every metric alerts.yml
#	  uses is exported.  The exporter listens on 127.0.0.1 only and is
#	  killed at the end, whatever happens.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(basename);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);
use BidguardTest;

my $exporter_bin = $ENV{PG_EXPORTER_BIN} // '/usr/bin/prometheus-postgres-exporter';
my $srcdir = $ENV{BIDGUARD_SRCDIR} // "$FindBin::RealBin/../..";
my $queries = "$srcdir/monitoring/queries.yaml";
my $alerts = "$srcdir/monitoring/alerts.yml";

if (!-x $exporter_bin)
{
	my $why = "$exporter_bin is not installed "
	  . '(apt-get install prometheus-postgres-exporter; scripts/deps.sh does it as root)';
	# Where the package can be installed (root, CI), a missing exporter is
	# a failure, not a reason to skip.
	plan skip_all => $why if $> != 0 && !$ENV{CI};
	fail($why);
	done_testing();
	exit;
}
ok(-r $queries, "$queries is readable");

# Whatever happens below, the exporter does not outlive the test.
my $exporter;
END
{
	local $?;
	$exporter->kill_kill(grace => 2) if $exporter;
}

my $node = bidguard_node('exporter');

# The role of monitoring/README.md, with a search_path that does not have
# bidguard's schema: the queries must name it themselves.
$node->safe_psql('postgres', q{
	CREATE ROLE bidguard_exporter LOGIN;
	GRANT pg_monitor TO bidguard_exporter;
	GRANT SELECT ON bidguard_stats, bidguard_lock_wait_histogram, bidguard_locks,
	                bidguard_duplicate_active_bids, bidguard_cooldown_violations
	   TO bidguard_exporter;
	ALTER ROLE bidguard_exporter SET statement_timeout = '5s';
	ALTER ROLE bidguard_exporter SET search_path = pg_catalog;
});

# ------------------------------------------------------------------ activity
# Some of everything the counters count.
$node->safe_psql('postgres', q{
	SELECT bidguard_stats_reset();
	SELECT created FROM bidguard_create_bid('ex', 'p1');    -- created
	SELECT created FROM bidguard_create_bid('ex', 'p1');    -- deduplicated
	SELECT created FROM bidguard_create_bid('ex', 'p2');    -- created
	SELECT withdrawn FROM bidguard_withdraw_posting('ex', 'p2');
	SELECT bidguard_set_cooldown(1, '1 hour');
	SELECT bidguard_set_cooldown(2, '0');
	SELECT reason FROM bidguard_try_trade(1);               -- executed
	SELECT reason FROM bidguard_try_trade(1);               -- cooldown
});
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT * FROM bidguard_set_bid_status(
		(SELECT bid_id FROM bidguard_bids WHERE posting_id = 'p1'), 'won')});
like($stderr, qr/cannot move from status "pending" to "won"/,
	'pending -> won is rejected (transitions_rejected)');

# A cooldown violation for bidguard_cooldown_violations: bot 3 trades at
# 00:00 and 00:20 (cooldown 10 s), then the first trade's fill is reported
# late, for 00:15, before the second admission.
$node->safe_psql('postgres', q{
	SELECT bidguard_set_cooldown(3, '10 s');
	SET bidguard.test_clock = '2020-01-01 00:00:00+00';
	SELECT reason FROM bidguard_try_trade(3);
	SET bidguard.test_clock = '2020-01-01 00:00:20+00';
	SELECT reason FROM bidguard_try_trade(3);
	RESET bidguard.test_clock;
	SELECT changed FROM bidguard_fill_trade(
		(SELECT min(trade_id) FROM bidguard_trades WHERE bot_id = 3),
		'2020-01-01 00:00:15+00');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_cooldown_violations'),
	'1', 'the late fill shows in bidguard_cooldown_violations');

# Locks: a holder with a user lock and bot 2's lock, a busy trade and a wait
# that times out against it, and a waiter that stays waiting.
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN;
	SELECT bidguard_lock('exporter', 'held');
	SELECT reason FROM bidguard_try_trade(2);
	SELECT reason FROM bidguard_acquire_slot('exporter', 1)});
is($node->safe_psql('postgres', q{SELECT reason FROM bidguard_acquire_slot('exporter', 1, '20 ms')}),
	'busy', 'a 20 ms wait for the held slot ends busy');
is($node->safe_psql('postgres', q{
	SELECT string_agg(allowed::text, ',' ORDER BY g) FROM generate_series(1, 3) AS g,
	       LATERAL bidguard_rate_limit('exporter', 2, '1 hour', g - g + 1)}),
	'true,true,false', 'a rate limit of 2: two admitted, one refused');
is($node->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(2, '{}', '0')}),
	'busy', 'a trade of bot 2 is busy while the holder trades');
is($node->safe_psql('postgres', q{SELECT bidguard_lock('exporter', 'held', '50 ms')}),
	'f', 'a 50 ms wait for the held lock times out');
my $waiter = $node->background_psql('postgres');
$waiter->query_until(qr/waiting/,
	"\\echo waiting\nSELECT bidguard_lock('exporter', 'held', '60 s');\n");
$node->poll_query_until('postgres',
	'SELECT count(*) = 1 FROM bidguard_locks WHERE NOT granted AND wait_start IS NOT NULL')
  or die 'the waiter does not wait';

# ------------------------------------------------------------------ exporter
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $url = "http://127.0.0.1:$port/metrics";
my $exporter_log = $PostgreSQL::Test::Utils::log_path . '/'
  . basename($0, '.pl') . '_prometheus-postgres-exporter.log';
my $dsn = sprintf('host=%s port=%d user=bidguard_exporter dbname=postgres sslmode=disable',
	$node->host, $node->port);
my @cmd = ($exporter_bin,
	"--web.listen-address=127.0.0.1:$port",
	"--extend.query-path=$queries",
	'--disable-default-metrics', '--disable-settings-metrics',
	'--no-collector.database', '--no-collector.bgwriter');
note "DATA_SOURCE_NAME='$dsn' @cmd";
{
	local $ENV{DATA_SOURCE_NAME} = $dsn;
	$exporter = IPC::Run::start(\@cmd, '<', \undef, '>', $exporter_log, '2>&1');
}

sub exporter_log_tail
{
	return '' unless -e $exporter_log;
	my @lines = split /\n/, slurp_file($exporter_log);
	splice(@lines, 0, @lines - 40) if @lines > 40;
	return join("\n", @lines);
}

# One scrape: { text, types => {family => type}, samples => [[name, {labels}, value]] }.
sub scrape
{
	my $http = HTTP::Tiny->new(timeout => 5);
	my $deadline = time + 30;
	my $res;
	while (1)
	{
		$res = $http->get($url);
		last if $res->{success} && $res->{content} =~ /^bidguard_bids_created_total\b/m;
		if (time > $deadline)
		{
			diag "exporter log:\n" . exporter_log_tail();
			die "no bidguard metrics from $url within 30 s: $res->{status} $res->{reason}";
		}
		sleep 0.2;
	}
	my %s = (text => $res->{content}, types => {}, samples => []);
	for my $line (split /\n/, $res->{content})
	{
		if ($line =~ /^# TYPE (\S+) (\S+)$/)
		{
			$s{types}{$1} = $2;
		}
		elsif ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/)
		{
			my ($name, $labels, $value) = ($1, $2 // '', $3);
			my %l;
			$l{$1} = $2 while $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
			push @{ $s{samples} }, [ $name, \%l, $value ];
		}
	}
	return \%s;
}

# The value of the one sample NAME whose labels include LABELS.
sub value_of
{
	my ($s, $name, %labels) = @_;
	my @found = grep {
		my $l = $_->[1];
		$_->[0] eq $name && !grep { ($l->{$_} // "\0") ne $labels{$_} } keys %labels
	} @{ $s->{samples} };
	return undef unless @found == 1;
	return $found[0][2];
}

sub near
{
	my ($got, $want, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	ok(defined $got && abs($got - $want) <= 1e-9 * (abs($want) > 1 ? abs($want) : 1),
		"$name: " . ($got // 'missing') . " = $want");
}

my $t0 = time;
my $s1 = scrape();
note sprintf('exporter up and scraped in %.1f s', time - $t0);

# While the holder holds and the waiter waits.
my %locks_sql = map { my ($kind, $held, $awaited) = split /\|/; ($kind => [ $held, $awaited ]) }
  split /\n/,
  $node->safe_psql('postgres', q{
	SELECT k, count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)
	  FROM unnest('{bid,bot,user}'::text[]) AS k
	  LEFT JOIN bidguard_locks AS l ON l.kind = k
	 GROUP BY k});
is_deeply(\%locks_sql, { bid => [ 0, 0 ], bot => [ 1, 0 ], user => [ 1, 1 ] },
	'bidguard_locks: the holder holds a bot and a user lock, the waiter awaits the user lock');
for my $kind (qw(bid bot user))
{
	is(value_of($s1, 'bidguard_locks_held', kind => $kind), $locks_sql{$kind}[0],
		"bidguard_locks_held{kind=\"$kind\"}");
	is(value_of($s1, 'bidguard_locks_awaited', kind => $kind), $locks_sql{$kind}[1],
		"bidguard_locks_awaited{kind=\"$kind\"}");
}
cmp_ok(value_of($s1, 'bidguard_locks_oldest_wait_seconds', kind => 'user') // -1,
	'>', 0, 'bidguard_locks_oldest_wait_seconds{kind="user"} > 0');
is(value_of($s1, 'bidguard_locks_oldest_wait_seconds', kind => 'bot'), '0',
	'bidguard_locks_oldest_wait_seconds{kind="bot"} = 0: nobody waits');
cmp_ok(value_of($s1, 'bidguard_locks_oldest_holder_xact_seconds', kind => $_) // -1,
	'>', 0, "bidguard_locks_oldest_holder_xact_seconds{kind=\"$_\"} > 0 (pg_monitor sees the holder)")
  for qw(bot user);
is(value_of($s1, 'bidguard_locks_oldest_holder_xact_seconds', kind => 'bid'), '0',
	'bidguard_locks_oldest_holder_xact_seconds{kind="bid"} = 0: none held');

# The holder commits: the waiter gets the lock (a second, successful wait).
$holder->query_safe('COMMIT');
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM bidguard_locks')
  or die 'the waiter did not finish';
$holder->quit;
$waiter->quit;

# ------------------------------------------------------------------ values
my $s = scrape();
note "scraped:\n" . join("\n", grep { /^bidguard_/ } split /\n/, $s->{text});

is(value_of($s, 'pg_up'), '1', 'pg_up 1');
is(value_of($s, 'pg_exporter_last_scrape_error'), '0',
	'pg_exporter_last_scrape_error 0: every query ran with the role\'s privileges');
is(value_of($s, 'pg_exporter_user_queries_load_error'), '0', 'queries.yaml loaded');
unlike(slurp_file($exporter_log), qr/Error running query|level=error/,
	'the exporter logged no query error');

# Every bidguard family, with its type; no untyped leftovers.
my @counters = qw(bids_created bids_deduplicated bids_withdrawn transitions_rejected
  trades_executed trades_rejected_cooldown trades_rejected_busy
  lock_acquired lock_waited lock_timeouts
  rate_allowed rate_limited slots_acquired slots_busy slot_waits);
my %want_types = (
	(map { ("bidguard_${_}_total" => 'counter') } @counters),
	(map { ("bidguard_$_" => 'gauge') } qw(lock_wait_max_seconds
	  stats_reset_timestamp_seconds locks_held locks_awaited locks_oldest_wait_seconds
	  locks_oldest_holder_xact_seconds audit_duplicate_active_bids
	  audit_cooldown_violations)),
	bidguard_lock_wait_seconds => 'histogram');
my %got_types = map { ($_ => $s->{types}{$_}) } grep { /^bidguard_/ } keys %{ $s->{types} };
is_deeply(\%got_types, \%want_types, 'the bidguard metric families and their types');
my @untyped = grep { !/^bidguard_lock_wait_seconds_(bucket|sum|count)$/ && !$want_types{$_} }
  map { $_->[0] } grep { $_->[0] =~ /^bidguard_/ } @{ $s->{samples} };
is("@untyped", '', 'no bidguard sample outside those families');

# The counters, against the view (nothing runs meanwhile).
my $cols = join(', ', @counters);
my %stats;
@stats{@counters, qw(total_s max_s reset_epoch)} = split /\|/,
  $node->safe_psql('postgres', qq{
	SELECT $cols, lock_wait_total_ms / 1000, lock_wait_max_ms / 1000,
	       date_part('epoch', stats_reset)
	  FROM bidguard_stats});
note 'bidguard_stats: ' . join(' ', map { "$_=$stats{$_}" } @counters);
is(value_of($s, "bidguard_${_}_total"), $stats{$_}, "bidguard_${_}_total = $stats{$_}")
  for @counters;
is($stats{bids_created}, $node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_bids'),
	'bids_created = the bids in the table');
cmp_ok($stats{$_}, '>', 0, "$_ > 0: the test made some") for @counters;
is($stats{lock_waited}, 3, 'three waits: a lock\'s and a slot\'s timed out, one got the lock');
is($stats{lock_timeouts}, 2, 'two waits timed out');
near(value_of($s, 'bidguard_lock_wait_max_seconds'), $stats{max_s},
	'bidguard_lock_wait_max_seconds');
near(value_of($s, 'bidguard_stats_reset_timestamp_seconds'), $stats{reset_epoch},
	'bidguard_stats_reset_timestamp_seconds');

# The histogram: the view's bounds in seconds plus +Inf, the view's counts,
# cumulative, +Inf = _count = lock_waited, _sum = lock_wait_total_ms / 1000.
my @view = map { [ split /\|/ ] } split /\n/, $node->safe_psql('postgres',
	'SELECT le_ms / 1000, count FROM bidguard_lock_wait_histogram ORDER BY le_ms');
is($view[-1][0], 'Infinity', 'the view\'s last bound is Infinity');
my @buckets = map { [ $_->[1]{le}, $_->[2] ] }
  grep { $_->[0] eq 'bidguard_lock_wait_seconds_bucket' } @{ $s->{samples} };
is(scalar(@buckets), scalar(@view), scalar(@view) . ' buckets, one per row of the view');
my %by_le = map { ($_->[0] => $_->[1]) } @buckets;
ok(exists $by_le{'+Inf'}, 'a bucket le="+Inf"');
for my $row (@view)
{
	my ($le_s, $count) = @$row;
	my $label = $le_s eq 'Infinity' ? '+Inf'
	  : (grep { $_ ne '+Inf' && abs($_ - $le_s) <= 1e-12 * $le_s } keys %by_le)[0];
	ok(defined $label, "a bucket for le_ms/1000 = $le_s")
	  && is($by_le{$label}, $count, "bidguard_lock_wait_seconds_bucket{le=\"$label\"} = $count");
}
my @ordered = map { $by_le{$_} }
  sort { ($a eq '+Inf') <=> ($b eq '+Inf') || ($a eq '+Inf' ? 0 : $a <=> $b) } keys %by_le;
ok(!grep({ $ordered[$_] < $ordered[ $_ - 1 ] } 1 .. $#ordered),
	'the buckets are cumulative: ' . join(' ', @ordered));
is($by_le{'+Inf'}, $stats{lock_waited}, 'le="+Inf" = lock_waited');
is(value_of($s, 'bidguard_lock_wait_seconds_count'), $stats{lock_waited},
	'bidguard_lock_wait_seconds_count = lock_waited');
near(value_of($s, 'bidguard_lock_wait_seconds_sum'), $stats{total_s},
	'bidguard_lock_wait_seconds_sum = lock_wait_total_ms / 1000');
cmp_ok($stats{total_s}, '>=', 0.05, 'the waits took at least the 50 ms timeout');

# The audit views.
is(value_of($s, 'bidguard_audit_cooldown_violations'), '1',
	'bidguard_audit_cooldown_violations = 1');
is(value_of($s, 'bidguard_audit_duplicate_active_bids'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM bidguard_duplicate_active_bids'),
	'bidguard_audit_duplicate_active_bids = the view\'s rows (0)');

# Every bidguard_* or pg_* metric alerts.yml's expressions use is exported.
my (%used, $in_expr);
for my $line (split /\n/, slurp_file($alerts))
{
	if ($line =~ /^(\s*)expr:(.*)$/)
	{
		my $expr = $2;
		$in_expr = length($1);
		$used{$1} = 1 while $expr =~ /\b((?:bidguard|pg)_[a-z0-9_]+)\b/g;
	}
	elsif (defined $in_expr && $line =~ /^(\s*)\S/ && length($1) > $in_expr)
	{
		$used{$1} = 1 while $line =~ /\b((?:bidguard|pg)_[a-z0-9_]+)\b/g;
	}
	else
	{
		undef $in_expr;
	}
}
my %exported = map { ($_->[0] => 1) } @{ $s->{samples} };
cmp_ok(scalar(keys %used), '>=', 10, 'alerts.yml uses ' . scalar(keys %used) . ' metrics');
is(join(' ', grep { !$exported{$_} } sort keys %used), '',
	'every metric alerts.yml uses is exported');

# promtool, where installed (Debian package prometheus; not a test dependency).
SKIP:
{
	my $promtool = (grep { -x "$_/promtool" } split /:/, $ENV{PATH} // '')[0];
	skip 'promtool is not installed (package prometheus)', 3 unless $promtool;
	my $out = '';
	ok(IPC::Run::run([ "$promtool/promtool", 'check', 'rules', $alerts ],
			'<', \undef, '>&', \$out),
		'promtool check rules monitoring/alerts.yml')
	  or diag $out;
	$out = '';
	ok(IPC::Run::run([ "$promtool/promtool", 'check', 'metrics' ],
			'<', \$s->{text}, '>&', \$out),
		'promtool check metrics: the scrape follows the naming conventions')
	  or diag $out;
	$out = '';
	ok(IPC::Run::run([ "$promtool/promtool", 'test', 'rules', "$srcdir/monitoring/alerts.test.yml" ],
			'<', \undef, '>&', \$out),
		'promtool test rules monitoring/alerts.test.yml: the alerts fire when they should')
	  or diag $out;
}

# ------------------------------------------------------------------ stop
$exporter->kill_kill(grace => 2);
ok(!$exporter->pumpable, 'the exporter is stopped');
ok(!HTTP::Tiny->new(timeout => 2)->get($url)->{success}, 'nothing answers on its port any more');
undef $exporter;

$node->stop;
done_testing();
