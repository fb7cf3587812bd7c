
# Copyright (c) bidguard contributors

# test/t/BidguardTest.pm
#	  What bidguard's TAP tests share: a node set up the way bidguard runs in
#	  production (preloaded), a pgbench runner that logs pgbench's report and
#	  returns its counts, and the bid and trade invariants of SPEC §9 as SQL
#	  checks.
#
#	  Loaded with "use FindBin; use lib $FindBin::RealBin;" so that it is
#	  found whatever prove's -I options are.

package BidguardTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  bidguard_node
  run_pgbench
  check_bid_invariants
  check_trade_invariants
  bidguard_locks_held
  fill_sample_data
  source_figures
  check_restored_copy
  extension_catalog
  $FINGERPRINT_SQL
  $APP_TABLE_SQL
  $APP_FINGERPRINT_SQL
  $GUARDS_SQL
  $EXTENSION_OBJECTS_SQL
  $ALLOWED_TRANSITIONS_SQL
  $BIDGUARD_LOCK_CLASSES_SQL
  $BIDGUARD_POSTING_LOCK_SQL
);

# The allowed transitions of SPEC §3, as a VALUES list.
our $ALLOWED_TRANSITIONS_SQL = q{(VALUES
	('pending', 'submitted'), ('pending', 'withdrawn'), ('pending', 'failed'),
	('pending', 'expired'), ('submitted', 'won'), ('submitted', 'lost'),
	('submitted', 'withdrawn'), ('submitted', 'expired'))};

# bidguard's locks as pg_locks shows them (doc/api.md, Locks): advisory locks whose
# objsubid is bidguard's lock class, 25089 for a posting, 25090 for a bot,
# 25091 for bidguard_lock(), 25092 for a key of a guarded table.
our $BIDGUARD_LOCK_CLASSES_SQL =
  q{locktype = 'advisory' AND objsubid IN (25089, 25090, 25091, 25092, 25093, 25094)};
our $BIDGUARD_POSTING_LOCK_SQL = q{locktype = 'advisory' AND objsubid = 25089};

# A fingerprint of every row of bidguard's four tables, in key order, and
# their counts: equal fingerprints, equal data.
our $FINGERPRINT_SQL = q{
	SELECT (SELECT count(*) FROM bidguard_bids) || ' bids '
	    || (SELECT md5(coalesce(string_agg(b::text, E'\n' ORDER BY b.bid_id), '')) FROM bidguard_bids AS b)
	    || ', ' || (SELECT count(*) FROM bidguard_events) || ' events '
	    || (SELECT md5(coalesce(string_agg(e::text, E'\n' ORDER BY e.event_id), '')) FROM bidguard_events AS e)
	    || ', ' || (SELECT count(*) FROM bidguard_bots) || ' bots '
	    || (SELECT md5(coalesce(string_agg(o::text, E'\n' ORDER BY o.bot_id), '')) FROM bidguard_bots AS o)
	    || ', ' || (SELECT count(*) FROM bidguard_trades) || ' trades '
	    || (SELECT md5(coalesce(string_agg(t::text, E'\n' ORDER BY t.trade_id), '')) FROM bidguard_trades AS t)
	    || ', ' || (SELECT count(*) FROM bidguard_rate_limits) || ' rate limits '
	    || (SELECT md5(coalesce(string_agg(l::text, E'\n' ORDER BY l.key_prefix), '')) FROM bidguard_rate_limits AS l)
	    || ', ' || (SELECT count(*) FROM bidguard_rate_events) || ' rate units '
	    || (SELECT md5(coalesce(string_agg(u::text, E'\n' ORDER BY u::text), '')) FROM bidguard_rate_events AS u)};

# A started node with bidguard preloaded and created in database "postgres".
# Parameters: init (a hash for $node->init), conf (more postgresql.conf),
# install_path (another installation's prefix, e.g. an older major).
sub bidguard_node
{
	my ($name, %params) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name,
		$params{install_path} ? (install_path => $params{install_path}) : ());
	$node->init(%{ $params{init} // {} });
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'bidguard'
max_connections = 60
log_min_messages = warning
log_error_verbosity = default
lock_timeout = '60s'
deadlock_timeout = '100ms'
} . ($params{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION bidguard');
	return $node;
}

# Run pgbench against $node; $files maps "name@weight" to script text.
# The scripts go into the node's base directory.  Returns a hash of the
# exit status, the output and the counts pgbench reported.
sub run_pgbench
{
	my ($node, $label, $opts, $files, %params) = @_;
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port,
		split(/\s+/, $opts));
	for my $key (sort keys %$files)
	{
		(my $fn = $key) =~ s/\@\d+$//;
		my $path = $node->basedir . "/$fn.pgbench";
		die "$path exists already" if -e $path;
		PostgreSQL::Test::Utils::append_to_file($path, $files->{$key});
		(my $weight = $key) =~ s/^[^@]*//;
		push @cmd, '-f', $path . $weight;
	}
	push @cmd, $params{dbname} // 'postgres';

	local $ENV{PGOPTIONS} = $params{pgoptions} if defined $params{pgoptions};
	note "$label: running: "
	  . (defined $params{pgoptions} ? "PGOPTIONS='$params{pgoptions}' " : '')
	  . join(' ', @cmd);
	my ($stdout, $stderr) = ('', '');
	my $t0 = time;
	IPC::Run::run(\@cmd, '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $status = $? >> 8;
	note "$label: pgbench exited with status $status after "
	  . (time - $t0) . " s";
	note "$label: pgbench stdout:\n$stdout";
	note "$label: pgbench stderr:\n$stderr" if $stderr ne '';

	my %r = (status => $status, stdout => $stdout, stderr => $stderr);
	$r{processed} = $1
	  if $stdout =~ /number of transactions actually processed: (\d+)/;
	$r{failed} = $1 if $stdout =~ /number of failed transactions: (\d+)/;
	$r{retried} = $1 if $stdout =~ /number of transactions retried: (\d+)/;
	$r{retries} = $1 if $stdout =~ /total number of retries: (\d+)/;
	$r{failed} //= 0;
	$r{retried} //= 0;
	return \%r;
}

# The number of bidguard locks held or awaited in the node right now.
sub bidguard_locks_held
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname // 'postgres',
		"SELECT count(*) FROM pg_locks WHERE $BIDGUARD_LOCK_CLASSES_SQL");
}

# The invariants of SPEC §9 for bids, over the whole of bidguard_bids and
# bidguard_events of $dbname (the extension in schema public).
sub check_bid_invariants
{
	my ($node, $label, %params) = @_;
	my $db = $params{dbname} // 'postgres';
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM (
			SELECT marketplace_id, posting_id FROM bidguard_bids
			 WHERE status IN ('pending', 'submitted')
			 GROUP BY marketplace_id, posting_id HAVING count(*) > 1) AS d}),
		'0',
		"$label: no posting has more than one active bid");

	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_duplicate_active_bids'),
		'0', "$label: bidguard_duplicate_active_bids is empty");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_bids AS b
		 WHERE NOT EXISTS (
			SELECT 1 FROM bidguard_events AS e
			 WHERE e.event_id = b.atomic_event_id AND e.kind = 'bid_created'
			   AND e.bid_id = b.bid_id)}),
		'0',
		"$label: every bid has its creation event (event_id = atomic_event_id)");

	is( $node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM bidguard_events WHERE kind = 'bid_created')
		     - (SELECT count(*) FROM bidguard_bids)
		     - (SELECT count(*) FROM bidguard_events WHERE kind = 'bid_deleted')}),
		'0',
		"$label: as many creation events as bids (plus deleted bids)");

	is( $node->safe_psql(
			$db, qq{
		SELECT count(*) FROM bidguard_events
		 WHERE kind <> 'bid_created' AND bid_id IS NOT NULL
		   AND old_status IS NOT NULL AND new_status IS NOT NULL
		   AND old_status <> new_status
		   AND (old_status, new_status) NOT IN $ALLOWED_TRANSITIONS_SQL}),
		'0',
		"$label: every status change event is an allowed transition");

	# Each bid's events, in the order they happened, form one chain from
	# its creation to its current status: no change was lost or made from
	# a stale status, no bid left a terminal status.
	is( $node->safe_psql(
			$db, q{
		WITH ev AS (
			SELECT e.bid_id, e.kind, e.old_status, e.new_status,
			       lag(e.new_status) OVER w AS prev_status,
			       row_number() OVER w AS n
			  FROM bidguard_events AS e
			 WHERE e.bid_id IS NOT NULL AND e.new_status IS NOT NULL
			WINDOW w AS (PARTITION BY e.bid_id
			             ORDER BY e.occurred_at, e.kind <> 'bid_created'))
		SELECT count(*) FROM ev
		 WHERE (n = 1 AND (kind <> 'bid_created' OR new_status IS NULL))
		    OR (n > 1 AND (kind = 'bid_created' OR old_status IS DISTINCT FROM prev_status))}),
		'0',
		"$label: each bid's events chain from its creation, each change from the previous status");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_bids AS b
		 WHERE b.status IS DISTINCT FROM (
			SELECT e.new_status FROM bidguard_events AS e
			 WHERE e.bid_id = b.bid_id AND e.new_status IS NOT NULL
			 ORDER BY e.occurred_at DESC, e.kind <> 'bid_created' DESC
			 LIMIT 1)}),
		'0',
		"$label: every bid's status is the new status of its latest event");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_events AS e
		 WHERE e.bid_id IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM bidguard_bids AS b WHERE b.bid_id = e.bid_id)
		   AND NOT EXISTS (SELECT 1 FROM bidguard_events AS d
		                    WHERE d.bid_id = e.bid_id AND d.kind = 'bid_deleted')}),
		'0',
		"$label: no event names a bid that does not exist");

	is(bidguard_locks_held($node, $db), '0',
		"$label: no bidguard lock is held or awaited");
	# Whatever classes bidguard uses: nothing but core's advisory locks
	# (classes 1 and 2, none taken by these tests) may be left.
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid NOT IN (1, 2)}),
		'0',
		"$label: no advisory lock of any other class is held or awaited");
	return;
}

# The invariants of SPEC §9 for trades, over the whole of bidguard_trades and
# bidguard_events of $dbname (the extension in schema public).  The cooldown
# is judged as SPEC §9 states it, at admission: a trade's admission time is
# its created_at (the server clock once the bot's lock is held), and an
# earlier counting trade's effective time as of that admission is its
# filled_at if that fill had happened by then (filled_at <= the admission),
# else its created_at.  The extension's view bidguard_cooldown_violations
# judges the same way and must be empty too (fills are recorded as they
# happen: filled_at defaults to the time of the fill).
#
# A fill recorded after a later trade's admission may bring the two trades'
# effective times (coalesce(filled_at, created_at)) closer than the cooldown
# today; such pairs of consecutive effective times are counted, not asserted.
#
# Returns a hash reference of figures for notes: trades, counting (status
# <> 'failed'), late_fill_pairs (consecutive counting trades by today's
# effective times closer than the cooldown), min_gaps ("bot:min gap
# ms/cooldown ms ..." between consecutive counting trades' created_at), and
# min_gap_bot, min_gap_ms, min_gap_cooldown_ms of the smallest gap relative
# to its bot's cooldown.
sub check_trade_invariants
{
	my ($node, $label, %params) = @_;
	my $db = $params{dbname} // 'postgres';
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	# (i) No counting trade was admitted within the cooldown of an earlier
	# counting trade's effective time as of that admission.
	my $at_admission = q{
		SELECT t.bot_id, p.trade_id AS earlier, t.trade_id AS later,
		       p.created_at AS earlier_created, p.filled_at AS earlier_filled,
		       t.created_at AS admitted_at, b.cooldown
		  FROM bidguard_trades AS t
		  JOIN bidguard_bots AS b ON b.bot_id = t.bot_id
		  JOIN bidguard_trades AS p
		    ON p.bot_id = t.bot_id AND p.status <> 'failed'
		   AND (p.created_at, p.trade_id) < (t.created_at, t.trade_id)
		 CROSS JOIN LATERAL (
			SELECT CASE WHEN p.filled_at <= t.created_at THEN p.filled_at
			            ELSE p.created_at END AS eff) AS e
		 WHERE t.status <> 'failed'
		   AND greatest(t.created_at - e.eff, e.eff - t.created_at) < b.cooldown};
	my $n = $node->safe_psql($db, "SELECT count(*) FROM ($at_admission) AS v");
	is($n, '0',
		"$label: no counting trade was admitted within its bot's cooldown of an earlier one (effective time as of the admission)");
	diag "$label: trades admitted inside the cooldown:\n"
	  . $node->safe_psql($db, "$at_admission ORDER BY 1, 3 LIMIT 10")
	  if $n ne '0';
	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_cooldown_violations'),
		'0', "$label: bidguard_cooldown_violations is empty");

	# (ii) The same on admission times alone: consecutive counting trades'
	# created_at are never closer than the cooldown.
	my $gaps = q{
		SELECT g.bot_id, g.prev_trade_id, g.trade_id, g.gap, b.cooldown
		  FROM (SELECT tr.bot_id, tr.trade_id,
		               lag(tr.trade_id) OVER w AS prev_trade_id,
		               tr.created_at - lag(tr.created_at) OVER w AS gap
		          FROM bidguard_trades AS tr
		         WHERE tr.status <> 'failed'
		        WINDOW w AS (PARTITION BY tr.bot_id ORDER BY tr.created_at, tr.trade_id)) AS g
		  JOIN bidguard_bots AS b ON b.bot_id = g.bot_id
		 WHERE g.gap IS NOT NULL};
	$n = $node->safe_psql($db,
		"SELECT count(*) FROM ($gaps) AS v WHERE v.gap < v.cooldown");
	is($n, '0',
		"$label: consecutive counting trades of a bot were admitted (created_at) at least its cooldown apart");
	diag "$label: admissions closer than the cooldown:\n"
	  . $node->safe_psql($db,
		"SELECT * FROM ($gaps) AS v WHERE v.gap < v.cooldown ORDER BY 1, 3 LIMIT 10")
	  if $n ne '0';

	# (iii) The audit trail: each trade's admission event, with its time,
	# and each trade's trail one chain ending at its status.
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_trades AS t
		 WHERE NOT EXISTS (
			SELECT 1 FROM bidguard_events AS e
			 WHERE e.event_id = t.atomic_event_id AND e.kind = 'trade_executed'
			   AND e.trade_id = t.trade_id AND e.bot_id = t.bot_id
			   AND e.occurred_at = t.created_at)}),
		'0',
		"$label: every trade has its trade_executed event (event_id = atomic_event_id, occurred_at = created_at)"
	);

	is( $node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM bidguard_events WHERE kind = 'trade_executed')
		     - (SELECT count(*) FROM bidguard_trades)
		     - (SELECT count(*) FROM bidguard_events WHERE kind = 'trade_deleted')}),
		'0',
		"$label: as many trade_executed events as trades (plus deleted trades)");

	is( $node->safe_psql(
			$db, q{
		WITH ev AS (
			SELECT e.trade_id, e.kind, e.old_status, e.new_status,
			       lag(e.new_status) OVER w AS prev_status,
			       row_number() OVER w AS n
			  FROM bidguard_events AS e
			 WHERE e.trade_id IS NOT NULL AND e.new_status IS NOT NULL
			WINDOW w AS (PARTITION BY e.trade_id
			             ORDER BY e.kind <> 'trade_executed', e.occurred_at))
		SELECT count(*) FROM ev
		 WHERE (n = 1 AND kind <> 'trade_executed')
		    OR (n > 1 AND (kind = 'trade_executed' OR old_status IS DISTINCT FROM prev_status))}),
		'0',
		"$label: each trade's events chain from its trade_executed event, each change from the previous status"
	);

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_trades AS t
		 WHERE t.status IS DISTINCT FROM (
			SELECT e.new_status FROM bidguard_events AS e
			 WHERE e.trade_id = t.trade_id AND e.new_status IS NOT NULL
			 ORDER BY e.kind <> 'trade_executed' DESC, e.occurred_at DESC
			 LIMIT 1)}),
		'0',
		"$label: every trade's status is the new status of its latest event");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_events AS e
		 WHERE e.trade_id IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM bidguard_trades AS t WHERE t.trade_id = e.trade_id)
		   AND NOT EXISTS (SELECT 1 FROM bidguard_events AS d
		                    WHERE d.trade_id = e.trade_id AND d.kind = 'trade_deleted')}),
		'0',
		"$label: no event names a trade that does not exist");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM bidguard_trades
		 WHERE (status = 'filled') <> (filled_at IS NOT NULL)
		    OR filled_at < created_at}),
		'0',
		"$label: exactly the filled trades have a filled_at, never before their admission");

	# (v) No lock outlives its transaction.
	is(bidguard_locks_held($node, $db), '0',
		"$label: no bidguard lock is held or awaited");
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid NOT IN (1, 2)}),
		'0',
		"$label: no advisory lock of any other class is held or awaited");

	my %f;
	($f{trades}, $f{counting}, $f{late_fill_pairs}) = split(
		/\|/,
		$node->safe_psql(
			$db, q{
		SELECT (SELECT count(*) FROM bidguard_trades),
		       (SELECT count(*) FROM bidguard_trades WHERE status <> 'failed'),
		       (SELECT count(*)
		          FROM (SELECT tr.bot_id,
		                       coalesce(tr.filled_at, tr.created_at)
		                         - lag(coalesce(tr.filled_at, tr.created_at)) OVER w AS gap
		                  FROM bidguard_trades AS tr
		                 WHERE tr.status <> 'failed'
		                WINDOW w AS (PARTITION BY tr.bot_id
		                             ORDER BY coalesce(tr.filled_at, tr.created_at), tr.trade_id)) AS g
		          JOIN bidguard_bots AS b ON b.bot_id = g.bot_id
		         WHERE g.gap < b.cooldown)}));
	my $ms = q{round((extract(epoch FROM %s) * 1000)::numeric, 3)};
	my $min_gaps = sprintf(
		q{
		SELECT v.bot_id, min(v.gap) AS min_gap, v.cooldown
		  FROM (%s) AS v GROUP BY v.bot_id, v.cooldown}, $gaps);
	$f{min_gaps} = $node->safe_psql(
		$db,
		sprintf(
			q{SELECT string_agg(m.bot_id || ':' || %s || '/' || %s, ' ' ORDER BY m.bot_id)
			    FROM (%s) AS m},
			sprintf($ms, 'm.min_gap'), sprintf($ms, 'm.cooldown'),
			$min_gaps));
	($f{min_gap_bot}, $f{min_gap_ms}, $f{min_gap_cooldown_ms}) = split(
		/\|/,
		$node->safe_psql(
			$db,
			sprintf(
				q{SELECT m.bot_id, %s, %s FROM (%s) AS m
				   ORDER BY extract(epoch FROM m.min_gap) / nullif(extract(epoch FROM m.cooldown), 0)
				   LIMIT 1},
				sprintf($ms, 'm.min_gap'), sprintf($ms, 'm.cooldown'),
				$min_gaps)));
	return \%f;
}

# Data in every table of bidguard, the way real use leaves it, in database
# $db of $node (where the extension exists): bids in every status through
# the functions, several generations of one posting, ids and data that COPY
# and the plain format have to escape; bids inserted, updated, moved and
# deleted by plain SQL; trades admitted, filled and failed under a cooldown
# that is raised afterwards, so that history is closer than today's
# cooldown and a restore must not judge it again.
sub fill_sample_data
{
	my ($node, $db) = @_;

	# Bids in every status, through the functions.
	$node->safe_psql(
		$db, q{
DO $$
DECLARE
	b bigint;
	i int;
	paths text[][] := ARRAY[
		ARRAY[NULL, NULL],              -- pending
		ARRAY['submitted', NULL],       -- submitted
		ARRAY['submitted', 'won'],
		ARRAY['submitted', 'lost'],
		ARRAY['withdrawn', NULL],
		ARRAY['expired', NULL],
		ARRAY['failed', NULL],
		ARRAY['submitted', 'withdrawn'],
		ARRAY['submitted', 'expired']];
BEGIN
	FOR i IN 1 .. array_length(paths, 1) LOOP
		SELECT c.bid_id INTO b
		  FROM bidguard_create_bid('fn', 'posting-' || i,
		                           jsonb_build_object('i', i, 'price', i * 1.25, 'tags', ARRAY['a', 'b']))
		    AS c;
		IF paths[i][1] IS NOT NULL THEN
			PERFORM bidguard_set_bid_status(b, paths[i][1], 'step one of ' || i);
		END IF;
		IF paths[i][2] IS NOT NULL THEN
			PERFORM bidguard_set_bid_status(b, paths[i][2], 'step two of ' || i);
		END IF;
	END LOOP;
END
$$;
-- Several generations of one posting.
SELECT bidguard_withdraw_posting('fn', 'generations', 'gen 1') FROM bidguard_create_bid('fn', 'generations');
SELECT bidguard_withdraw_posting('fn', 'generations', 'gen 2') FROM bidguard_create_bid('fn', 'generations');
SELECT bidguard_create_bid('fn', 'generations', '{"gen": 3}');
-- Ids and data that COPY and the plain format have to escape.
SELECT bidguard_create_bid('mk' || chr(9) || '"quoted"' || chr(92),
                           'line' || chr(10) || 'break, comma; semi ''single'' \N',
                           jsonb_build_object('s', 'tab' || chr(9) || ' nl' || chr(10) || ' quote" backslash'
                                                   || chr(92) || ' é 😀'));
SELECT bidguard_create_bid('marché', 'enchère-😀-' || repeat('é', 200));
SELECT bidguard_create_bid(repeat('m', 256), repeat('p', 256));
SELECT bidguard_set_bid_status(bid_id, 'submitted', 'reason with ' || chr(92) || 'N and' || chr(9)) FROM bidguard_create_bid('fn', 'weird reason');
SELECT bidguard_withdraw_bid(bid_id, NULL) FROM bidguard_create_bid('fn', 'no reason');
});

	# And by plain SQL: inserts, updates, a move, a delete.
	$node->safe_psql(
		$db, q{
INSERT INTO bidguard_bids (marketplace_id, posting_id, bid_data)
	VALUES ('plain', 'p1', '{"via": "insert"}'), ('plain', 'p2', '{}');
INSERT INTO bidguard_bids (marketplace_id, posting_id, status, status_reason)
	VALUES ('plain', 'p1', 'lost', 'inserted terminal');
UPDATE bidguard_bids SET status = 'submitted', status_reason = 'plain submit'
 WHERE (marketplace_id, posting_id) = ('plain', 'p1') AND status = 'pending';
UPDATE bidguard_bids SET posting_id = 'p3' WHERE (marketplace_id, posting_id) = ('plain', 'p2');
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('plain', 'doomed');
DELETE FROM bidguard_bids WHERE (marketplace_id, posting_id) = ('plain', 'doomed');
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('plain', 'p2') ON CONFLICT DO NOTHING;
});

	# Trades: admitted, filled and failed under a 1 minute cooldown, which is
	# raised to a day afterwards: a restore must not judge history again.
	$node->safe_psql(
		$db, q{
SELECT bidguard_set_cooldown(7, '1 minute');
SELECT bidguard_set_cooldown(8, '0');
SET bidguard.test_clock = '2026-03-01 10:00:00+00';
SELECT bidguard_try_trade(7, '{"symbol": "BTC-EUR", "side": "buy"}');
SELECT bidguard_try_trade(8);
SELECT bidguard_try_trade(8);
SET bidguard.test_clock = '2026-03-01 10:01:00+00';
SELECT bidguard_try_trade(7);
SET bidguard.test_clock = '2026-03-01 10:03:00+00';
SELECT bidguard_fail_trade(t.trade_id, 'rejected' || chr(9) || 'by exchange')
  FROM bidguard_try_trade(7) AS t;
SELECT bidguard_fill_trade(max(trade_id), '2026-03-01 10:01:30+00')
  FROM bidguard_trades WHERE bot_id = 7 AND status = 'open';
RESET bidguard.test_clock;
INSERT INTO bidguard_trades (bot_id, created_at) VALUES (7, '2026-03-01 09:00:00+00');
SELECT bidguard_set_cooldown(7, '1 day');
});
	return;
}


# An application table under both kinds of guard, with rows, and bot 42's
# trade just now under a day's cooldown: a copy of the database must keep
# both guards and still count bot 42's cooldown from that trade.
our $APP_TABLE_SQL = q{
SELECT bidguard_set_cooldown(42, '1 day');
SELECT bidguard_try_trade(42, '{"before": "the copy"}');
CREATE TABLE app_orders (
	order_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account text NOT NULL,
	placed_at timestamptz,
	status text NOT NULL DEFAULT 'open'
);
SELECT bidguard_guard_cooldown('app_orders', 'account', 'placed_at', '1 hour');
SELECT bidguard_guard_unique_active('app_orders', '{account}', 'status', '{open}');
SELECT bidguard_guard_rate_limit('app_orders', 'account', 100, '1 hour');
INSERT INTO bidguard_rate_limits (key_prefix, max_count, per) VALUES ('api:', 5, '1 day');
SELECT bidguard_rate_limit('api:copy-' || n) FROM generate_series(1, 3) AS n;
INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-1', now(), 'open');
INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-2', now() - interval '2 hours', 'done');
INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-4', now() - interval '3 hours', 'open');
};
our $APP_FINGERPRINT_SQL = q{
	SELECT count(*) || ' orders ' || md5(coalesce(string_agg(o::text, E'\n' ORDER BY o.order_id), ''))
	  FROM app_orders AS o};
our $GUARDS_SQL = q{SELECT string_agg(g::text, E'\n' ORDER BY g::text) FROM bidguard_guards AS g};

# What check_restored_copy compares a copy of database $db of $node with.
sub source_figures
{
	my ($node, $db) = @_;
	return {
		fp => $node->safe_psql($db, $FINGERPRINT_SQL),
		app => $node->safe_psql($db, $APP_FINGERPRINT_SQL),
		guards => $node->safe_psql($db, $GUARDS_SQL),
		max_bid => $node->safe_psql($db, 'SELECT max(bid_id) FROM bidguard_bids'),
		events => $node->safe_psql($db, 'SELECT count(*) FROM bidguard_events') };
}

# Every object of the extension, as the server describes it: functions
# with their definitions, tables with columns, constraints, indexes,
# triggers and privileges, views, sequences.  Compared between an upgraded
# or restored database and a fresh CREATE EXTENSION on the same server.
# Privileges are compared as what they grant: an ACL equal to the default is
# NULL after pg_upgrade but explicit after the install script's REVOKE, and
# the default itself changed (17 added MAINTAIN).
my $acl = q{(SELECT string_agg(g.p, ',' ORDER BY g.p)
	          FROM (SELECT coalesce(nullif(x.grantee, 0)::regrole::text, 'PUBLIC') || ':'
	                       || x.privilege_type || ':' || x.is_grantable AS p
	                  FROM aclexplode(coalesce(%s, acldefault(%s, %s))) AS x) AS g)};
our $EXTENSION_OBJECTS_SQL = q{
	WITH m AS (
		SELECT d.classid, d.objid
		  FROM pg_depend AS d JOIN pg_extension AS x ON x.oid = d.refobjid
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		   AND x.extname = 'bidguard')
	SELECT string_agg(line, E'\n' ORDER BY line) FROM (
		SELECT pg_describe_object(m.classid, m.objid, 0) || ': '
		       || pg_get_functiondef(m.objid) || ' acl ' || coalesce(} . sprintf($acl, 'p.proacl', q{'f'}, 'p.proowner') . q{, '-') AS line
		  FROM m JOIN pg_proc AS p ON p.oid = m.objid
		 WHERE m.classid = 'pg_proc'::regclass
		UNION ALL
		SELECT pg_describe_object(m.classid, m.objid, 0) || ': kind ' || c.relkind::text
		       || ' acl ' || coalesce(} . sprintf($acl, 'c.relacl',
		q{CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char"}, 'c.relowner') . q{, '-')
		       || coalesce(' view ' || pg_get_viewdef(c.oid), '')
		  FROM m JOIN pg_class AS c ON c.oid = m.objid
		 WHERE m.classid = 'pg_class'::regclass
		UNION ALL
		SELECT c.relname || ' column ' || a.attnum || ' ' || a.attname || ' '
		       || format_type(a.atttypid, a.atttypmod) || ' notnull ' || a.attnotnull
		       || ' identity ' || a.attidentity::text
		       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
		  FROM m JOIN pg_class AS c ON c.oid = m.objid
		  JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		  LEFT JOIN pg_attrdef AS ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
		 WHERE m.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v')
		UNION ALL
		SELECT c.relname || ' constraint ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
		       || ' deferrable ' || k.condeferrable || ' deferred ' || k.condeferred
		  FROM m JOIN pg_class AS c ON c.oid = m.objid
		  JOIN pg_constraint AS k ON k.conrelid = c.oid
		 WHERE m.classid = 'pg_class'::regclass AND k.contype <> 'n'
		UNION ALL
		SELECT c.relname || ' index ' || pg_get_indexdef(i.indexrelid)
		  FROM m JOIN pg_class AS c ON c.oid = m.objid
		  JOIN pg_index AS i ON i.indrelid = c.oid
		 WHERE m.classid = 'pg_class'::regclass
		UNION ALL
		SELECT c.relname || ' trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
		  FROM m JOIN pg_class AS c ON c.oid = m.objid
		  JOIN pg_trigger AS t ON t.tgrelid = c.oid AND NOT t.tgisinternal
		 WHERE m.classid = 'pg_class'::regclass
		UNION ALL
		SELECT 'config dump ' || x.extconfig::regclass[]::text || ' ' || coalesce(x.extcondition::text, '')
		       || ' version ' || x.extversion || ' relocatable ' || x.extrelocatable
		  FROM pg_extension AS x WHERE x.extname = 'bidguard'
	) AS all_objects};

# A database copied from another (restored, or upgraded in place), on
# $node: every row as in the source (figures from source_figures), the
# extension's objects exactly those of a fresh install on $node, the
# invariants, and every guard still refusing what it should: a second
# active bid, a trade inside the cooldown of bot 42's trade made on the
# source ($APP_TABLE_SQL), the application table's two guards.  It makes a
# database "fresh" on $node for the comparison.
sub check_restored_copy
{
	my ($node, $db, $label, $src) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	is($node->safe_psql($db, $FINGERPRINT_SQL), $src->{fp},
		"$label: every row of bids, events, bots and trades is identical");
	is($node->safe_psql($db, $APP_FINGERPRINT_SQL), $src->{app},
		"$label: every row of the application's guarded table is identical");
	is($node->safe_psql($db, $GUARDS_SQL), $src->{guards},
		"$label: bidguard_guards lists the same guards");

	$node->safe_psql('postgres', "DROP DATABASE IF EXISTS fresh");
	$node->safe_psql('postgres', "CREATE DATABASE fresh");
	$node->safe_psql('fresh', 'CREATE EXTENSION bidguard');
	my $fresh = $node->safe_psql('fresh', $EXTENSION_OBJECTS_SQL);
	my $copy = $node->safe_psql($db, $EXTENSION_OBJECTS_SQL);
	ok(length($fresh) > 1000, "$label: the catalog description of a fresh install is not empty");
	is($copy, $fresh,
		"$label: the extension's objects are exactly those of a fresh install on this server");

	check_bid_invariants($node, $label, dbname => $db);
	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_cooldown_violations'),
		'0', "$label: bidguard_cooldown_violations is empty");

	# One active bid per posting, by function and by plain SQL.
	my ($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('fn', 'posting-1')});
	like($err, qr/bidguard_bids_one_active/,
		"$label: a second active bid for an old posting is refused");
	is( $node->safe_psql(
			$db, q{
		SELECT NOT c.created AND c.bid_id = b.bid_id
		  FROM bidguard_create_bid('fn', 'posting-2') AS c, bidguard_bids AS b
		 WHERE (b.marketplace_id, b.posting_id) = ('fn', 'posting-2') AND b.status = 'submitted'}),
		't', "$label: create_bid returns the old active bid");
	cmp_ok($node->safe_psql($db, q{SELECT bid_id FROM bidguard_create_bid('fn', 'after the copy')}),
		'>', $src->{max_bid}, "$label: a new bid's id goes on after the old ones");
	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_events'), $src->{events} + 1,
		"$label: the copy invented no event; the new bid added one");

	# The cooldown runs from the trade made on the old server.
	is( $node->safe_psql(
			$db, q{
		SELECT reason || ' ' || (retry_after > interval '23 hours')
		  FROM bidguard_try_trade(42)}),
		'cooldown true',
		"$label: the bot traded on the source is still inside its cooldown");
	($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO bidguard_trades (bot_id) VALUES (42)});
	like($err, qr/bidguard_trade_cooldown|inside its cooldown/,
		"$label: a plain INSERT of a trade inside that cooldown is refused");
	is($node->safe_psql($db, q{SELECT reason FROM bidguard_try_trade(8)}),
		'executed', "$label: a bot with no cooldown still trades");

	# The application's table: the cooldown guard and the unique-active guard.
	($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-1', now(), 'done')});
	like($err, qr/is inside the cooldown of key \(account\)=\(acct-1\)/,
		"$label: the application's cooldown guard refuses a row inside the hour");
	($ret, $out, $err) = $node->psql($db,
		q{INSERT INTO app_orders (account, placed_at, status) VALUES ('acct-4', now(), 'open')});
	like($err, qr/duplicate key value violates unique constraint/,
		"$label: the application's unique-active guard refuses a second open order");
	is($node->safe_psql($db, q{INSERT INTO app_orders (account, placed_at) VALUES ('acct-3', now()) RETURNING status}),
		'open', "$label: an order outside every guard is accepted");

	# Preloaded on this server: the statistics count.
	cmp_ok($node->safe_psql($db, 'SELECT trades_rejected_cooldown FROM bidguard_stats'),
		'>=', 1, "$label: bidguard_stats counts on this server");
	is(bidguard_locks_held($node, $db), '0', "$label: no bidguard lock is left held");
	return;
}


# The catalog of extension $ext in database $db of $node, one line per fact,
# sorted: every member object; each function's whole definition (language,
# C symbol, volatility, parallel safety, strictness, settings, cost, rows),
# privileges and comment; each relation's kind, options, privileges,
# comment, view definition, columns in order (dropped columns left out),
# constraints, indexes, triggers, policies, rules; sequences; types; the
# initial privileges pg_dump treats as the extension's own (pg_init_privs);
# the tables pg_dump dumps (extconfig, extcondition); the version.  Stricter
# than $EXTENSION_OBJECTS_SQL: ACLs and comments are compared as stored, so
# it compares two databases of one server (an updated one and a fresh
# install), not databases across majors.
sub extension_catalog
{
	my ($node, $db, $ext) = @_;
	die "extension_catalog: not an extension name: $ext" unless $ext =~ /^\w+$/;
	my $sql = sprintf(q{
	WITH ext AS (
	    SELECT oid, extname, extversion, extnamespace, extconfig, extcondition
	      FROM pg_catalog.pg_extension WHERE extname = %s),
	members AS (
	    SELECT d.classid, d.objid, d.objsubid
	      FROM pg_catalog.pg_depend AS d, ext
	     WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
	       AND d.refobjid = ext.oid AND d.deptype = 'e'),
	rels AS (
	    SELECT c.oid FROM pg_catalog.pg_class AS c JOIN members AS m
	        ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND m.objid = c.oid),
	lines(line) AS (
	    -- every member, by its description
	    SELECT 'member ' || pg_catalog.pg_describe_object(classid, objid, objsubid) FROM members
	    UNION ALL
	    -- functions: the whole definition, privileges and comment
	    SELECT 'function ' || p.oid::pg_catalog.regprocedure::text || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
	           || E'\n  acl ' || COALESCE(p.proacl::text, 'default')
	           || E'\n  comment ' || COALESCE(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
	      FROM pg_catalog.pg_proc AS p JOIN members AS m
	        ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND m.objid = p.oid
	     WHERE p.prokind <> 'a'
	    UNION ALL
	    -- relations: kind, options, privileges, comment; views' definitions
	    SELECT 'relation ' || c.oid::pg_catalog.regclass::text || ' kind ' || c.relkind::text
	           || ' persistence ' || c.relpersistence::text
	           || ' options ' || COALESCE(c.reloptions::text, '')
	           || ' acl ' || COALESCE(c.relacl::text, 'default')
	           || ' rowsecurity ' || c.relrowsecurity
	           || E'\n  comment ' || COALESCE(pg_catalog.obj_description(c.oid, 'pg_class'), '')
	           || CASE WHEN c.relkind::text IN ('v', 'm') THEN E'\n' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
	      FROM pg_catalog.pg_class AS c WHERE c.oid IN (SELECT oid FROM rels)
	    UNION ALL
	    -- columns in order (dropped ones left out, counted by position)
	    SELECT 'column ' || a.attrelid::pg_catalog.regclass::text || ' #'
	           || pg_catalog.row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum)
	           || ' ' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
	           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
	           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
	           || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END
	           || COALESCE(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
	           || COALESCE(' collate ' || NULLIF(a.attcollation, 0)::pg_catalog.regcollation::text, '')
	           || ' storage ' || a.attstorage::text
	           || COALESCE(' acl ' || a.attacl::text, '')
	           || COALESCE(' comment ' || pg_catalog.col_description(a.attrelid, a.attnum), '')
	      FROM pg_catalog.pg_attribute AS a
	      LEFT JOIN pg_catalog.pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	     WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
	    UNION ALL
	    SELECT 'constraint ' || co.conrelid::pg_catalog.regclass::text || ' ' || co.conname || ' '
	           || pg_catalog.pg_get_constraintdef(co.oid)
	           || COALESCE(' comment ' || pg_catalog.obj_description(co.oid, 'pg_constraint'), '')
	      FROM pg_catalog.pg_constraint AS co WHERE co.conrelid IN (SELECT oid FROM rels)
	    UNION ALL
	    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
	           || CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END
	           || COALESCE(' comment ' || pg_catalog.obj_description(i.indexrelid, 'pg_class'), '')
	      FROM pg_catalog.pg_index AS i WHERE i.indrelid IN (SELECT oid FROM rels)
	    UNION ALL
	    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
	           || CASE t.tgenabled WHEN 'O' THEN '' ELSE ' enabled ' || t.tgenabled::text END
	      FROM pg_catalog.pg_trigger AS t
	     WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
	    UNION ALL
	    SELECT 'policy ' || po.polrelid::pg_catalog.regclass::text || ' ' || po.polname || ' ' || po.polcmd::text
	           || ' ' || COALESCE(pg_catalog.pg_get_expr(po.polqual, po.polrelid), '')
	      FROM pg_catalog.pg_policy AS po WHERE po.polrelid IN (SELECT oid FROM rels)
	    UNION ALL
	    SELECT 'rule ' || r.rulename || ' ' || pg_catalog.pg_get_ruledef(r.oid)
	      FROM pg_catalog.pg_rewrite AS r
	     WHERE r.ev_class IN (SELECT oid FROM rels) AND r.rulename <> '_RETURN'
	    UNION ALL
	    SELECT 'sequence ' || s.seqrelid::pg_catalog.regclass::text || ' ' || pg_catalog.format_type(s.seqtypid, NULL)
	           || ' start ' || s.seqstart || ' increment ' || s.seqincrement || ' min ' || s.seqmin
	           || ' max ' || s.seqmax || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle
	      FROM pg_catalog.pg_sequence AS s WHERE s.seqrelid IN (SELECT oid FROM rels)
	    UNION ALL
	    SELECT 'type ' || pg_catalog.format_type(ty.oid, NULL) || ' ' || ty.typtype::text
	      FROM pg_catalog.pg_type AS ty JOIN members AS m
	        ON m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND m.objid = ty.oid
	    UNION ALL
	    -- the privileges pg_dump treats as the extension's own
	    SELECT 'init_privs ' || pg_catalog.pg_describe_object(ip.classoid, ip.objoid, ip.objsubid)
	           || ' ' || ip.privtype::text || ' ' || ip.initprivs::text
	      FROM pg_catalog.pg_init_privs AS ip JOIN members AS m
	        ON m.classid = ip.classoid AND m.objid = ip.objoid
	    UNION ALL
	    -- what pg_dump dumps of the extension's tables
	    SELECT 'config ' || c::pg_catalog.regclass::text || ' ' || COALESCE(ext.extcondition[pg_catalog.array_position(ext.extconfig, c)], '')
	      FROM ext, pg_catalog.unnest(ext.extconfig) AS c
	    UNION ALL
	    SELECT 'extension ' || extname || ' ' || extversion || ' schema ' || extnamespace::pg_catalog.regnamespace::text FROM ext)
	SELECT line FROM lines ORDER BY line COLLATE "C"}, "'$ext'");
	return $node->safe_psql($db, $sql);
}

1;
