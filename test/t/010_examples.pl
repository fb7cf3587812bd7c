
# Copyright (c) bidguard contributors

# test/t/010_examples.pl
#	  The three example clients of examples/ (Python with psycopg 3, Node.js
#	  with pg, C with libpq), run side by side, as a user would run them, on
#	  the same marketplace feed and the same bots: 2 scanner and 2 trading
#	  processes each, every client at a different isolation level, twice,
#	  rotating the levels.  After each run:
#	    - every client exited 0, reported no error, and did real work (bids
#	      created and found, trades executed and refused);
#	    - what each client says it committed is what the tables hold: its
#	      bids (bid_data->>'client'), its trades, filled and failed
#	      (trade_data->>'client'), and one order at the exchange per trade;
#	      the withdrawals all clients report are the withdrawn bids;
#	    - its sums add up (calls = outcomes);
#	    - the invariants of SPEC §9 (check_bid_invariants,
#	      check_trade_invariants): no second active bid, no trade inside the
#	      cooldown, every row with its events, the audit views empty, no lock
#	      left behind.
#	  Finally each client refuses a bad option with a usage message and exit
#	  status 2.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use File::Spec;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BidguardTest;

my $SECONDS = 4;
my $COOLDOWN_MS = 200;
my $BOTS = 4;
my $src = $ENV{BIDGUARD_SRCDIR} // File::Spec->rel2abs("$FindBin::RealBin/../..");
my $examples = "$src/examples";
my $python = $ENV{PYTHON} // '/usr/bin/python3';

my $node = bidguard_node('examples');

# The C client is built here, as a user would build it.
my ($out, $err) = ('', '');
IPC::Run::run([ 'make', '-s', '-C', "$examples/c" ], '>', \$out, '2>', \$err)
  or BAIL_OUT("make -C examples/c failed: $out$err");
ok(-x "$examples/c/bidguard_worker", 'the C client builds');
ok(-d "$examples/node/node_modules/pg",
	'the Node.js client\'s dependencies are installed (scripts/deps.sh runs npm ci)')
  or BAIL_OUT('run scripts/deps.sh (npm ci in examples/node)');

my %command = (
	python => [ $python, "$examples/python/bidguard_worker.py" ],
	node => [ 'node', "$examples/node/worker.js" ],
	c => ["$examples/c/bidguard_worker"],);
my @clients = qw(python node c);

local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
delete $ENV{PGUSER};

my @levels = ('read committed', 'repeatable read', 'serializable');

for my $run (1 .. 2)
{
	my $marketplace = "examples-$run";
	my (%handle, %stdout, %stderr, %tag, %level);
	for my $i (0 .. $#clients)
	{
		my $client = $clients[$i];
		$tag{$client} = "$client-$run";
		$level{$client} = $levels[ ($i + $run - 1) % 3 ];
		$stdout{$client} = $stderr{$client} = '';
		$handle{$client} = IPC::Run::start(
			[
				@{ $command{$client} },
				'--scanners' => 2,
				'--traders' => 2,
				'--seconds' => $SECONDS,
				'--marketplace' => $marketplace,
				'--postings' => 10,
				'--bots' => $BOTS,
				'--cooldown-ms' => $COOLDOWN_MS,
				'--exchange-ms' => 10,
				'--isolation' => $level{$client},
				'--client' => $tag{$client},
			],
			'>', \$stdout{$client},
			'2>', \$stderr{$client},
			IPC::Run::timeout($SECONDS + 120));
	}

	my %r;
	my $withdrawn = 0;
	for my $client (@clients)
	{
		my $label = "run $run, $client at $level{$client}";
		my $ok = eval { $handle{$client}->finish };
		is($ok && $handle{$client}->result(0), 0, "$label: exit status 0")
		  or diag("stderr: $stderr{$client}");
		my $r = eval { decode_json($stdout{$client}) };
		ok($r, "$label: one line of JSON") or do
		{
			diag("stdout: $stdout{$client}\nstderr: $stderr{$client}");
			next;
		};
		$r{$client} = $r;
		note("$label: $stdout{$client}");
		is($r->{errors}, 0, "$label: no errors");
		is($r->{client}, $tag{$client}, "$label: the tag");
		is($r->{isolation}, $level{$client}, "$label: the isolation level");

		# the sums add up
		is($r->{bid_calls}, $r->{bids_created} + $r->{bids_existing},
			"$label: bid calls = created + existing");
		is($r->{trade_calls},
			$r->{trades_executed} + $r->{trades_cooldown} + $r->{trades_busy},
			"$label: trade calls = executed + cooldown + busy");
		is($r->{trades_executed}, $r->{trades_filled} + $r->{trades_failed},
			"$label: executed = filled + failed");
		is($r->{orders_placed}, $r->{trades_executed},
			"$label: one order at the exchange per trade executed");

		# it did real work
		cmp_ok($r->{bids_created}, '>', 0, "$label: created bids");
		cmp_ok($r->{bids_existing}, '>', 0, "$label: found bids");
		cmp_ok($r->{trades_executed}, '>', 0, "$label: executed trades");
		cmp_ok($r->{trades_cooldown} + $r->{trades_busy},
			'>', 0, "$label: was refused trades");

		# what it committed is what the tables hold
		my $tag = $tag{$client};
		is( $node->safe_psql(
				'postgres', qq{
			SELECT count(*) FROM bidguard_bids
			 WHERE bid_data->>'client' = '$tag' AND marketplace_id = '$marketplace'}
			),
			$r->{bids_created},
			"$label: its bids in bidguard_bids");
		is( $node->safe_psql(
				'postgres', qq{
			SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'filled')
			       || ' ' || count(*) FILTER (WHERE status = 'failed')
			  FROM bidguard_trades WHERE trade_data->>'client' = '$tag'}
			),
			"$r->{trades_executed} $r->{trades_filled} $r->{trades_failed}",
			"$label: its trades, filled and failed, in bidguard_trades");
		$withdrawn += $r->{bids_withdrawn};
	}

	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM bidguard_bids
		 WHERE marketplace_id = '$marketplace' AND status = 'withdrawn'
		   AND status_reason = 'rescan'}
		),
		$withdrawn,
		"run $run: the withdrawals the clients report are the withdrawn bids");
	cmp_ok(
		$node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM (SELECT posting_id FROM bidguard_bids
		                       WHERE marketplace_id = '$marketplace'
		                       GROUP BY posting_id
		                      HAVING count(DISTINCT bid_data->>'client') > 1) AS p}
		),
		'>', 0,
		"run $run: the clients bid on the same postings");

	check_bid_invariants($node, "run $run");
	check_trade_invariants($node, "run $run");
	is( $node->safe_psql(
			'postgres', q{
		SELECT (SELECT count(*) FROM bidguard_duplicate_active_bids) ||
		       ' ' || (SELECT count(*) FROM bidguard_cooldown_violations)}
		),
		'0 0',
		"run $run: bidguard_duplicate_active_bids and bidguard_cooldown_violations are empty");
}

# A bad option: a usage message and exit status 2, nothing done.
for my $client (@clients)
{
	my ($o, $e) = ('', '');
	IPC::Run::run([ @{ $command{$client} }, '--isolation', 'read uncommitted' ],
		'>', \$o, '2>', \$e);
	is($? >> 8, 2, "$client: a bad --isolation exits 2");
	like($e, qr/isolation/i, "$client: and says what was wrong");
	is($o, '', "$client: and prints nothing on stdout");
}

# The Node rate-limit example: 9 actions at 3 per second take two windows
# of waiting (about 2 s), each refusal retried after retry_after, and no
# window of a second held more than 3 (the actions' own times trail the
# decisions' by the INSERT's microseconds: a window of 0.95 s is checked).
{
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'node', "$examples/node/rate_limit.js", '--calls', '9', '--max', '3',
			'--per', '1 second', '--key', 'node:test' ],
		'<', \undef, '>', \$o, '2>', \$e, IPC::Run::timeout(60));
	is($? >> 8, 0, 'node rate_limit.js runs') or diag $e;
	my ($calls, $refusals, $seconds) = $o =~ /"calls":(\d+),"refusals":(\d+),"seconds":([\d.]+)/;
	is($calls, 9, 'node rate_limit.js made its 9 calls');
	cmp_ok($refusals // 0, '>=', 2, "refused at least twice, retried after retry_after ($refusals)");
	cmp_ok($seconds // 0, '>=', 1.9, "9 at 3 per second take two windows of waiting ($seconds s)");
	cmp_ok($seconds // 99, '<', 6, 'and not much more: the retries slept retry_after, not longer');
	is( $node->safe_psql(
			'postgres', q{
		SELECT count(*) FROM rate_limited_actions AS a
		 WHERE (SELECT count(*) FROM rate_limited_actions AS o
		         WHERE o.key = a.key AND o.at > a.at - interval '0.95 second' AND o.at <= a.at) > 3}),
		'0', 'no second held more than 3 of its actions');
}

$node->stop;
done_testing();
