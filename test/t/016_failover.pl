
# Copyright (c) bidguard contributors

# test/t/016_failover.pl
#	  Faults SPEC §9 names that 003_crash does not:
#	  - kill -9 of a backend holding a bot's lock and a posting's lock, each
#	    with an uncommitted row: after the postmaster's crash restart the
#	    locks are free within a second and neither row, nor its event, exists;
#	  - two-phase commit: a prepared transaction that admitted a trade keeps
#	    the bot's lock, across a server restart, until COMMIT PREPARED (the
#	    cooldown then counts from it) or ROLLBACK PREPARED (the cooldown is
#	    given back);
#	  - a hot standby: every writing function fails with 25006 and says why,
#	    every reading one works;
#	  - promotion of a synchronous standby while pgbench races bids and
#	    trades on the primary and a client records every acknowledged bid and
#	    trade: the primary is stopped in immediate mode, the standby promoted,
#	    and every acknowledged row is on the new primary, the invariants hold
#	    there, and the cooldowns are still enforced.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use BidguardTest;

my $primary = bidguard_node(
	'primary',
	init => { allows_streaming => 1 },
	conf => qq{
max_prepared_transactions = 10
restart_after_crash = on
synchronous_commit = on
});
$primary->safe_psql(
	'postgres', q{
SELECT bidguard_set_cooldown(b, '200 ms') FROM generate_series(1, 4) AS b;
SELECT bidguard_set_cooldown(99, '1 hour');
});

#
# kill -9 of a backend holding a bot's lock and a posting's lock.
#
{
	my $victim = $primary->background_psql('postgres');
	my $pid = $victim->query_safe('SELECT pg_backend_pid()');
	$victim->query_safe(q{
BEGIN;
SELECT reason FROM bidguard_try_trade(1, '{"half": true}');
SELECT created FROM bidguard_create_bid('kill', 'half');
});
	is( $primary->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM pg_locks WHERE pid = $pid AND locktype = 'advisory'
		   AND objsubid IN (25089, 25090) AND granted}),
		'2', 'the victim holds a bot lock and a posting lock');
	my $log_offset = -s $primary->logfile;
	my $t0 = time;
	kill 'KILL', $pid;
	my $freed;
	for (1 .. 600)
	{
		my ($ret, $out) = $primary->psql('postgres',
			q{SELECT reason FROM bidguard_try_trade(1, '{}', '0')});
		if ($ret == 0 && $out eq 'executed')
		{
			$freed = time - $t0;
			last;
		}
		usleep(10_000);
	}
	$victim->{run}->kill_kill;
	ok(defined $freed, 'after the kill, the bot can be traded again');
	note sprintf('the locks were free %.3f s after the kill (crash restart included)', $freed // -1);
	cmp_ok($freed // 99, '<=', 1.0, 'within a second of the kill');
	ok($primary->log_contains(qr/was terminated by signal 9/, $log_offset),
		'the postmaster saw the backend die of SIGKILL and restarted');
	is( $primary->safe_psql(
			'postgres', q{
		SELECT (SELECT count(*) FROM bidguard_trades WHERE trade_data ? 'half')
		     + (SELECT count(*) FROM bidguard_bids WHERE posting_id = 'half')
		     + (SELECT count(*) FROM bidguard_events WHERE posting_id = 'half')}),
		'0', 'no half row: neither the trade nor the bid nor an event survived');
	is($primary->safe_psql('postgres', q{SELECT created FROM bidguard_create_bid('kill', 'half')}),
		't', 'the posting takes a new bid');
	is(bidguard_locks_held($primary), '0', 'no bidguard lock is left');
}

#
# Two-phase commit.
#
for my $end ('COMMIT PREPARED', 'ROLLBACK PREPARED')
{
	my $gid = $end =~ /^COMMIT/ ? 'bg_commit' : 'bg_rollback';
	$primary->safe_psql(
		'postgres', qq{
BEGIN;
SELECT reason FROM bidguard_try_trade(99, '{"gid": "$gid"}');
PREPARE TRANSACTION '$gid';
});
	is($primary->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(99, '{}', '0')}),
		'busy', "$gid: the prepared transaction holds the bot's lock");
	$primary->restart;
	is($primary->safe_psql('postgres', "SELECT count(*) FROM pg_prepared_xacts WHERE gid = '$gid'"),
		'1', "$gid: the prepared transaction survives a restart");
	is($primary->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(99, '{}', '0')}),
		'busy', "$gid: ... and still holds the bot's lock");
	my ($ret, $out, $err) = $primary->psql('postgres',
		q{SET lock_timeout = '200ms'; INSERT INTO bidguard_trades (bot_id) VALUES (99)});
	like($err, qr/lock timeout|canceling statement due to lock timeout/,
		"$gid: a plain INSERT for the bot waits for it (55P03 at lock_timeout)");
	$primary->safe_psql('postgres', "$end '$gid'");
	is( $primary->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(99, '{}', '0')}),
		$end =~ /^COMMIT/ ? 'cooldown' : 'executed',
		$end =~ /^COMMIT/
		? "$gid: after COMMIT PREPARED the cooldown counts from the prepared trade"
		: "$gid: after ROLLBACK PREPARED the cooldown is given back");
	$primary->safe_psql('postgres', q{DELETE FROM bidguard_trades WHERE bot_id = 99});
}

#
# A synchronous hot standby.
#
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "shared_preload_libraries = 'bidguard'\n");
$standby->start;
$primary->wait_for_catchup($standby);
# synchronous from now on: a commit is acknowledged once the standby has it
$primary->safe_psql('postgres', q{ALTER SYSTEM SET synchronous_standby_names = 'standby'});
$primary->reload;
$primary->poll_query_until('postgres',
	q{SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'standby'})
  or die 'the standby did not become synchronous';
is($primary->safe_psql('postgres', q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'}),
	'sync', 'the standby is synchronous');

my $bid = $primary->safe_psql('postgres', q{SELECT bid_id FROM bidguard_create_bid('hs', 'p1')});
my $trade = $primary->safe_psql('postgres', q{SELECT trade_id FROM bidguard_try_trade(2)});
$primary->safe_psql('postgres', q{CREATE TABLE hs_rows (k int, at timestamptz)});
$primary->wait_for_catchup($standby);
for my $sql (
	q{SELECT bidguard_create_bid('hs', 'p2')},
	"SELECT bidguard_set_bid_status($bid, 'submitted')",
	"SELECT bidguard_withdraw_bid($bid)",
	q{SELECT bidguard_withdraw_posting('hs', 'p1')},
	q{SELECT bidguard_set_cooldown(7, '1 s')},
	q{SELECT bidguard_try_trade(2)},
	"SELECT bidguard_fill_trade($trade)",
	"SELECT bidguard_fail_trade($trade)",
	q{SELECT bidguard_guard_cooldown('hs_rows', 'k', 'at', '1 s')},
	q{SELECT bidguard_unguard_cooldown('hs_rows')},
	q{SELECT bidguard_guard_unique_active('hs_rows', '{k}', 'at', '{x}')})
{
	my ($ret, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($err, qr/ERROR:  25006: .*(read-only|standby|recovery)/i,
		"standby: $sql fails with 25006 and says why");
}
for my $check (
	[ q{SELECT bidguard_lock('hs', 'k')}, 't' ],
	[ q{SELECT bidguard_lock_key('hs', 'k') = bidguard_lock_key('hs', 'k')}, 't' ],
	[ q{SELECT count(*) >= 0 FROM bidguard_locks}, 't' ],
	[ q{SELECT bids_created >= 0 FROM bidguard_stats}, 't' ],
	[ q{SELECT count(*) FROM bidguard_duplicate_active_bids}, '0' ],
	[ q{SELECT count(*) FROM bidguard_cooldown_violations}, '0' ],
	[ q{SELECT count(*) FROM bidguard_guards}, '0' ],
	[ q{SELECT bidguard_uuid_v7() IS NOT NULL}, 't' ],
	[ "SELECT status FROM bidguard_bids WHERE bid_id = $bid", 'pending' ])
{
	is($standby->safe_psql('postgres', $check->[0]), $check->[1], "standby: $check->[0] works");
}

#
# Promotion of the synchronous standby under load.
#
my $load_script = $primary->basedir . '/load.pgbench';
append_to_file(
	$load_script, q{
\set p random(1, 20)
\set bot random(1, 4)
SELECT bid_id FROM bidguard_create_bid('fo', 'p' || :p);
SELECT withdrawn FROM bidguard_withdraw_posting('fo', 'p' || :p);
BEGIN;
SELECT trade_id AS tid FROM bidguard_try_trade(:bot, '{"via": "load"}', '0') \gset
SELECT (bidguard_fill_trade(t)).changed FROM (SELECT :tid::bigint AS t) AS s WHERE t IS NOT NULL;
COMMIT;
});
my ($load_out, $load_err) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-h', $primary->host, '-p', $primary->port, '-c', '8', '-j', '2',
	  '-T', '30', '-f', $load_script, 'postgres' ],
	'<', \undef, '>', \$load_out, '2>', \$load_err);
# The acknowledging client: a bid and a trade per round, each in its own
# committed transaction; only what came back before the crash counts.
my (@acked_bids, @acked_trades);
my $ack = $primary->background_psql('postgres', on_error_stop => 0);
my $t_end = time + 3;
my $n = 0;
while (time < $t_end)
{
	$n++;
	my $b = $ack->query(qq{SELECT bid_id FROM bidguard_create_bid('ack', 'p$n')});
	push @acked_bids, $b if $b =~ /^\d+$/;
	my $t = $ack->query(qq{SELECT trade_id FROM bidguard_try_trade(3 + $n % 2, '{"ack": $n}', '0') WHERE executed});
	push @acked_trades, $t if $t =~ /^\d+$/;
	usleep(20_000);
}
note scalar(@acked_bids) . ' bids and ' . scalar(@acked_trades) . ' trades acknowledged before the crash';
$primary->stop('immediate');
$ack->{run}->kill_kill;
$load->kill_kill;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'the standby did not leave recovery';
my $new = $standby;

cmp_ok(scalar(@acked_bids), '>', 0, 'bids were acknowledged before the crash');
cmp_ok(scalar(@acked_trades), '>', 0, 'trades were acknowledged before the crash');
my $bids_list = join(',', @acked_bids) || 'NULL';
my $trades_list = join(',', @acked_trades) || 'NULL';
is($new->safe_psql('postgres', "SELECT count(*) FROM bidguard_bids WHERE bid_id IN ($bids_list)"),
	scalar(@acked_bids), 'every acknowledged bid is on the new primary');
is($new->safe_psql('postgres', "SELECT count(*) FROM bidguard_trades WHERE trade_id IN ($trades_list)"),
	scalar(@acked_trades), 'every acknowledged trade is on the new primary');
is( $new->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM bidguard_events
	 WHERE event_id IN (SELECT atomic_event_id FROM bidguard_bids WHERE bid_id IN ($bids_list)
	                    UNION ALL SELECT atomic_event_id FROM bidguard_trades WHERE trade_id IN ($trades_list))}),
	scalar(@acked_bids) + scalar(@acked_trades), '... each with its creation or admission event');
check_bid_invariants($new, 'new primary');
check_trade_invariants($new, 'new primary');

# The cooldowns are enforced on the new primary.
$new->safe_psql('postgres', q{SELECT bidguard_set_cooldown(50, '1 hour')});
is($new->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(50)}), 'executed',
	'new primary: a trade is admitted');
is($new->safe_psql('postgres', q{SELECT reason FROM bidguard_try_trade(50)}), 'cooldown',
	'new primary: the next one is inside the cooldown');
my ($ret, $out, $err) = $new->psql('postgres', q{INSERT INTO bidguard_trades (bot_id) VALUES (50)});
like($err, qr/inside its cooldown/, 'new primary: a plain INSERT inside the cooldown is refused');
($ret, $out, $err) = $new->psql('postgres',
	q{INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('hs', 'p1')});
like($err, qr/bidguard_bids_one_active/, 'new primary: a second active bid is refused');
is(bidguard_locks_held($new), '0', 'new primary: no bidguard lock is left');

$new->stop;
done_testing();
