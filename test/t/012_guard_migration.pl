
# Copyright (c) bidguard contributors

# test/t/012_guard_migration.pl
#	  doc/migrating.md's "Migrating from check-then-insert and a Redis lock", on a
#	  bigger legacy database, then a race of the workers' plain SQL on the
#	  guarded tables, then the guards through pg_dump/pg_restore, renames and
#	  DROP EXTENSION (doc/api.md "Guarding your own tables", SPEC §6 and §9).
#
#	  1. Legacy data, as the ORM made it (doc/migrating.md's `bids` and `trades`,
#	     `timestamp` columns holding UTC, in a database whose sessions run in
#	     Asia/Kolkata so that a `timestamp` read as local time would be 5:30
#	     off): doc/migrating.md's rows plus 3000 bids over 300 postings of two
#	     marketplaces (45 postings with 2 or 3 active bids, the oldest
#	     active bid not the first inserted) and about 1000 trades of 20 bots
#	     (double trades 8 s apart, late fills 15.5 s before the next trade,
#	     unfilled trades, and pairs exactly 30 s apart, which are allowed).
#	     The expected duplicate keys and cooldown pairs are computed in Perl
#	     from the generated rows; bidguard_duplicate_active and
#	     bidguard_cooldown_violations must report exactly those, as must an
#	     independent SQL count (GROUP BY; a self-join for the pairs).
#	  2. doc/migrating.md's migration steps, verbatim: guarding the bids fails with
#	     23505 before the cleanup and changes nothing (no index, no row, no
#	     guard); guarding a `timestamp` column fails with 42804; the cleanup
#	     keeps each posting's oldest active bid; the conversion AT TIME ZONE
#	     'UTC' keeps every instant (the audit gives the same pairs); both
#	     guards are listed by bidguard_guards; doc/migrating.md's worker SQL works
#	     (ON CONFLICT DO NOTHING, the trade flow with \gset, 23P01 after it,
#	     a 'guard' lock in bidguard_locks meanwhile), a back-dated row is
#	     refused too, and a fill outside [created_at, now] is 23514.
#	  3. pgbench races the workers' plain SQL on the guarded tables at READ
#	     COMMITTED, REPEATABLE READ and SERIALIZABLE (--max-tries=10 there),
#	     24 clients, 4 s each, with the cooldown re-guarded at 100 ms:
#	     scanners INSERT ... ON CONFLICT (marketplace_id, posting_id) WHERE
#	     status IN ('pending', 'submitted') DO NOTHING on 8 hot postings,
#	     and submit, withdraw and lose bids so that new ones get created;
#	     traders BEGIN; INSERT INTO trades (bot_id, created_at) VALUES (:bot,
#	     NULL) RETURNING id; <the exchange: sleep 1-5 ms>; UPDATE trades SET
#	     filled_at = clock_timestamp() (or, one time in ten, DELETE the row:
#	     the cooldown is given back); COMMIT, on 8 bots.  The INSERT runs in
#	     a PL/pgSQL function that catches exclusion_violation (23P01), since
#	     PG15's pgbench aborts a client on any other error than 40001/40P01.
#	     Every outcome is recorded in the worker's transaction.  After each
#	     run: no key with two active bids (own SQL and the audit function);
#	     among the run's trades, each admission (created_at, stamped by the
#	     guard under the bot's lock) is at least the cooldown after the
#	     previous trade's effective time coalesce(filled_at, created_at), and
#	     consecutive effective times are at least the cooldown apart (the
#	     fill is made under the lock, within [created_at, now], so this is
#	     what src/cooldown.c guarantees); the audit function is empty for the
#	     run's bots; committed outcomes match the rows one for one; many
#	     trades were admitted and many refused; no bidguard lock is left.
#	  4. pg_dump -Fc and pg_restore into an empty database (the archive
#	     creates the extension): bidguard_guards lists the same guards with
#	     the same indexes, the guards reject a trade inside the cooldown
#	     (23P01) and a second active bid (23505), and the index comments
#	     survived, so bidguard_unguard_cooldown drops the index it made.
#	  5. Renaming the guarded table and its key column, in a session that
#	     used the guard before: the guard follows, bidguard_guards shows the
#	     new names, and dropping a guarded column is refused.
#	  6. DROP EXTENSION fails with 2BP01 while a cooldown guard exists; with
#	     CASCADE the guard's trigger is gone, and the tables, their rows and
#	     both indexes stay, the unique one still enforcing its rule.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $node = bidguard_node('guard_migration');
my $db = 'market';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql('postgres', "ALTER DATABASE $db SET timezone = 'Asia/Kolkata'");

# Runs statements in one psql session, on past errors.  Returns the SQLSTATE
# of each ('00000' when it succeeded), psql's stdout and its stderr.
sub run_states
{
	my ($dbname, @stmts) = @_;
	my $script = "\\set ON_ERROR_STOP 0\n";
	$script .= "$stmts[$_]\n\\echo \@\@ $_ :SQLSTATE\n" for 0 .. $#stmts;
	my ($out, $err) = ('', '');
	$node->psql($dbname, $script, stdout => \$out, stderr => \$err);
	my %st = map { /^\@\@ (\d+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $out;
	my $states = join ' ', map { $st{$_} // 'none' } 0 .. $#stmts;
	$out =~ s/^\@\@ .*\n?//mg;
	$out =~ s/\n\z//;
	return ($states, $out, $err);
}

# -------------------------------------------------------------------------
# 1. Legacy data
# -------------------------------------------------------------------------

# doc/migrating.md's tables and rows, verbatim.
$node->safe_psql(
	$db, q{
CREATE TABLE bids (id serial PRIMARY KEY, marketplace_id text NOT NULL,
                   posting_id text NOT NULL, status text NOT NULL,
                   created_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
CREATE TABLE trades (id serial PRIMARY KEY, bot_id integer NOT NULL,
                     created_at timestamp NOT NULL, filled_at timestamp);
INSERT INTO bids (marketplace_id, posting_id, status) VALUES
    ('upwork', 'job-1', 'pending'), ('upwork', 'job-1', 'pending'),
    ('upwork', 'job-2', 'submitted'), ('upwork', 'job-2', 'pending'), ('upwork', 'job-3', 'lost');
INSERT INTO trades (bot_id, created_at, filled_at) VALUES
    (4, '2025-09-07 20:28:53.395950', '2025-09-07 20:28:53.9'),
    (4, '2025-09-07 20:28:54.212493', '2025-09-07 20:28:54.6'),
    (4, '2025-09-07 21:10:00', NULL);
});

# Bids: 300 postings ('post-1'..'post-150' in two marketplaces), 10 bids
# each.  a(p) of them are active (the first inserted), the others terminal.
# Bid j of posting p was created p hours minus j minutes after the base, so
# the oldest active bid is the last active one inserted.
my @MARKETPLACES = ('upwork', 'freelancer');
my $PER_MARKETPLACE = 150;
my $BIDS_PER_POSTING = 10;
my @TERMINAL = qw(lost won withdrawn expired failed);
sub active_bids
{
	my ($p) = @_;
	return 3 if $p % 20 == 0;
	return 2 if $p % 20 == 7 || $p % 20 == 13;
	return $p % 2;
}
my (@bid_rows, @dup_expected, @kept_expected);
my $withdrawn_by_cleanup = 2;    # doc/migrating.md's job-1 and job-2
push @dup_expected, 'upwork, job-1|2', 'upwork, job-2|2';
for my $p (1 .. @MARKETPLACES * $PER_MARKETPLACE)
{
	my $mk = $MARKETPLACES[ int(($p - 1) / $PER_MARKETPLACE) ];
	my $posting = 'post-' . (($p - 1) % $PER_MARKETPLACE + 1);
	my $a = active_bids($p);
	for my $j (1 .. $BIDS_PER_POSTING)
	{
		my $status =
		    $j <= $a ? ($j % 2 ? 'pending' : 'submitted')
		  : $TERMINAL[ ($p + $j) % @TERMINAL ];
		push @bid_rows,
		  sprintf("(%d, '%s', '%s', '%s', %d)",
			scalar(@bid_rows), $mk, $posting, $status, $p * 60 - $j);
	}
	push @dup_expected, "$mk, $posting|$a" if $a > 1;
	push @kept_expected, "$mk|$posting|" . ($p * 60 - $a) if $a > 0;
	$withdrawn_by_cleanup += $a - 1 if $a > 1;
}
$node->safe_psql(
	$db, qq{
INSERT INTO bids (marketplace_id, posting_id, status, created_at)
SELECT mk, posting, status, timestamp '2025-06-01 00:00:00' + m * interval '1 minute'
  FROM (VALUES @{[ join(",\n", @bid_rows) ]}) AS v(n, mk, posting, status, m)
 ORDER BY n;
});

# Trades of bots 101..120, one a minute (times in ms after 2025-09-01 UTC),
# filled 0.5 s later, every ninth never filled; and the incidents: double
# trades 8 s after another (bots divisible by 3), a fill 45 s late, 15.5 s
# before the next trade (bots = 1 mod 4), and a trade whose fill is exactly
# 30 s after the previous and before the next one (bots = 2 mod 5: allowed).
my $LEGACY_COOLDOWN_MS = 30_000;
my @trade_rows;    # [bot, created ms, filled ms or undef]
for my $bot (101 .. 120)
{
	my $day = ($bot - 100) * 86_400_000;
	my $jitter = ($bot * 37) % 1000;
	for my $k (1 .. 50)
	{
		my $c = $day + $k * 60_000 + $jitter;
		my $f =
		    $k % 9 == 0 ? undef
		  : ($bot % 4 == 1 && $k == 20) ? $c + 45_000
		  : $c + 500;
		push @trade_rows, [ $bot, $c, $f ];
		push @trade_rows, [ $bot, $c + 8_000, $c + 8_400 ]
		  if $bot % 3 == 0 && ($k == 10 || $k == 30);
		push @trade_rows, [ $bot, $c + 20_000, $c + 30_500 ]
		  if $bot % 5 == 2 && $k == 40;
	}
}
# The pairs of consecutive effective times closer than 30 s, per bot, and
# doc/migrating.md's bot 4 (20:28:53.9 then 20:28:54.6, 6 days after the base).
my @pairs_expected = ('4|592133900|592134600');
{
	my %by_bot;
	push @{ $by_bot{ $_->[0] } }, $_->[2] // $_->[1] for @trade_rows;
	for my $bot (sort { $a <=> $b } keys %by_bot)
	{
		my @eff = sort { $a <=> $b } @{ $by_bot{$bot} };
		for my $i (1 .. $#eff)
		{
			die "generated trades of bot $bot share an effective time"
			  if $eff[$i] == $eff[ $i - 1 ];
			push @pairs_expected, "$bot|$eff[$i-1]|$eff[$i]"
			  if $eff[$i] - $eff[ $i - 1 ] < $LEGACY_COOLDOWN_MS;
		}
	}
}
$node->safe_psql(
	$db, qq{
INSERT INTO trades (bot_id, created_at, filled_at)
SELECT bot, timestamp '2025-09-01 00:00:00' + c * interval '1 millisecond',
       timestamp '2025-09-01 00:00:00' + f * interval '1 millisecond'
  FROM (VALUES @{[ join(",\n", map { sprintf('(%d, %d, %d, %s)', $_, @{ $trade_rows[$_] }[0, 1], $trade_rows[$_][2] // 'NULL') } 0 .. $#trade_rows) ]})
       AS v(n, bot, c, f)
 ORDER BY n;
});
note sprintf('%d bids, %d postings with 2-3 active bids; %d trades, %d pairs closer than 30 s',
	@bid_rows + 5, scalar(@dup_expected), @trade_rows + 3, scalar(@pairs_expected));
is(scalar(@dup_expected), 47, 'the legacy bids have 47 postings with several active bids');
is(scalar(@pairs_expected), 20,
	'the legacy trades have 20 pairs closer than 30 s (14 double trades, 5 late fills, doc/migrating.md\'s)');

# doc/migrating.md step 1: install bidguard, then find what the races left behind.
$node->safe_psql($db, 'CREATE EXTENSION bidguard');

my $dup_audit_sql = q{
	SELECT key || '|' || active_rows
	  FROM bidguard_duplicate_active('bids', '{marketplace_id,posting_id}',
	                                 'status', '{pending,submitted}')};
my $dup_own_sql = q{
	SELECT marketplace_id || ', ' || posting_id || '|' || count(*)
	  FROM bids WHERE status IN ('pending', 'submitted')
	 GROUP BY marketplace_id, posting_id HAVING count(*) > 1};
my $sorted = sub { join "\n", sort split /\n/, $_[0] };
is( $sorted->($node->safe_psql($db, $dup_audit_sql)),
	join("\n", sort @dup_expected),
	'bidguard_duplicate_active reports exactly the postings generated with several active bids');
is( $sorted->($node->safe_psql($db, $dup_own_sql)),
	join("\n", sort @dup_expected),
	'... as an independent GROUP BY does');

# The audit's pairs as "bot|prev ms|ms" after 2025-09-01 UTC.
my $ms_after_base =
  q{(extract(epoch FROM %s - timestamptz '2025-09-01 00:00:00+00') * 1000)::bigint};
my $pairs_audit_sql = sprintf(
	q{
	SELECT key || '|' || %s || '|' || %s
	  FROM bidguard_cooldown_violations('trades', 'bot_id', 'created_at',
	                                    '30 seconds', 'filled_at')},
	sprintf($ms_after_base, 'prev_effective_at'),
	sprintf($ms_after_base, 'effective_at'));
# Independent: a self-join, no window function; pairs with no row of the
# bot in between.  (Legacy timestamps hold UTC: read as such.)
my $pairs_own_sql = sprintf(
	q{
	WITH t AS (SELECT id, bot_id, coalesce(filled_at, created_at) AT TIME ZONE 'UTC' AS eff
	             FROM trades)
	SELECT p.bot_id || '|' || %s || '|' || %s
	  FROM t AS p JOIN t AS r
	    ON r.bot_id = p.bot_id AND p.eff < r.eff AND r.eff - p.eff < interval '30 seconds'
	 WHERE NOT EXISTS (SELECT 1 FROM t AS q
	                    WHERE q.bot_id = p.bot_id AND q.eff > p.eff AND q.eff < r.eff)},
	sprintf($ms_after_base, 'p.eff'), sprintf($ms_after_base, 'r.eff'));
my $pairs_before = $sorted->($node->safe_psql($db, $pairs_audit_sql));
is($pairs_before, join("\n", sort @pairs_expected),
	'bidguard_cooldown_violations reports exactly the generated pairs closer than 30 s, read as UTC');
is($sorted->($node->safe_psql($db, $pairs_own_sql)),
	join("\n", sort @pairs_expected), '... as an independent self-join does');

# -------------------------------------------------------------------------
# 2. doc/migrating.md's migration steps
# -------------------------------------------------------------------------

my $bids_md5_sql = q{SELECT count(*) || ' ' || md5(string_agg(b::text, E'\n' ORDER BY b.id)) FROM bids AS b};
my $guard_unique_sql = q{SELECT bidguard_guard_unique_active('bids', '{marketplace_id,posting_id}', 'status',
                                    '{pending,submitted}');};
my $guard_cooldown_sql =
  q{SELECT bidguard_guard_cooldown('trades', 'bot_id', 'created_at', '30 seconds', 'filled_at');};
my $indexes_sql = q{SELECT count(*) FROM pg_index WHERE indrelid IN ('bids'::regclass, 'trades'::regclass)};

my $bids_before = $node->safe_psql($db, $bids_md5_sql);
{
	my ($states, undef, $err) = run_states($db, $guard_unique_sql);
	is($states, '23505', 'guarding the bids before the cleanup fails with 23505');
	like(
		$err,
		qr/could not guard table "bids": 47 groups of rows already have more than one active row\nDETAIL:  The first ones by \(marketplace_id, posting_id\): \([^()]+\)(?:, \([^()]+\)){4}\./,
		'... saying how many groups, and listing the first ones');
	($states, undef, $err) = run_states($db, $guard_cooldown_sql);
	is($states, '42804', 'guarding a timestamp column fails with 42804');
	like($err, qr/ALTER TABLE \.\.\. ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'UTC'/,
		'... with the ALTER TABLE that converts it');
}
is($node->safe_psql($db, $indexes_sql), '2',
	'the failed guards created no index (only the primary keys)');
is($node->safe_psql($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'trades'::regclass}),
	'0', '... and no trigger');
is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_guards'),
	'0', '... and bidguard_guards is empty');
is($node->safe_psql($db, $bids_md5_sql), $bids_before, '... and no bid changed');

# doc/migrating.md step 2: clean the duplicates.
my $withdrawn_sql = q{SELECT count(*) FROM bids WHERE status = 'withdrawn'};
my $withdrawn_before = $node->safe_psql($db, $withdrawn_sql);
$node->safe_psql(
	$db, q{
UPDATE bids SET status = 'withdrawn'
 WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY marketplace_id, posting_id
                                                              ORDER BY created_at, id) AS n
                                FROM bids WHERE status IN ('pending', 'submitted')) AS a
               WHERE n > 1);
});
is($node->safe_psql($db, $withdrawn_sql) - $withdrawn_before,
	$withdrawn_by_cleanup, "the cleanup withdrew $withdrawn_by_cleanup bids");
is($node->safe_psql($db, $dup_audit_sql), '', 'bidguard_duplicate_active is empty after the cleanup');
is($node->safe_psql($db, $dup_own_sql), '', '... and so is the GROUP BY');
is( $sorted->(
		$node->safe_psql(
			$db, q{
	SELECT marketplace_id || '|' || posting_id || '|'
	       || extract(epoch FROM created_at - timestamp '2025-06-01 00:00:00')::bigint / 60
	  FROM bids WHERE status IN ('pending', 'submitted') AND posting_id LIKE 'post-%'})),
	join("\n", sort @kept_expected),
	'each generated posting kept its oldest active bid');
is( $node->safe_psql(
		$db, q{
	SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM bids
	 WHERE posting_id IN ('job-1', 'job-2') AND status IN ('pending', 'submitted')}),
	'1:pending,3:submitted',
	'doc/migrating.md\'s job-1 and job-2 kept their first bid (same created_at: the lowest id)');

# doc/migrating.md step 3: timestamptz, then guard both tables.
$node->safe_psql(
	$db, q{
ALTER TABLE trades ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'UTC',
                   ALTER COLUMN filled_at TYPE timestamptz USING filled_at AT TIME ZONE 'UTC';
});
is( $node->safe_psql(
		$db, q{
	SELECT (SELECT created_at FROM trades WHERE id = 1) = timestamptz '2025-09-07 20:28:53.39595+00'
	   AND (SELECT filled_at FROM trades WHERE id = 2) = timestamptz '2025-09-07 20:28:54.6+00'}),
	't', 'the conversion read the legacy times as UTC (sessions run in Asia/Kolkata)');
is($sorted->($node->safe_psql($db, $pairs_audit_sql)),
	$pairs_before, 'the audit finds the same pairs at the same instants after the conversion');
my ($uidx) = $node->safe_psql($db, $guard_unique_sql);
$node->safe_psql($db, $guard_cooldown_sql);
is( $node->safe_psql(
		$db, q{SELECT kind, table_name, key_columns, cooldown FROM bidguard_guards ORDER BY table_name;}),
	"unique_active|bids|{marketplace_id,posting_id}|\ncooldown|trades|{bot_id}|00:00:30",
	'bidguard_guards lists both guards, as doc/migrating.md shows');
my $cidx = $node->safe_psql($db,
	q{SELECT index_name FROM bidguard_guards WHERE kind = 'cooldown'});
is( $node->safe_psql(
		$db, q{
	SELECT string_agg(kind || ' ' || coalesce(time_column::text, '-') || ' ' || coalesce(fill_column::text, '-')
	                  || ' ' || index_name || ' ' || coalesce(trigger_name::text, '-'), ', ' ORDER BY kind)
	  FROM bidguard_guards}),
	"cooldown created_at filled_at $cidx bidguard_cooldown_guard, unique_active - - $uidx -",
	"... with their columns, indexes ($cidx, $uidx) and trigger");
is( $node->safe_psql(
		$db, qq{
	SELECT obj_description('$uidx'::regclass, 'pg_class') || E'\n' || obj_description('$cidx'::regclass, 'pg_class')}),
	"bidguard_guard_unique_active: at most one active row per key\n"
	  . 'bidguard_guard_cooldown: serves the cooldown guard; bidguard_unguard_cooldown() drops it',
	'both indexes carry bidguard\'s comment');
is($node->safe_psql($db, $dup_audit_sql), '', 'bidguard_duplicate_active is empty once guarded');

# doc/migrating.md step 4: the workers' SQL.
is( $node->safe_psql(
		$db, q{
INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'pending')
ON CONFLICT (marketplace_id, posting_id) WHERE status IN ('pending', 'submitted') DO NOTHING
RETURNING id}),
	'', 'the scanner\'s INSERT ... ON CONFLICT DO NOTHING inserts no second active bid');
{
	my ($states, $out, $err) = run_states(
		$db,
		'BEGIN;',
		'INSERT INTO trades (bot_id, created_at) VALUES (7, NULL) RETURNING id \gset',
		q{SELECT kind FROM bidguard_locks WHERE pid = pg_backend_pid();},
		'UPDATE trades SET filled_at = clock_timestamp() WHERE id = :id;',
		'COMMIT;',
		'INSERT INTO trades (bot_id) VALUES (7);',
		q{SELECT count(*) FROM bidguard_locks;},
		# Back-dating is refused too: the guard looks both ways.
		q{INSERT INTO trades (bot_id, created_at) VALUES (7, now() - interval '10 seconds');},
		q{INSERT INTO trades (bot_id, created_at) VALUES (7, now() - interval '1 hour');},
		# A fill must lie in [created_at, now].
		q{INSERT INTO trades (bot_id, created_at, filled_at) VALUES (8, now(), now() + interval '1 hour');},
		q{UPDATE trades SET filled_at = created_at - interval '1 second' WHERE bot_id = 7 AND filled_at IS NOT NULL;},
		q{SELECT count(*) || ' ' || count(*) FILTER (WHERE filled_at >= created_at) FROM trades WHERE bot_id = 7;});
	is($states,
		'00000 00000 00000 00000 00000 23P01 00000 23P01 00000 23514 23514 00000',
		'doc/migrating.md\'s trade flow commits, the next trade is 23P01, back-dating is 23P01, fills outside [created_at, now] are 23514'
	);
	is($out, "guard\n0\n2 1",
		'... the flow held a \'guard\' lock, none is left, bot 7 has its trade and the one an hour back');
	like($err, qr/row of table "trades" is inside the cooldown of key \(bot_id\)=\(7\)\nDETAIL:  Key \(bot_id\)=\(7\) has a cooldown of 00:00:30/,
		'... and 23P01 names the key and its cooldown');
}

# -------------------------------------------------------------------------
# 3. The race, at the three isolation levels
# -------------------------------------------------------------------------

my $COOLDOWN_MS = 100;
my $CLIENTS = 24;
my $SECONDS = 4;
my $BOTS = 8;
my $POSTINGS = 8;

$node->safe_psql(
	$db, qq{
SELECT bidguard_guard_cooldown('trades', 'bot_id', 'created_at', '$COOLDOWN_MS milliseconds', 'filled_at');
-- Each worker records its outcome in its own transaction.
CREATE UNLOGGED TABLE race_outcomes (run text NOT NULL, kind text NOT NULL, outcome text NOT NULL);
-- The trader's INSERT (doc/migrating.md step 4), with 23P01 caught: PG15's pgbench
-- would abort the client on it.
CREATE FUNCTION race_trade(p_bot integer, p_run text) RETURNS integer
LANGUAGE plpgsql AS \$\$
DECLARE
	trade_id integer;
BEGIN
	INSERT INTO trades (bot_id, created_at) VALUES (p_bot, NULL) RETURNING id INTO trade_id;
	INSERT INTO race_outcomes (run, kind, outcome) VALUES (p_run, 'trade', 'admitted');
	RETURN trade_id;
EXCEPTION WHEN exclusion_violation THEN
	INSERT INTO race_outcomes (run, kind, outcome) VALUES (p_run, 'trade', 'cooldown');
	RETURN 0;
END
\$\$;
});
is( $node->safe_psql(
		$db, q{SELECT cooldown || ' ' || index_name FROM bidguard_guards WHERE kind = 'cooldown'}),
	"00:00:00.1 $cidx",
	'calling bidguard_guard_cooldown again changed the cooldown to 100 ms, with the same index');

my %SCRIPTS = (
	'trader@6' => q{\set bot random(LO, HI)
\set exchange_ms random(1, 5)
\set exchange_refused random(1, 10)
BEGIN;
SELECT race_trade(:bot, 'RUN') AS id \gset
\if :id > 0
\sleep :exchange_ms ms
\if :exchange_refused = 1
WITH d AS (DELETE FROM trades WHERE id = :id RETURNING id)
INSERT INTO race_outcomes (run, kind, outcome) SELECT 'RUN', 'trade', 'given back' FROM d;
\else
UPDATE trades SET filled_at = clock_timestamp() WHERE id = :id;
\endif
\endif
COMMIT;
},
	'scan_insert@5' => q{\set p random(1, NPOSTINGS)
WITH i AS (
	INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('MK', 'job-' || :p, 'pending')
	ON CONFLICT (marketplace_id, posting_id) WHERE status IN ('pending', 'submitted') DO NOTHING
	RETURNING id)
INSERT INTO race_outcomes (run, kind, outcome)
SELECT 'RUN', 'bid', CASE WHEN EXISTS (SELECT 1 FROM i) THEN 'created' ELSE 'deduplicated' END;
},
	'scan_submit@2' => q{\set p random(1, NPOSTINGS)
UPDATE bids SET status = 'submitted'
 WHERE marketplace_id = 'MK' AND posting_id = 'job-' || :p AND status = 'pending';
},
	'scan_withdraw@2' => q{\set p random(1, NPOSTINGS)
UPDATE bids SET status = 'withdrawn'
 WHERE marketplace_id = 'MK' AND posting_id = 'job-' || :p AND status IN ('pending', 'submitted');
},
	'scan_lost@1' => q{\set p random(1, NPOSTINGS)
UPDATE bids SET status = 'lost'
 WHERE marketplace_id = 'MK' AND posting_id = 'job-' || :p AND status = 'submitted';
},);

my @runs = (
	{ name => 'rc', isolation => 'read committed', first_bot => 201 },
	{ name => 'rr', isolation => 'repeatable read', first_bot => 211, retries => 10 },
	{ name => 'ser', isolation => 'serializable', first_bot => 221, retries => 10 },);

my @figures;
for my $run (@runs)
{
	my $name = $run->{name};
	my ($lo, $hi) = ($run->{first_bot}, $run->{first_bot} + $BOTS - 1);
	my $mk = "race-$name";
	my %files;
	for my $key (keys %SCRIPTS)
	{
		(my $text = $SCRIPTS{$key}) =~ s/\bRUN\b/$name/g;
		$text =~ s/\bLO\b/$lo/g;
		$text =~ s/\bHI\b/$hi/g;
		$text =~ s/\bMK\b/$mk/g;
		$text =~ s/\bNPOSTINGS\b/$POSTINGS/g;
		$files{"${name}_$key"} = $text;
	}
	my $opts = "-c $CLIENTS -j 2 -T $SECONDS";
	$opts .= " --max-tries=$run->{retries}" if $run->{retries};
	my $pgoptions = '-c default_transaction_isolation=' . ($run->{isolation} =~ s/ /\\ /gr);
	{
		local $ENV{PGOPTIONS} = $pgoptions;
		is($node->safe_psql($db, 'SHOW transaction_isolation'),
			$run->{isolation}, "$name: pgbench's sessions run at $run->{isolation}");
	}

	my $start = $node->safe_psql($db, 'SELECT clock_timestamp()');
	my $r = run_pgbench($node, $name, $opts, \%files,
		pgoptions => $pgoptions, dbname => $db);
	my $end = $node->safe_psql($db, 'SELECT clock_timestamp()');

	is($r->{status}, 0, "$name: pgbench exits with status 0");
	unlike($r->{stderr}, qr/aborted|ERROR/, "$name: no client aborted, no error");
	ok(defined $r->{processed} && $r->{processed} > 0,
		"$name: transactions were processed (" . ($r->{processed} // 'none') . ')');
	if ($run->{retries})
	{
		ok( defined $r->{processed} && $r->{failed} * 100 <= $r->{processed},
			"$name: at most 1% of the transactions failed after $run->{retries} tries ($r->{failed})");
	}
	else
	{
		is($r->{failed}, 0, "$name: no failed transaction");
	}

	# Bids: never two active ones for a key.
	is($node->safe_psql($db, $dup_own_sql), '', "$name: no posting has two active bids (own SQL)");
	is($node->safe_psql($db, $dup_audit_sql), '', "$name: bidguard_duplicate_active is empty");

	# Trades of the run's bots: each admission (created_at) at least the
	# cooldown after the previous trade's effective time, and consecutive
	# effective times at least the cooldown apart.
	my $gaps_sql = qq{
		SELECT bot_id, prev_id, id, created_at - prev_eff AS admission_gap, eff - prev_eff AS effective_gap
		  FROM (SELECT t.bot_id, t.id, t.created_at, coalesce(t.filled_at, t.created_at) AS eff,
		               lag(t.id) OVER w AS prev_id,
		               lag(coalesce(t.filled_at, t.created_at)) OVER w AS prev_eff
		          FROM trades AS t WHERE t.bot_id BETWEEN $lo AND $hi
		        WINDOW w AS (PARTITION BY t.bot_id ORDER BY t.created_at, t.id)) AS g
		 WHERE prev_eff IS NOT NULL};
	my $close = qq{SELECT * FROM ($gaps_sql) AS v
		 WHERE v.admission_gap < interval '$COOLDOWN_MS milliseconds'
		    OR v.effective_gap < interval '$COOLDOWN_MS milliseconds'};
	my $n = $node->safe_psql($db, "SELECT count(*) FROM ($close) AS c");
	is($n, '0',
		"$name: no trade admitted within $COOLDOWN_MS ms of the previous one's effective time, no two effective times closer"
	);
	diag "$name: trades too close:\n" . $node->safe_psql($db, "$close ORDER BY 1, 3 LIMIT 10")
	  if $n ne '0';
	is( $node->safe_psql(
			$db, qq{
		SELECT count(*) FROM trades
		 WHERE bot_id BETWEEN $lo AND $hi
		   AND (filled_at IS NULL OR filled_at < created_at OR filled_at > '$end'
		        OR created_at < '$start')}),
		'0',
		"$name: every trade of the run was filled, within [created_at, now]");
	is( $node->safe_psql(
			$db, qq{
		SELECT count(*) FROM bidguard_cooldown_violations('trades', 'bot_id', 'created_at',
		                                                   '$COOLDOWN_MS milliseconds', 'filled_at')
		 WHERE key::integer BETWEEN $lo AND $hi}),
		'0',
		"$name: bidguard_cooldown_violations is empty for the run's bots");

	# Outcomes, committed with the work, match the rows.
	my %o = map { split /\|/ } split /\n/,
	  $node->safe_psql($db,
		qq{SELECT outcome, count(*) FROM race_outcomes WHERE run = '$name' GROUP BY 1});
	$o{$_} //= 0 for ('admitted', 'cooldown', 'given back', 'created', 'deduplicated');
	my $trades = $node->safe_psql($db,
		"SELECT count(*) FROM trades WHERE bot_id BETWEEN $lo AND $hi");
	is($trades, $o{admitted} - $o{'given back'},
		"$name: the committed admissions, less the trades given back, are the run's trades ($trades)");
	is($node->safe_psql($db, "SELECT count(*) FROM bids WHERE marketplace_id = '$mk'"),
		$o{created}, "$name: every committed 'created' outcome is a bid ($o{created})");
	cmp_ok($trades, '>=', 100, "$name: many trades were admitted");
	cmp_ok($o{cooldown}, '>=', 100, "$name: many trades were refused inside the cooldown ($o{cooldown})");
	cmp_ok($o{'given back'}, '>', 0, "$name: some admitted trades were given back by a DELETE");
	cmp_ok($o{created}, '>', 2 * $POSTINGS,
		"$name: postings got new bids after the old ones ended ($o{created})");
	cmp_ok($o{deduplicated}, '>', 0, "$name: ON CONFLICT DO NOTHING deduplicated bids ($o{deduplicated})");
	# A bot admits at most one trade per cooldown of the run's window.
	my ($window_ms, $max_per_bot) = split /\|/, $node->safe_psql(
		$db, qq{
		SELECT extract(epoch FROM timestamptz '$end' - timestamptz '$start') * 1000,
		       (SELECT max(n) FROM (SELECT count(*) AS n FROM trades
		                             WHERE bot_id BETWEEN $lo AND $hi GROUP BY bot_id) AS c)});
	cmp_ok($max_per_bot, '<=', int($window_ms / $COOLDOWN_MS) + 1,
		"$name: no bot has more trades ($max_per_bot) than one per cooldown of the run's window ("
		  . int($window_ms) . ' ms)');

	is($node->safe_psql($db, 'SELECT count(*) FROM bidguard_locks'),
		'0', "$name: no bidguard lock is held or awaited (bidguard_locks)");
	is( $node->safe_psql(
			$db, q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid NOT IN (1, 2)}),
		'0',
		"$name: no advisory lock of any bidguard class is left (pg_locks)");

	my $min_gap = $node->safe_psql($db,
		"SELECT round(extract(epoch FROM min(admission_gap)) * 1000, 3) FROM ($gaps_sql) AS v");
	my $statuses = $node->safe_psql(
		$db, qq{
		SELECT string_agg(status || '=' || n, ' ' ORDER BY status)
		  FROM (SELECT status, count(*) AS n FROM bids WHERE marketplace_id = '$mk' GROUP BY 1) AS s});
	my $fig =
	    "$name: trades admitted $o{admitted} (given back $o{'given back'}, kept $trades), "
	  . "refused in the cooldown $o{cooldown}; bids created $o{created}, deduplicated $o{deduplicated} "
	  . "($statuses); transactions $r->{processed}, retried $r->{retried}, failed $r->{failed}; "
	  . "min admission gap $min_gap ms (cooldown $COOLDOWN_MS ms); most trades of a bot $max_per_bot";
	note $fig;
	push @figures, $fig;
}

# Back to doc/migrating.md's cooldown for what follows.
$node->safe_psql($db, $guard_cooldown_sql);
is( $node->safe_psql(
		$db, q{SELECT cooldown || ' ' || index_name FROM bidguard_guards WHERE kind = 'cooldown'}),
	"00:00:30 $cidx", 'guarded again at 30 s');

# -------------------------------------------------------------------------
# 4. pg_dump / pg_restore
# -------------------------------------------------------------------------

my $guards_sql = q{
	SELECT string_agg(concat_ws(' ', kind, table_name, key_columns, time_column, fill_column,
	                            cooldown, condition, index_name, trigger_name), E'\n' ORDER BY kind)
	  FROM bidguard_guards};
my $data_sql = q{SET timezone = 'UTC';
	SELECT (SELECT count(*) || ' ' || md5(string_agg(b::text, E'\n' ORDER BY b.id)) FROM bids AS b)
	    || ' ' || (SELECT count(*) || ' ' || md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM trades AS t)};
my $guards_src = $node->safe_psql($db, $guards_sql);
my $data_src = $node->safe_psql($db, $data_sql);
note "guards:\n$guards_src";

my $dump = $node->basedir . '/market.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $db ], 'pg_dump -Fc of the guarded database');
{
	my $toc = `pg_restore -l $dump`;
	like($toc, qr/ EXTENSION - bidguard\b/, 'the archive creates the extension');
	like($toc, qr/ TRIGGER public trades bidguard_cooldown_guard /, 'the archive has the guard\'s trigger');
	like($toc, qr/ COMMENT public INDEX \Q$cidx\E /, 'the archive has the cooldown index\'s comment');
	like($toc, qr/ COMMENT public INDEX \Q$uidx\E /, 'the archive has the unique index\'s comment');
}
my $rdb = 'restored';
$node->safe_psql('postgres', "CREATE DATABASE $rdb");
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $rdb, $dump ],
	'pg_restore into an empty database (no CREATE EXTENSION beforehand)');
is($node->safe_psql($rdb, $guards_sql), $guards_src,
	'bidguard_guards lists the same guards, with the same indexes, after the restore');
is($node->safe_psql($rdb, $data_sql), $data_src, 'every bid and trade was restored as it was');
{
	my ($states, undef, $err) = run_states(
		$rdb,
		'INSERT INTO trades (bot_id) VALUES (900);',
		'INSERT INTO trades (bot_id) VALUES (900);',
		q{INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'pending');},
		q{INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'pending')
		  ON CONFLICT (marketplace_id, posting_id) WHERE status IN ('pending', 'submitted') DO NOTHING;});
	is($states, '00000 23P01 23505 00000',
		'restored: a trade inside the cooldown is 23P01, a second active bid 23505, ON CONFLICT DO NOTHING works');
	like($err, qr/inside the cooldown of key \(bot_id\)=\(900\)/, '... the 23P01 from the guard');
	like($err, qr/\Q$uidx\E/, '... the 23505 from the unique-active index');
}
is( $node->safe_psql(
		$rdb, qq{
	SELECT obj_description('$cidx'::regclass, 'pg_class') LIKE 'bidguard_guard_cooldown:%'
	   AND obj_description('$uidx'::regclass, 'pg_class') LIKE 'bidguard_guard_unique_active:%'}),
	't', 'the indexes\' comments survived the restore');
{
	my ($states, $out) = run_states(
		$rdb,
		'BEGIN;',
		q{SELECT bidguard_unguard_cooldown('trades');},
		qq{SELECT to_regclass('public.$cidx') IS NULL, (SELECT count(*) FROM bidguard_guards WHERE kind = 'cooldown'),
		          (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'trades'::regclass);},
		'INSERT INTO trades (bot_id, created_at) VALUES (900, now());',
		'ROLLBACK;',
		qq{SELECT to_regclass('public.$cidx') IS NOT NULL, (SELECT count(*) FROM bidguard_guards WHERE kind = 'cooldown');});
	is($states, '00000 00000 00000 00000 00000 00000',
		'restored: bidguard_unguard_cooldown works (in a transaction rolled back)');
	is($out, "\nt|0|0\nt|1",
		'... it dropped the trigger and the index it made, after which the guard was gone; rolled back, both are back'
	);
}

# -------------------------------------------------------------------------
# 5. Renames
# -------------------------------------------------------------------------

{
	# One session: the guard is used (and its plan cached) before the renames.
	my ($states, undef, $err) = run_states(
		$rdb,
		'INSERT INTO trades (bot_id) VALUES (901);',
		'ALTER TABLE trades RENAME TO bot_trades;',
		'ALTER TABLE bot_trades RENAME COLUMN bot_id TO robot_id;',
		'INSERT INTO bot_trades (robot_id) VALUES (901);',
		'INSERT INTO bot_trades (robot_id) VALUES (902);',
		q{UPDATE bot_trades SET robot_id = 901 WHERE robot_id = 902;},
		'ALTER TABLE bot_trades DROP COLUMN filled_at;');
	is($states, '00000 00000 00000 23P01 00000 23P01 2BP01',
		'after renaming the table and its key column, the guard still refuses a row (and a move) into the cooldown; dropping a guarded column is refused'
	);
	like($err, qr/row of table "bot_trades" is inside the cooldown of key \(robot_id\)=\(901\)/,
		'... naming the table and the key column by their new names');
}
is( $node->safe_psql($rdb, q{
	SELECT concat_ws(' ', table_name, key_columns, time_column, fill_column, cooldown, index_name)
	  FROM bidguard_guards WHERE kind = 'cooldown'}),
	"bot_trades {robot_id} created_at filled_at 00:00:30 $cidx",
	'bidguard_guards shows the new names');
is( (run_states($rdb, 'INSERT INTO bot_trades (robot_id) VALUES (902);'))[0],
	'23P01', 'a new session is refused inside the cooldown too');

# -------------------------------------------------------------------------
# 6. DROP EXTENSION
# -------------------------------------------------------------------------

my $rdata_sql = q{
	SELECT (SELECT count(*) || ' ' || md5(string_agg(b::text, E'\n' ORDER BY b.id)) FROM bids AS b)
	    || ' ' || (SELECT count(*) || ' ' || md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM bot_trades AS t)};
my $rdata = $node->safe_psql($rdb, $rdata_sql);
{
	my ($states, undef, $err) = run_states($rdb, 'DROP EXTENSION bidguard;');
	is($states, '2BP01', 'DROP EXTENSION without CASCADE fails with 2BP01 while a cooldown guard exists');
	like($err, qr/trigger bidguard_cooldown_guard on table bot_trades depends on/,
		'... because the guard\'s trigger depends on it');
}
$node->safe_psql($rdb, 'DROP EXTENSION bidguard CASCADE');
is( $node->safe_psql(
		$rdb, q{
	SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'bidguard')
	    || ' ' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bot_trades'::regclass)}),
	'0 0', 'DROP EXTENSION CASCADE dropped the extension and the guard\'s trigger');
is($node->safe_psql($rdb, $rdata_sql), $rdata, '... the tables and every row stay');
is( $node->safe_psql(
		$rdb, qq{
	SELECT (SELECT indisunique AND indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.$uidx'))
	    || ' ' || (to_regclass('public.$cidx') IS NOT NULL)}),
	'true true', '... and both indexes');
{
	my ($states, $out) = run_states(
		$rdb,
		q{INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'submitted');},
		q{INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'pending')
		  ON CONFLICT (marketplace_id, posting_id) WHERE status IN ('pending', 'submitted') DO NOTHING
		  RETURNING id;},
		q{INSERT INTO bids (marketplace_id, posting_id, status) VALUES ('upwork', 'job-1', 'lost');},
		'INSERT INTO bot_trades (robot_id, created_at) VALUES (901, now());');
	is($states, '23505 00000 00000 00000',
		'after DROP EXTENSION CASCADE the unique-active index still refuses a second active bid; the cooldown is no longer guarded'
	);
	is($out, '', '... and ON CONFLICT DO NOTHING still inserts nothing');
}

note $_ for @figures;
$node->stop;
done_testing();
