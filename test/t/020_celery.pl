
# Copyright (c) bidguard contributors

# test/t/020_celery.pl
#	  The Celery example (examples/celery) for real: Debian's redis-server as
#	  the broker and result backend on a private port, three Celery workers
#	  (prefork, 2 processes each) running tasks.trade, and send_trades.py
#	  sending the incident's duplicates: every 50 ms, 3 identical trade tasks
#	  for each of 4 bots, for 2 seconds.  Cooldown 1 s per bot; the
#	  exchange's rate limit 3 orders per second, so tasks are also refused by
#	  the limit and retried after retry_after, their admission rolled back.
#	  Then, in SQL: no trade inside its bot's cooldown (check_trade_invariants),
#	  no window of 1 s with more than 3 orders, every trade made by a task
#	  that reported it, no task that traded twice, no lock left.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Basename;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $python = $ENV{PYTHON} // '/usr/bin/python3';
plan skip_all => 'redis-server is not installed (package redis-server)'
  unless -x '/usr/bin/redis-server';
plan skip_all => 'Celery is not installed (package python3-celery)'
  unless system($python, '-c', 'import celery, redis, psycopg') == 0;

my $srcdir = "$FindBin::RealBin/../..";
my $example = "$srcdir/examples/celery";
my $node = bidguard_node('celery');
$node->safe_psql(
	'postgres', q{
SELECT bidguard_set_cooldown(b, '1 second') FROM generate_series(1, 4) AS b;
CREATE TABLE unit_log (key text, at timestamptz, cost int);
CREATE FUNCTION copy_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.unit_log VALUES (NEW.key, NEW.at, NEW.cost); RETURN NULL; END $$;
CREATE TRIGGER copy_unit AFTER INSERT ON bidguard_rate_events
	FOR EACH ROW EXECUTE FUNCTION copy_unit();
});

# redis-server on a private port, nothing saved.
my $rport = PostgreSQL::Test::Cluster::get_free_port();
my $rlog = $PostgreSQL::Test::Utils::log_path . '/' . basename($0, '.pl') . '_redis.log';
my $redis = IPC::Run::start(
	[ '/usr/bin/redis-server', '--port', $rport, '--bind', '127.0.0.1', '--save', '',
		'--appendonly', 'no' ],
	'<', \undef, '>', $rlog, '2>&1');
my $up = 0;
for (1 .. 100)
{
	last if ($up = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$rport"));
	select(undef, undef, undef, 0.1);
}
ok($up, "redis-server listens on port $rport");

local $ENV{BIDGUARD_BROKER} = "redis://127.0.0.1:$rport/0";
local $ENV{BIDGUARD_RESULTS} = "redis://127.0.0.1:$rport/1";
local $ENV{BIDGUARD_RATE} = '3/1';
local $ENV{BIDGUARD_EXCHANGE_MS} = '20';
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
local $ENV{C_FORCE_ROOT} = '1';    # the test runs as root in CI

my @workers;
# Whatever happens to the test, leave no worker or redis-server behind.
END
{
	for my $h (grep { defined } @workers, $redis)
	{
		eval { $h->kill_kill(grace => 5) };
	}
}
for my $i (1 .. 3)
{
	my $log = $PostgreSQL::Test::Utils::log_path . '/' . basename($0, '.pl') . "_worker$i.log";
	push @workers, IPC::Run::start(
		[ $python, '-m', 'celery', '-A', 'tasks', 'worker', '--concurrency=2',
			'--loglevel=WARNING', '--without-gossip', '--without-mingle', "-n", "w$i\@%h" ],
		'<', \undef, '>', $log, '2>&1', init => sub { chdir $example or die $! });
}

my ($out, $err) = ('', '');
my $ok = IPC::Run::run(
	[ $python, 'send_trades.py', '--bots', '4', '--copies', '3', '--every-ms', '50',
		'--seconds', '2', '--timeout', '120' ],
	'<', \undef, '>', \$out, '2>', \$err, init => sub { chdir $example or die $! },
	IPC::Run::timeout(180));
ok($ok, 'send_trades.py ran every task to its end') or diag $err;
my $summary = eval { decode_json((split /\n/, $out)[-1]) } // {};
note "summary: sent $summary->{sent}, executed $summary->{executed}, cooldown $summary->{cooldown}";
cmp_ok($summary->{sent} // 0, '>', 100, 'more than 100 duplicate tasks were sent');
cmp_ok($summary->{executed} // 0, '>', 4, 'trades were executed');
cmp_ok($summary->{cooldown} // 0, '>', 0, 'duplicates were turned away by the cooldown');

# TERM is Celery's warm shutdown (the pool's processes end with it); KILL
# after 10 s if it hangs.
$_->kill_kill(grace => 10) for @workers;
@workers = ();

check_trade_invariants($node, 'celery');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM unit_log AS u
	 WHERE (SELECT sum(o.cost) FROM unit_log AS o
	         WHERE o.key = u.key AND o.at > u.at - interval '1 second' AND o.at <= u.at) > 3}),
	'0', 'no window of 1 s holds more than the 3 orders the rate limit allows');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM bidguard_trades WHERE trade_data ? 'task'}),
	$summary->{executed}, 'every committed trade is one a task reported executed');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) - count(DISTINCT trade_data->>'task') FROM bidguard_trades}),
	'0', 'no task traded twice');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(trade_id::text, ',' ORDER BY trade_id) FROM bidguard_trades}),
	join(',', sort { $a <=> $b } @{ $summary->{trade_ids} // [] }),
	'the trades are exactly those the tasks reported');
cmp_ok($node->safe_psql('postgres', q{SELECT rate_limited FROM bidguard_stats}),
	'>', 0, 'the rate limit refused orders, and those tasks were retried');
is($node->safe_psql('postgres', q{SELECT count(*) FROM unit_log}),
	$summary->{executed}, 'one unit per executed trade: refused and rolled-back ones gave theirs back');
is(bidguard_locks_held($node), '0', 'no bidguard lock left');

$redis->kill_kill(grace => 5);
undef $redis;
$node->stop;
done_testing();
