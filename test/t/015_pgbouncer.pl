
# Copyright (c) bidguard contributors

# test/t/015_pgbouncer.pl
#	  bidguard behind PgBouncer (Debian's pgbouncer, started here on a private
#	  socket), in each pooling mode, with more clients than server
#	  connections (pool size 4):
#	  - transaction mode, simple and extended protocol: pgbench races of
#	    bids (create, withdraw, plain INSERT) and trades (try, the exchange
#	    call inside the transaction, fill or fail; plain INSERT), then the
#	    invariants: 0 duplicate active bids, 0 trades inside a cooldown;
#	    bidguard_lock holds across a transaction and is free after it;
#	  - named prepared statements (pgbench -M prepared; psycopg 3 after 5
#	    executions of a query) in transaction mode: they fail before
#	    PgBouncer 1.21 (the test says which version it found) and work with
#	    psycopg's prepare_threshold=None;
#	  - statement mode: single-statement calls race safely, a transaction
#	    block is refused, so no lock can be held across an exchange call;
#	  - session mode: the whole trade flow, as on a direct connection.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $pgbouncer = '/usr/sbin/pgbouncer';
plan skip_all => "$pgbouncer is not installed (Debian package pgbouncer)" unless -x $pgbouncer;

my $node = bidguard_node('pgbouncer', conf => "max_connections = 40\n");
my $version = `$pgbouncer --version` =~ /PgBouncer (\d+)\.(\d+)/ ? "$1.$2" : '0.0';
my ($major, $minor) = split /\./, $version;
my $has_prepared = $major > 1 || ($major == 1 && $minor >= 21);
note "PgBouncer $version";

$node->safe_psql(
	'postgres', q{
SELECT bidguard_set_cooldown(b, '150 ms') FROM generate_series(1, 6) AS b;
CREATE UNLOGGED TABLE pb_outcomes (run text, reason text);
GRANT ALL ON pb_outcomes TO PUBLIC;
});

# PgBouncer's own directory, socket and port.
# (absolute: libpq takes only an absolute path as a socket directory, and
# basedir is relative from PostgreSQL 18's test modules on)
my $dir = File::Spec->rel2abs($node->basedir . '/pgbouncer');
mkdir $dir or die "mkdir $dir: $!";
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $backend = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
append_to_file("$dir/users.txt", qq{"postgres" ""\n});
append_to_file(
	"$dir/pgbouncer.ini", qq{
[databases]
tx = $backend pool_mode=transaction
st = $backend pool_mode=statement
se = $backend pool_mode=session
txg = $backend pool_mode=transaction connect_query='SET bidguard.pool_mode = transaction'

[pgbouncer]
listen_addr =
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/users.txt
admin_users = postgres
default_pool_size = 4
max_client_conn = 200
; hand out the pool's server connections in turn (not last used first), so
; that consecutive transactions of one client meet different servers, as
; they do under load
server_round_robin = 1
query_wait_timeout = 30
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
});
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'<', \undef, '>', "$dir/stdout.log", '2>', "$dir/stderr.log");
END { $bouncer->kill_kill if $bouncer; }

# psql through PgBouncer, to pool $db.
sub bpsql
{
	my ($db, $sql, %opts) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', $dir, '-p', $port,
		  '-U', 'postgres', '-d', $db, '-c', $sql ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	chomp $out;
	return wantarray ? ($? >> 8, $out, $err) : $out;
}

my $up = 0;
for (1 .. 100)
{
	my ($rc) = bpsql('tx', 'SELECT 1');
	if ($rc == 0) { $up = 1; last; }
	select undef, undef, undef, 0.1;
}
ok($up, 'PgBouncer accepts connections') or BAIL_OUT(slurp_file("$dir/stderr.log"));
is(scalar bpsql($_, 'SELECT 1'), '1', "pool $_ answers") for qw(tx st se);

# pgbench through PgBouncer; returns (exit status, stdout, stderr).
sub bpgbench
{
	my ($label, $db, $opts, %scripts) = @_;
	my @cmd = ('pgbench', '-n', '-h', $dir, '-p', $port, '-U', 'postgres', split(/\s+/, $opts));
	for my $key (sort keys %scripts)
	{
		my ($name, $weight) = $key =~ /^([^@]*)(@\d+)?$/;
		my $path = "$dir/$label-$name.pgbench";
		append_to_file($path, $scripts{$key});
		push @cmd, '-f', $path . ($weight // '');
	}
	push @cmd, $db;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $rc = $? >> 8;
	note "$label: " . join(' ', @cmd) . " -> $rc\n$out\n" . substr($err, 0, 2000);
	return ($rc, $out, $err);
}

# The race: bids and trades, through the functions and by plain SQL, each
# script one transaction at the given isolation level (PgBouncer does not
# pass the options startup parameter, and a SET would outlive the
# transaction on the pooled server connection).
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION pb_insert_trade(bot bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bidguard_trades (bot_id) VALUES (bot);
EXCEPTION WHEN exclusion_violation THEN NULL;
END $$;
});
sub race
{
	my ($iso) = @_;
	my $begin = "BEGIN ISOLATION LEVEL $iso;";
	return (
		'bid@3' => qq{\\set p random(1, 40)
$begin
SELECT bid_id FROM bidguard_create_bid('pb', 'p' || :p);
COMMIT;
},
		'withdraw@1' => qq{\\set p random(1, 40)
$begin
SELECT withdrawn FROM bidguard_withdraw_posting('pb', 'p' || :p);
COMMIT;
},
		'insert_bid@1' => qq{\\set p random(1, 40)
$begin
INSERT INTO bidguard_bids (marketplace_id, posting_id) VALUES ('pb', 'p' || :p) ON CONFLICT DO NOTHING;
COMMIT;
},
		'trade@3' => qq{\\set bot random(1, 6)
$begin
WITH r AS (SELECT * FROM bidguard_try_trade(:bot, '{"via": "pgbouncer"}', '0')),
     o AS (INSERT INTO pb_outcomes SELECT 'race', reason FROM r)
SELECT coalesce((SELECT trade_id FROM r), 0) AS tid \\gset
SELECT pg_sleep(0.005);
SELECT (bidguard_fill_trade(t)).changed FROM (SELECT :tid::bigint AS t) AS s WHERE t > 0;
COMMIT;
},
		'insert_trade@1' => qq{\\set bot random(1, 6)
$begin
SELECT pb_insert_trade(:bot);
COMMIT;
},
	);
}

for my $mode (qw(simple extended))
{
	for my $iso ('read committed', 'repeatable read', 'serializable')
	{
		my $label = "transaction pool, $mode protocol, $iso";
		(my $tag = "$mode-$iso") =~ s/ /_/g;
		my $retry = $iso eq 'read committed' ? '' : ' --max-tries=10';
		my ($rc, $out) = bpgbench($tag, 'tx', "-M $mode -c 12 -j 2 -T 3$retry", race($iso));
		is($rc, 0, "$label: pgbench succeeds");
		like($out, qr/number of transactions actually processed: [1-9]/, "$label: transactions ran");
		check_bid_invariants($node, $label);
		check_trade_invariants($node, $label);
	}
}
cmp_ok($node->safe_psql('postgres',
		q{SELECT count(*) FROM pb_outcomes WHERE reason = 'executed'}), '>', 0,
	'the races admitted trades');
cmp_ok(scalar(grep { (split /\|/)[2] eq 'tx' } split /\n/, scalar bpsql('pgbouncer', 'SHOW SERVERS')),
	'<=', 4, 'PgBouncer served the 12 clients with at most 4 server connections');

# bidguard_lock holds for the transaction, whichever server connection.
{
	my ($in, $aout, $aerr) = ('', '', '');
	my $a = IPC::Run::start([ 'psql', '-X', '-At', '-h', $dir, '-p', $port, '-U', 'postgres', '-d', 'tx' ],
		'<', \$in, '>', \$aout, '2>', \$aerr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$in = "BEGIN;\nSELECT bidguard_lock('pb', 'held');\n";
	pump $a until $aout =~ /^t$/m;
	is(scalar bpsql('tx', q{SELECT bidguard_lock('pb', 'held', '0')}), 'f',
		'transaction pool: a lock held by another client\'s open transaction is not obtained');
	$in .= "COMMIT;\n\\q\n";
	finish $a;
	is(scalar bpsql('tx', q{SELECT bidguard_lock('pb', 'held', '0')}), 't',
		'transaction pool: after its COMMIT it is free');
}

# Concurrency slots behind the transaction pool.  A transaction slot is
# held for the transaction, whichever server connection; a session slot is
# refused (55000) where the pool tells the server what it is, here with
# PgBouncer's connect_query setting bidguard.pool_mode.
{
	my ($in, $aout, $aerr) = ('', '', '');
	my $a = IPC::Run::start([ 'psql', '-X', '-At', '-h', $dir, '-p', $port, '-U', 'postgres', '-d', 'txg' ],
		'<', \$in, '>', \$aout, '2>', \$aerr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$in = "BEGIN;\nSELECT reason FROM bidguard_acquire_slot('pb-slot', 1);\n";
	pump $a until $aout =~ /^acquired$/m;
	is(scalar bpsql('txg', q{SELECT reason FROM bidguard_acquire_slot('pb-slot', 1, '20 ms')}), 'busy',
		'transaction pool: the slot of another client\'s open transaction is busy');
	$in .= "COMMIT;\n\\q\n";
	finish $a;
	is(scalar bpsql('txg', q{SELECT reason FROM bidguard_acquire_slot('pb-slot', 1)}), 'acquired',
		'transaction pool: after its COMMIT the slot is free');
	my ($rc, $out, $err) = bpsql('txg', q{SELECT * FROM bidguard_acquire_session_slot('pb-slot', 1)});
	isnt($rc, 0, 'transaction pool with bidguard.pool_mode = transaction: a session slot is refused');
	like($err, qr/session-scoped slots cannot be used behind a transaction pooler/,
		'... with the error that says why');
	($rc, $out, $err) = bpsql('txg', q{DO $$ BEGIN PERFORM bidguard_acquire_session_slot('pb-slot', 1);
		EXCEPTION WHEN object_not_in_prerequisite_state THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END $$});
	like($err, qr/sqlstate 55000/, '... SQLSTATE 55000');
	is(scalar bpsql('se', q{SELECT reason FROM bidguard_acquire_session_slot('pb-slot', 1)}), 'acquired',
		'session pool: a session slot is had');
	is(scalar bpsql('se', q{SELECT reason FROM bidguard_acquire_slot('pb-slot', 1)}), 'acquired',
		'session pool: the next client finds the slot free: server_reset_query DISCARD ALL released it');
}

# Named prepared statements in transaction mode.
{
	my ($rc, $out, $err) = bpgbench('prepared', 'tx', '-M prepared -c 8 -j 2 -t 50',
		'bid' => "\\set p random(1, 40)\nSELECT bid_id FROM bidguard_create_bid('pb', 'p' || :p);\n");
	if ($has_prepared)
	{
		is($rc, 0, "PgBouncer $version: pgbench -M prepared works in transaction mode");
	}
	else
	{
		isnt($rc, 0, "PgBouncer $version (< 1.21): pgbench -M prepared fails in transaction mode");
		like($err, qr/prepared statement "?\w+"? (does not exist|already exists)/,
			'... with the server saying a prepared statement does not exist (or exists)');
	}
	check_bid_invariants($node, 'after pgbench -M prepared');
}

# psycopg 3 prepares a query on its 5th execution (prepare_threshold=5).
SKIP:
{
	skip 'python3 with psycopg is not installed', 2
	  unless system('python3', '-c', 'import psycopg') == 0;
	my $py = q{
import sys, psycopg
conninfo, threshold = sys.argv[1], sys.argv[2]
kw = {} if threshold == 'default' else {'prepare_threshold': None}
with psycopg.connect(conninfo, autocommit=True, **kw) as conn:
    for i in range(10):
        conn.execute("SELECT created FROM bidguard_create_bid('pb', %s)", (f'py{i % 3}',)).fetchone()
print('ok')
};
	my $conninfo = "host=$dir port=$port user=postgres dbname=tx";
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'python3', '-c', $py, $conninfo, 'none' ], '<', \undef, '>', \$out, '2>', \$err);
	is($out, "ok\n", 'psycopg 3 with prepare_threshold=None works through the transaction pool')
	  or diag $err;
	($out, $err) = ('', '');
	IPC::Run::run([ 'python3', '-c', $py, $conninfo, 'default' ], '<', \undef, '>', \$out, '2>', \$err);
	if ($has_prepared)
	{
		is($out, "ok\n", "psycopg 3's default prepare_threshold works with PgBouncer $version" . '');
	}
	else
	{
		like($err, qr/prepared statement .* (does not exist|already exists)/,
			"psycopg 3's default prepare_threshold fails through the transaction pool of PgBouncer $version");
	}
}

# Statement mode: each statement is its own transaction.
{
	my ($rc, $out, $err) = bpsql('st', 'BEGIN');
	isnt($rc, 0, 'statement pool: a transaction block is refused');
	like($err, qr/transaction blocks not allowed in statement pooling mode/,
		'... by PgBouncer, with its message');
	is(scalar bpsql('st', q{SELECT bidguard_lock('pb', 'stmt')}), 't', 'statement pool: bidguard_lock answers');
	is(scalar bpsql('st', q{SELECT bidguard_lock('pb', 'stmt', '0')}), 't',
		'... and the lock ended with its statement: no lock outlives a call');
	($rc, $out) = bpgbench(
		'statement', 'st', '-M simple -c 12 -j 2 -T 3',
		'try' => "\\set bot random(1, 6)\nSELECT reason FROM bidguard_try_trade(:bot, '{\"via\": \"statement\"}', '0');\n",
		'bid' => "\\set p random(1, 40)\nSELECT bid_id FROM bidguard_create_bid('pb', 'p' || :p);\n");
	is($rc, 0, 'statement pool: single-statement calls race through it');
	check_bid_invariants($node, 'statement pool');
	check_trade_invariants($node, 'statement pool');
}

# Session mode: the whole flow, the lock held across the "exchange call".
{
	# (a session keeps its server connection: as many clients as the pool has)
	my ($rc, $out) = bpgbench('session', 'se', '-M prepared -c 4 -j 2 -T 3',
		'trade' => { race('read committed') }->{'trade@3'});
	is($rc, 0, 'session pool: the trade flow, with named prepared statements');
	check_trade_invariants($node, 'session pool');
}

is(bidguard_locks_held($node), '0', 'no bidguard lock is left');
$bouncer->kill_kill;
undef $bouncer;
$node->stop;
done_testing();
