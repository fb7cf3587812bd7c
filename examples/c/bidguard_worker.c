/*
 * examples/c/bidguard_worker.c
 *		The scanner and trader workers of the two incidents, made race-safe
 *		by bidguard, in C with libpq.
 *
 * The parent process registers the bots' cooldowns, forks --scanners scanner
 * processes and --traders trader processes, each with its own connection,
 * lets them run for --seconds, collects their counters through a pipe and
 * prints one line of JSON with the totals.  examples/README.md specifies the
 * options, the output and the behaviour; the Python and Node.js clients do
 * the same, so the three can run side by side on the same postings and bots.
 *
 * The bidguard part is a handful of SQL calls:
 *
 *	 scanner (scan_posting):	bidguard_create_bid, then
 *								bidguard_set_bid_status(bid, 'submitted')
 *								or, now and then, bidguard_withdraw_posting
 *	 trader (trade_bot):		BEGIN ISOLATION LEVEL READ COMMITTED;
 *								bidguard_try_trade; <the exchange>;
 *								bidguard_fill_trade or bidguard_fail_trade;
 *								COMMIT
 *
 * Everything else is plumbing: options, processes, retries and counting.
 *
 * Connection settings come from libpq's environment variables only (PGHOST,
 * PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...): every connection is
 * PQconnectdb("").  Every statement goes through PQexecParams, with its
 * values passed as parameters, never pasted into the SQL text.
 *
 * Build:	make -C examples/c				(PG_CONFIG=... picks the libpq)
 * Run:		examples/c/bidguard_worker --scanners 3 --traders 3 --seconds 5
 */
#define _XOPEN_SOURCE 700		/* random(), nanosleep(), sigaction(), ... */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define PROGNAME "bidguard_worker"

/* How often a transaction is run again after 40001/40P01 before giving up. */
#define MAX_RETRIES 20


/* ---------------------------------------------------------------- options */

/*
 * The isolation levels the scanners' transactions may run at (--isolation).
 * BEGIN cannot take its isolation level as a parameter, so the SQL text comes
 * from this table, never from the command line.
 */
static const struct
{
	const char *name;			/* as given to --isolation and printed */
	const char *begin_sql;
}			isolation_levels[] = {
	{"read committed", "BEGIN ISOLATION LEVEL READ COMMITTED"},
	{"repeatable read", "BEGIN ISOLATION LEVEL REPEATABLE READ"},
	{"serializable", "BEGIN ISOLATION LEVEL SERIALIZABLE"},
};

typedef struct Options
{
	int			scanners;
	int			traders;
	double		seconds;
	const char *marketplace;
	int			postings;
	int			bots;
	long long	first_bot;
	int			cooldown_ms;
	int			exchange_ms;
	const char *isolation;		/* the scanners' level: one of
								 * isolation_levels[].name */
	const char *scan_begin_sql; /* the matching BEGIN */
	const char *client;
} Options;

/* Set once by parse_options() before any fork; read-only afterwards. */
static Options opt = {
	.scanners = 2,
	.traders = 2,
	.seconds = 5,
	.marketplace = "example",
	.postings = 20,
	.bots = 4,
	.first_bot = 1,
	.cooldown_ms = 500,
	.exchange_ms = 20,
	.isolation = "read committed",
	.scan_begin_sql = "BEGIN ISOLATION LEVEL READ COMMITTED",
	.client = "c",
};

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: " PROGNAME " [OPTION]...\n"
			"Run bidguard scanner and trader workers against the database that libpq's\n"
			"environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, ...) name, then\n"
			"print one line of JSON with their totals.\n"
			"\n"
			"  --scanners N         scanner processes (0 = none)              [2]\n"
			"  --traders N          trading processes (0 = none)              [2]\n"
			"  --seconds S          how long the workers run                  [5]\n"
			"  --marketplace NAME   the marketplace id of every bid           [example]\n"
			"  --postings N         postings listed per feed batch            [20]\n"
			"  --bots N             bots traded, ids first-bot .. first-bot + N - 1  [4]\n"
			"  --first-bot ID       the first bot id                          [1]\n"
			"  --cooldown-ms MS     each bot's cooldown, registered at start  [500]\n"
			"  --exchange-ms MS     how long the simulated exchange takes     [20]\n"
			"  --isolation LEVEL    the scanners' level: read committed, repeatable read\n"
			"                       or serializable (trades always run at read committed)\n"
			"                                                                 [read committed]\n"
			"  --client NAME        tag written into bid_data and trade_data  [c]\n"
			"  -h, --help           show this help and exit\n");
}

/* Says what is wrong with the command line, shows the usage, exits with 2. */
static void
usage_error(const char *format,...)
{
	va_list		args;

	fputs(PROGNAME ": ", stderr);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
	usage(stderr);
	exit(2);
}

static long long
parse_integer(const char *option, const char *text, long long min, long long max)
{
	char	   *end;
	long long	value;

	errno = 0;
	value = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
		usage_error("invalid value for --%s: \"%s\" (expected an integer from %lld to %lld)",
					option, text, min, max);
	return value;
}

static void
parse_options(int argc, char **argv)
{
	enum
	{
		OPT_SCANNERS = 256, OPT_TRADERS, OPT_SECONDS, OPT_MARKETPLACE,
		OPT_POSTINGS, OPT_BOTS, OPT_FIRST_BOT, OPT_COOLDOWN_MS,
		OPT_EXCHANGE_MS, OPT_ISOLATION, OPT_CLIENT
	};
	static const struct option long_options[] = {
		{"scanners", required_argument, NULL, OPT_SCANNERS},
		{"traders", required_argument, NULL, OPT_TRADERS},
		{"seconds", required_argument, NULL, OPT_SECONDS},
		{"marketplace", required_argument, NULL, OPT_MARKETPLACE},
		{"postings", required_argument, NULL, OPT_POSTINGS},
		{"bots", required_argument, NULL, OPT_BOTS},
		{"first-bot", required_argument, NULL, OPT_FIRST_BOT},
		{"cooldown-ms", required_argument, NULL, OPT_COOLDOWN_MS},
		{"exchange-ms", required_argument, NULL, OPT_EXCHANGE_MS},
		{"isolation", required_argument, NULL, OPT_ISOLATION},
		{"client", required_argument, NULL, OPT_CLIENT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_SCANNERS:
				opt.scanners = (int) parse_integer("scanners", optarg, 0, 1000);
				break;
			case OPT_TRADERS:
				opt.traders = (int) parse_integer("traders", optarg, 0, 1000);
				break;
			case OPT_SECONDS:
				{
					char	   *end;
					double		s;

					errno = 0;
					s = strtod(optarg, &end);
					/* written so that NaN fails too */
					if (errno != 0 || end == optarg || *end != '\0' || !(s > 0 && s <= 86400 * 365))
						usage_error("invalid value for --seconds: \"%s\" (expected a number of seconds above 0)",
									optarg);
					opt.seconds = s;
				}
				break;
			case OPT_MARKETPLACE:
				if (optarg[0] == '\0')
					usage_error("--marketplace must not be empty");
				opt.marketplace = optarg;
				break;
			case OPT_POSTINGS:
				opt.postings = (int) parse_integer("postings", optarg, 1, 1000000);
				break;
			case OPT_BOTS:
				opt.bots = (int) parse_integer("bots", optarg, 1, 1000000);
				break;
			case OPT_FIRST_BOT:
				opt.first_bot = parse_integer("first-bot", optarg, LLONG_MIN, LLONG_MAX);
				break;
			case OPT_COOLDOWN_MS:
				opt.cooldown_ms = (int) parse_integer("cooldown-ms", optarg, 0, INT_MAX);
				break;
			case OPT_EXCHANGE_MS:
				opt.exchange_ms = (int) parse_integer("exchange-ms", optarg, 0, 3600000);
				break;
			case OPT_ISOLATION:
				{
					size_t		i;
					size_t		n = sizeof(isolation_levels) / sizeof(isolation_levels[0]);

					for (i = 0; i < n; i++)
						if (strcasecmp(optarg, isolation_levels[i].name) == 0)
							break;
					if (i == n)
						usage_error("invalid value for --isolation: \"%s\" (expected \"read committed\", "
									"\"repeatable read\" or \"serializable\")", optarg);
					opt.isolation = isolation_levels[i].name;
					opt.scan_begin_sql = isolation_levels[i].begin_sql;
				}
				break;
			case OPT_CLIENT:
				if (optarg[0] == '\0')
					usage_error("--client must not be empty");
				opt.client = optarg;
				break;
			case 'h':
				usage(stdout);
				exit(0);
			default:
				/* getopt_long has already said what was wrong */
				usage(stderr);
				exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument: \"%s\"", argv[optind]);
	if (opt.first_bot > LLONG_MAX - (opt.bots - 1))
		usage_error("--first-bot + --bots - 1 is beyond the bigint range");
}


/* -------------------------------------------------- time, sleep, signals */

/* The signal (SIGINT or SIGTERM) that asked this process to stop, or 0. */
static volatile sig_atomic_t stop_signal = 0;

static void
handle_stop_signal(int signo)
{
	stop_signal = signo;
}

static double
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* When the workers stop taking new work (CLOCK_MONOTONIC, shared by all). */
static double deadline;

static bool
time_is_up(void)
{
	return stop_signal != 0 || monotonic_seconds() >= deadline;
}

/* Sleeps for ms milliseconds, or less when a stop signal arrives. */
static void
pause_ms(double ms)
{
	struct timespec ts;
	struct timespec rest;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t) (ms / 1000);
	ts.tv_nsec = (long) ((ms - ts.tv_sec * 1000.0) * 1e6);
	while (nanosleep(&ts, &rest) != 0 && errno == EINTR && stop_signal == 0)
		ts = rest;
}

/* 0 .. n-1.  Each worker seeds random() with its pid and the time. */
static long
random_below(long n)
{
	return random() % n;
}


/* --------------------------------------------------------------- counters */

/*
 * What one process did.  Only committed work is counted, except for retries,
 * errors and orders_placed, which the exchange counts as orders arrive.
 */
typedef struct Counters
{
	long long	bids_created;
	long long	bids_existing;
	long long	bids_withdrawn;
	long long	trades_filled;
	long long	trades_failed;
	long long	trades_cooldown;
	long long	trades_busy;
	long long	orders_placed;	/* counted by the exchange, committed or not */
	long long	retries;
	long long	errors;
} Counters;

static void
counters_add(Counters *sum, const Counters *c)
{
	sum->bids_created += c->bids_created;
	sum->bids_existing += c->bids_existing;
	sum->bids_withdrawn += c->bids_withdrawn;
	sum->trades_filled += c->trades_filled;
	sum->trades_failed += c->trades_failed;
	sum->trades_cooldown += c->trades_cooldown;
	sum->trades_busy += c->trades_busy;
	sum->orders_placed += c->orders_placed;
	sum->retries += c->retries;
	sum->errors += c->errors;
}

/*
 * A worker's report to the parent, written to a pipe shared by all workers.
 * It is written with one write() of at most PIPE_BUF bytes, which POSIX makes
 * atomic, so reports of different workers never interleave.
 */
typedef struct Report
{
	int			worker;			/* 0 .. scanners + traders - 1 */
	Counters	counters;
} Report;

_Static_assert(sizeof(Report) <= PIPE_BUF, "a report must fit in one atomic pipe write");


/* ------------------------------------------------------------------- SQL */

typedef struct Worker
{
	int			index;			/* scanners first, then traders */
	char		name[32];		/* "scanner-1", "trader-2": the "worker" in
								 * bid_data and trade_data */
	PGconn	   *conn;
	Counters	counters;

	/*
	 * The client order id of an order that is on the exchange while its
	 * trade's transaction has not committed yet, else NULL.  Such a
	 * transaction is never retried: that would place a second order.
	 */
	const char *order_placed;
} Worker;

typedef enum TxResult
{
	TX_OK,						/* done, and committed (or rolled back on purpose) */
	TX_RETRY,					/* 40001 or 40P01: run the transaction again */
	TX_ERROR					/* anything else: reported on stderr */
} TxResult;

/*
 * Sorts a failed statement into TX_RETRY or TX_ERROR, by its SQLSTATE.
 *
 * 40001 serialization_failure: at REPEATABLE READ and SERIALIZABLE (the
 *	 scanners' --isolation) a transaction reads through the snapshot taken at
 *	 its first statement.  When bidguard, once it holds a posting's lock,
 *	 finds that its answer depends on a row committed after that snapshot
 *	 (another scanner's bid), it raises 40001 rather than act on stale data.
 *	 SERIALIZABLE may also raise it at any statement or at COMMIT.
 * 40P01 deadlock_detected: PostgreSQL broke a cycle of lock waits by ending
 *	 this transaction.
 *
 * Both mean that PostgreSQL rolled the whole transaction back: no bid, trade
 * or audit event of it exists, and its locks are gone.  So the transaction,
 * from its BEGIN, can simply run again (run_transaction does that): bidguard
 * decides afresh on a new snapshot, and, for instance, a second creator whose
 * snapshot was too old gets the first creator's bid on its retry.  Retrying
 * just the failed statement would not work: the transaction is aborted, and
 * its snapshot is the stale one.
 *
 * The one exception is a trade whose order is already on the exchange
 * (w->order_placed): the database forgot the trade, the exchange did not, and
 * running the transaction again would place a second order.  That is
 * reported as an error instead; see TRADE_BEGIN_SQL for why it does not
 * happen.
 */
static TxResult
sql_failure(Worker *w, const PGresult *res, const char *sql)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	bool		retryable = sqlstate != NULL &&
		(strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);

	if (retryable && w->order_placed == NULL)
		return TX_RETRY;

	/* PQresultErrorMessage ends with a newline; NULL res means out of memory */
	fprintf(stderr, PROGNAME ": %s: %s    in: %s\n", w->name,
			res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(w->conn), sql);
	if (retryable)
		fprintf(stderr, PROGNAME ": %s: not retried: order %s is already on the exchange\n",
				w->name, w->order_placed);
	return TX_ERROR;
}

/* Runs a statement that returns no rows: BEGIN, COMMIT, ROLLBACK. */
static TxResult
exec_command(Worker *w, const char *sql)
{
	PGresult   *res = PQexecParams(w->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	TxResult	result = TX_OK;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		result = sql_failure(w, res, sql);
	PQclear(res);
	return result;
}

/*
 * Runs a query that returns exactly one row, as every bidguard function used
 * here does.  On TX_OK, *res holds that row and the caller PQclear()s it.
 */
static TxResult
exec_row(Worker *w, const char *sql, int nparams, const char *const *params,
		 PGresult **res)
{
	TxResult	result;

	*res = PQexecParams(w->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(*res) == PGRES_TUPLES_OK && PQntuples(*res) == 1)
		return TX_OK;

	if (PQresultStatus(*res) == PGRES_TUPLES_OK)
	{
		fprintf(stderr, PROGNAME ": %s: expected one row, got %d\n    in: %s\n",
				w->name, PQntuples(*res), sql);
		result = TX_ERROR;
	}
	else
		result = sql_failure(w, *res, sql);
	PQclear(*res);
	*res = NULL;
	return result;
}

static bool
field_is_true(const PGresult *res, int column)
{
	return !PQgetisnull(res, 0, column) && strcmp(PQgetvalue(res, 0, column), "t") == 0;
}

/*
 * A transaction body: runs BEGIN ... COMMIT (or ROLLBACK) and counts what it
 * did in *done, which only reaches the worker's counters if it returns TX_OK.
 */
typedef TxResult (*TxBody) (Worker *w, void *arg, Counters *done);

/*
 * Runs body, and runs it again from the start on 40001/40P01 (see
 * sql_failure), at most MAX_RETRIES times, after a short random backoff that
 * grows with each retry, so that the colliding workers do not collide again.
 */
static TxResult
run_transaction(Worker *w, TxBody body, void *arg)
{
	for (int retry = 0;; retry++)
	{
		Counters	done = {0};
		TxResult	result = body(w, arg, &done);
		PGTransactionStatusType txstatus;

		if (result == TX_OK)
		{
			counters_add(&w->counters, &done);
			return TX_OK;
		}

		/*
		 * The body stopped part-way: end its transaction so that the
		 * connection is idle again.  (After a failed COMMIT it already is.)
		 */
		txstatus = PQtransactionStatus(w->conn);
		if ((txstatus == PQTRANS_INTRANS || txstatus == PQTRANS_INERROR) &&
			exec_command(w, "ROLLBACK") != TX_OK)
			return TX_ERROR;

		if (result == TX_ERROR)
			return TX_ERROR;
		if (retry == MAX_RETRIES)
		{
			fprintf(stderr, PROGNAME ": %s: gave up after %d retries on serialization failures or deadlocks\n",
					w->name, MAX_RETRIES);
			return TX_ERROR;
		}
		w->counters.retries++;
		pause_ms(1 + random_below(5L << (retry < 4 ? retry : 4)));	/* 1-5 ms, ... 1-80 ms */
	}
}


/* --------------------------------------------------------------- scanner */

/*
 * One look at one posting: get its bid, creating it if there is none, and
 * submit the bid we created; or, one time in 20 when the posting already had
 * a bid, withdraw it, as a scanner does when a posting changes.
 *
 * It is one transaction, so the posting's lock, which bidguard_create_bid
 * takes, is held until COMMIT: nobody can withdraw our bid between its
 * creation and its submission, and the other scanners wait for us and then
 * see the submitted bid.
 */
static TxResult
scan_posting(Worker *w, void *arg, Counters *done)
{
	const char *posting = arg;
	PGresult   *res;
	TxResult	result;
	char		bid_id[24];
	bool		created;

	if ((result = exec_command(w, opt.scan_begin_sql)) != TX_OK)
		return result;

	/*
	 * However many scanners ask at once, exactly one gets created = true, and
	 * all of them get the same bid_id.
	 */
	{
		const char *params[] = {opt.marketplace, posting, opt.client, w->name};

		result = exec_row(w,
						  "SELECT bid_id, created, status FROM bidguard_create_bid($1, $2,"
						  " jsonb_build_object('client', $3::text, 'worker', $4::text))",
						  4, params, &res);
		if (result != TX_OK)
			return result;
		snprintf(bid_id, sizeof(bid_id), "%s", PQgetvalue(res, 0, 0));
		created = field_is_true(res, 1);
		PQclear(res);
	}

	if (created)
	{
		const char *params[] = {bid_id};

		done->bids_created++;
		result = exec_row(w,
						  "SELECT changed FROM bidguard_set_bid_status($1::bigint, 'submitted')",
						  1, params, &res);
		if (result != TX_OK)
			return result;
		if (!field_is_true(res, 0))
		{
			fprintf(stderr, PROGNAME ": %s: bid %s, just created, was not submitted\n", w->name, bid_id);
			PQclear(res);
			return TX_ERROR;
		}
		PQclear(res);
	}
	else
	{
		done->bids_existing++;
		if (random_below(20) == 0)
		{
			const char *params[] = {opt.marketplace, posting};

			result = exec_row(w,
							  "SELECT withdrawn FROM bidguard_withdraw_posting($1, $2, 'rescan')",
							  2, params, &res);
			if (result != TX_OK)
				return result;
			/* true only for the call that withdrew it */
			if (field_is_true(res, 0))
				done->bids_withdrawn++;
			PQclear(res);
		}
	}

	return exec_command(w, "COMMIT");
}

/*
 * The marketplace feed: a fresh batch of --postings postings every 100 ms,
 * ids "<batch>-<n>" where batch is the Unix time in milliseconds / 100.  Every
 * scanner sees the same new postings at the same moment, which is what made
 * the incident's scanners collide.
 */
static void
pick_posting(char *posting, size_t size)
{
	struct timespec now;
	long long	batch;

	clock_gettime(CLOCK_REALTIME, &now);
	batch = ((long long) now.tv_sec * 1000 + now.tv_nsec / 1000000) / 100;
	snprintf(posting, size, "%lld-%ld", batch, random_below(opt.postings));
}

static void
run_scanner(Worker *w)
{
	while (!time_is_up())
	{
		char		posting[48];

		pick_posting(posting, sizeof(posting));
		if (run_transaction(w, scan_posting, posting) != TX_OK)
		{
			w->counters.errors++;
			break;
		}
	}
}


/* ---------------------------------------------------------------- trader */

typedef enum TradeOutcome
{
	TRADE_FILLED,
	TRADE_FAILED,
	TRADE_COOLDOWN,
	TRADE_BUSY
} TradeOutcome;

/*
 * The trade transaction always runs at READ COMMITTED, whatever --isolation
 * says (that is the scanners' level).  Once the order is on the exchange, the
 * transaction must commit: rolling it back and running it again would place
 * a second order.  At READ COMMITTED nothing after bidguard_try_trade can
 * fail with 40001, because the bot's lock already puts the admissions of one
 * bot in order; at SERIALIZABLE recording the fill, or the COMMIT, could
 * (predicate-lock conflicts with other transactions).  bidguard's cooldown guarantee holds at
 * every isolation level; this choice only protects the exchange.
 */
#define TRADE_BEGIN_SQL "BEGIN ISOLATION LEVEL READ COMMITTED"

typedef struct TradeAttempt
{
	const char *bot_id;			/* in: the bot, as text */
	TradeOutcome outcome;		/* out */
	double		retry_after;	/* out: seconds (the cooldown when executed) */
} TradeAttempt;

/*
 * The simulated exchange: takes --exchange-ms, rejects one order in ten, and
 * counts every order it receives, whatever becomes of the trade (orders_placed).
 * A real one would receive client_order_id with the order.
 */
static bool
exchange_place_order(Worker *w, const char *client_order_id)
{
	(void) client_order_id;
	w->counters.orders_placed++;
	pause_ms(opt.exchange_ms);
	return random_below(10) != 0;
}

/* Records the exchange's answer: fills or fails the open trade. */
static TxResult
record_exchange_answer(Worker *w, const char *trade_id, bool accepted)
{
	const char *params[] = {trade_id};
	PGresult   *res;
	TxResult	result;

	if (accepted)
		result = exec_row(w, "SELECT changed FROM bidguard_fill_trade($1::bigint)",
						  1, params, &res);
	else
		result = exec_row(w, "SELECT changed FROM bidguard_fail_trade($1::bigint, 'rejected by the exchange')",
						  1, params, &res);
	if (result != TX_OK)
		return result;
	if (!field_is_true(res, 0))
	{
		fprintf(stderr, PROGNAME ": %s: trade %s, just admitted, did not change status\n",
				w->name, trade_id);
		result = TX_ERROR;
	}
	PQclear(res);
	return result;
}

/*
 * One attempt to trade one bot, as one transaction.
 */
static TxResult
trade_bot(Worker *w, void *arg, Counters *done)
{
	TradeAttempt *t = arg;
	const char *params[] = {t->bot_id, opt.client, w->name};
	PGresult   *res;
	TxResult	result;
	char		reason[16];
	char		trade_id[24];
	char		atomic_event_id[40];

	if ((result = exec_command(w, TRADE_BEGIN_SQL)) != TX_OK)
		return result;

	/*
	 * Takes the bot's lock and checks its cooldown under it.  wait '0': when
	 * another trader holds the lock, answer 'busy' at once instead of queueing
	 * behind it.  retry_after is an interval; its epoch is the seconds (NULL
	 * when busy).
	 */
	result = exec_row(w,
					  "SELECT trade_id, executed, reason, extract(epoch FROM retry_after),"
					  " atomic_event_id"
					  " FROM bidguard_try_trade($1::bigint,"
					  " jsonb_build_object('client', $2::text, 'worker', $3::text), '0')",
					  3, params, &res);
	if (result != TX_OK)
		return result;
	snprintf(trade_id, sizeof(trade_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(reason, sizeof(reason), "%s", PQgetvalue(res, 0, 2));
	t->retry_after = PQgetisnull(res, 0, 3) ? 0 : strtod(PQgetvalue(res, 0, 3), NULL);
	snprintf(atomic_event_id, sizeof(atomic_event_id), "%s", PQgetvalue(res, 0, 4));
	if (strcmp(reason, "executed") == 0 &&
		(!field_is_true(res, 1) || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 4)))
		strcpy(reason, "?");	/* reported below */
	PQclear(res);

	if (strcmp(reason, "executed") == 0)
	{
		bool		accepted;

		/*
		 * An open trade is in, and this transaction holds the bot's lock
		 * until it ends, with no TTL that could run out while the exchange is
		 * slow.  So the order goes to the exchange *inside* the transaction:
		 * meanwhile any other trader gets 'busy' for this bot, and after our
		 * COMMIT it sees our trade and gets 'cooldown'.  The trade, its
		 * outcome and its audit events commit together; if this process
		 * dies, loses its connection or rolls back before COMMIT, the trade
		 * never existed, the bot's cooldown is given back, and the lock goes
		 * with the transaction.
		 *
		 * atomic_event_id is the trade's idempotency key (the id of its
		 * admission event in bidguard_events), so it is the client order id:
		 * one trade, one id.  An exchange that sees the same client order id
		 * again (a resend after a timeout) recognises the duplicate instead
		 * of placing a second order, and every order can be matched to its
		 * trade.  Should the transaction fail after the order went out (a
		 * lost connection), the trade is gone but the order is not: a real
		 * worker would look it up by its client order id and cancel it.
		 *
		 * From here on this transaction must commit, not be run again (see
		 * TRADE_BEGIN_SQL): w->order_placed tells sql_failure so.
		 */
		w->order_placed = atomic_event_id;
		accepted = exchange_place_order(w, atomic_event_id);
		result = record_exchange_answer(w, trade_id, accepted);
		if (result == TX_OK)
		{
			t->outcome = accepted ? TRADE_FILLED : TRADE_FAILED;
			if (accepted)
				done->trades_filled++;
			else
				done->trades_failed++;
			result = exec_command(w, "COMMIT");
		}
		w->order_placed = NULL;
		return result;
	}
	else if (strcmp(reason, "cooldown") == 0)
	{
		/* Too soon: nothing was written.  Not before retry_after. */
		t->outcome = TRADE_COOLDOWN;
		done->trades_cooldown++;
		return exec_command(w, "COMMIT");
	}
	else if (strcmp(reason, "busy") == 0)
	{
		/*
		 * Another worker is trading this bot right now and holds its lock
		 * until its COMMIT.  Nothing to keep here: end the transaction.
		 */
		t->outcome = TRADE_BUSY;
		done->trades_busy++;
		return exec_command(w, "ROLLBACK");
	}

	fprintf(stderr, PROGNAME ": %s: unexpected answer from bidguard_try_trade for bot %s (reason %s)\n",
			w->name, t->bot_id, reason);
	return TX_ERROR;
}

/*
 * Loops over the bots, round robin, trading each bot that is due; when none
 * is, sleeps until the first one is.
 */
static void
run_trader(Worker *w)
{
	/* when each bot may be tried next, in monotonic seconds (0: now) */
	double	   *due = calloc((size_t) opt.bots, sizeof(*due));
	int			next = 0;		/* round-robin cursor */

	if (due == NULL)
	{
		fprintf(stderr, PROGNAME ": %s: out of memory\n", w->name);
		w->counters.errors++;
		return;
	}

	while (!time_is_up())
	{
		double		now = monotonic_seconds();
		double		first_due = deadline;
		int			bot = -1;
		char		bot_id[24];
		TradeAttempt t;

		for (int k = 0; k < opt.bots; k++)
		{
			int			i = (next + k) % opt.bots;

			if (due[i] <= now)
			{
				bot = i;
				break;
			}
			if (due[i] < first_due)
				first_due = due[i];
		}
		if (bot < 0)
		{
			pause_ms((first_due - now) * 1000);
			continue;
		}
		next = (bot + 1) % opt.bots;

		snprintf(bot_id, sizeof(bot_id), "%lld", opt.first_bot + bot);
		t.bot_id = bot_id;
		if (run_transaction(w, trade_bot, &t) != TX_OK)
		{
			w->counters.errors++;
			break;
		}

		now = monotonic_seconds();
		switch (t.outcome)
		{
			case TRADE_FILLED:
				/* the cooldown runs from the fill, which has just committed */
				due[bot] = now + t.retry_after;
				break;
			case TRADE_FAILED:
				/* a failed trade does not count: the cooldown was given back */
				due[bot] = now;
				break;
			case TRADE_COOLDOWN:
				due[bot] = now + t.retry_after;
				break;
			case TRADE_BUSY:
				/* about the time the other worker's exchange call takes */
				due[bot] = now + opt.exchange_ms / 1000.0;
				break;
		}
	}
	free(due);
}


/* --------------------------------------------------------------- workers */

static void
worker_name(int index, char *name, size_t size)
{
	if (index < opt.scanners)
		snprintf(name, size, "scanner-%d", index + 1);
	else
		snprintf(name, size, "trader-%d", index - opt.scanners + 1);
}

/* The body of a forked worker process; returns its exit status. */
static int
worker_main(int index, int report_fd)
{
	Worker		w = {.index = index};
	Report		report;
	struct timespec now;
	ssize_t		written;

	worker_name(index, w.name, sizeof(w.name));
	clock_gettime(CLOCK_REALTIME, &now);
	srandom((unsigned) getpid() ^ (unsigned) now.tv_sec ^ (unsigned) now.tv_nsec);

	w.conn = PQconnectdb("");
	if (PQstatus(w.conn) != CONNECTION_OK)
	{
		fprintf(stderr, PROGNAME ": %s: %s", w.name, PQerrorMessage(w.conn));
		w.counters.errors++;
	}
	else if (index < opt.scanners)
		run_scanner(&w);
	else
		run_trader(&w);
	PQfinish(w.conn);

	report.worker = index;
	report.counters = w.counters;
	do
		written = write(report_fd, &report, sizeof(report));
	while (written < 0 && errno == EINTR);
	if (written != (ssize_t) sizeof(report))
	{
		perror(PROGNAME ": writing the report");
		return 1;
	}
	return 0;
}


/* ---------------------------------------------------------------- parent */

/* Registers every bot with the cooldown of --cooldown-ms, on a connection of its own. */
static bool
register_cooldowns(void)
{
	PGconn	   *conn = PQconnectdb("");
	char		cooldown[32];
	bool		ok = true;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, PROGNAME ": %s", PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	snprintf(cooldown, sizeof(cooldown), "%d milliseconds", opt.cooldown_ms);
	for (int i = 0; i < opt.bots && ok; i++)
	{
		char		bot_id[24];
		const char *params[] = {bot_id, cooldown};
		PGresult   *res;

		snprintf(bot_id, sizeof(bot_id), "%lld", opt.first_bot + i);
		res = PQexecParams(conn, "SELECT bidguard_set_cooldown($1::bigint, $2::interval)",
						   2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, PROGNAME ": registering bot %s: %s", bot_id,
					res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
			ok = false;
		}
		PQclear(res);
	}
	PQfinish(conn);
	return ok;
}

static void
signal_workers(const pid_t *pids, int n, int signo)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], signo);
}

/* Reads exactly size bytes, unless EOF or an error comes first. */
static ssize_t
read_full(int fd, void *buf, size_t size)
{
	size_t		got = 0;

	while (got < size)
	{
		ssize_t		n = read(fd, (char *) buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? n : (ssize_t) got;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

static void
print_json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *) s; *p != '\0'; p++)
	{
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void
print_totals(const Counters *c)
{
	long long	trades_executed = c->trades_filled + c->trades_failed;

	printf("{\"client\": ");
	print_json_string(opt.client);
	printf(", \"scanners\": %d, \"traders\": %d, \"seconds\": %.15g, \"isolation\": \"%s\"",
		   opt.scanners, opt.traders, opt.seconds, opt.isolation);
	printf(", \"bid_calls\": %lld, \"bids_created\": %lld, \"bids_existing\": %lld, \"bids_withdrawn\": %lld",
		   c->bids_created + c->bids_existing, c->bids_created, c->bids_existing, c->bids_withdrawn);
	printf(", \"trade_calls\": %lld, \"trades_executed\": %lld, \"trades_filled\": %lld, \"trades_failed\": %lld",
		   trades_executed + c->trades_cooldown + c->trades_busy, trades_executed,
		   c->trades_filled, c->trades_failed);
	printf(", \"trades_cooldown\": %lld, \"trades_busy\": %lld, \"orders_placed\": %lld",
		   c->trades_cooldown, c->trades_busy, c->orders_placed);
	printf(", \"retries\": %lld, \"errors\": %lld}\n", c->retries, c->errors);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	int			nworkers;
	int			started = 0;
	pid_t	   *pids;
	bool	   *reported;
	int			pipefd[2];
	bool		failed = false;
	bool		forwarded = false;
	Counters	total = {0};
	Report		report;
	ssize_t		n;

	parse_options(argc, argv);

	/*
	 * SIGINT/SIGTERM only set stop_signal, in the parent and (inherited) in
	 * every worker: a worker finishes the transaction in hand, reports and
	 * exits; the parent passes the signal on to the workers.  No SA_RESTART,
	 * so that sleeps and waits are cut short.
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (!register_cooldowns())
		return 1;

	nworkers = opt.scanners + opt.traders;
	pids = calloc((size_t) nworkers + 1, sizeof(*pids));
	reported = calloc((size_t) nworkers + 1, sizeof(*reported));
	if (pids == NULL || reported == NULL || pipe(pipefd) != 0)
	{
		perror(PROGNAME);
		return 1;
	}

	/*
	 * Each worker opens its own connection after the fork: a libpq connection
	 * must never be used by two processes.  (register_cooldowns has closed
	 * the parent's.)
	 */
	deadline = monotonic_seconds() + opt.seconds;
	fflush(NULL);				/* or the children would flush our buffers too */
	for (int i = 0; i < nworkers && stop_signal == 0; i++)
	{
		pid_t		pid = fork();

		if (pid < 0)
		{
			perror(PROGNAME ": fork");
			failed = true;
			break;
		}
		if (pid == 0)
		{
			int			status;

			close(pipefd[0]);
			free(pids);
			free(reported);
			status = worker_main(i, pipefd[1]);
			close(pipefd[1]);
			_exit(status);		/* not exit(): the atexit handlers are the
								 * parent's */
		}
		pids[i] = pid;
		started++;
	}
	close(pipefd[1]);

	if (failed)
		signal_workers(pids, started, SIGTERM);

	/*
	 * Collect one report per worker.  EOF comes when every worker has closed
	 * its end of the pipe, that is, has exited.
	 */
	for (;;)
	{
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		int			ready;

		if (stop_signal != 0 && !forwarded)
		{
			signal_workers(pids, started, SIGTERM);
			forwarded = true;
		}
		ready = poll(&pfd, 1, 200);
		if (ready < 0 && errno != EINTR)
		{
			perror(PROGNAME ": poll");
			failed = true;
			break;
		}
		if (ready <= 0)
			continue;			/* timeout, or EINTR: look at stop_signal again */
		n = read_full(pipefd[0], &report, sizeof(report));
		if (n == 0)
			break;
		if (n != (ssize_t) sizeof(report) || report.worker < 0 || report.worker >= started)
		{
			fprintf(stderr, PROGNAME ": garbled report from a worker\n");
			failed = true;
			break;
		}
		reported[report.worker] = true;
		counters_add(&total, &report.counters);
	}
	close(pipefd[0]);

	for (int i = 0; i < started; i++)
	{
		int			status;
		char		name[32];

		while (waitpid(pids[i], &status, 0) < 0)
		{
			if (errno != EINTR)
			{
				perror(PROGNAME ": waitpid");
				status = -1;
				break;
			}
			if (stop_signal != 0 && !forwarded)
			{
				signal_workers(pids, started, SIGTERM);
				forwarded = true;
			}
		}
		worker_name(i, name, sizeof(name));
		if (status == -1)
			;					/* reported above */
		else if (WIFSIGNALED(status))
			fprintf(stderr, PROGNAME ": worker %s (pid %d) was killed by signal %d\n",
					name, (int) pids[i], WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			fprintf(stderr, PROGNAME ": worker %s (pid %d) exited with status %d\n",
					name, (int) pids[i], WEXITSTATUS(status));
		else if (!reported[i])
			fprintf(stderr, PROGNAME ": worker %s (pid %d) exited without a report\n",
					name, (int) pids[i]);
		else
			continue;
		total.errors++;			/* a worker that died counts as an error */
	}
	free(pids);
	free(reported);

	if (stop_signal != 0)
	{
		fprintf(stderr, PROGNAME ": stopped by signal %d\n", (int) stop_signal);
		return 128 + stop_signal;
	}

	print_totals(&total);
	if (fflush(stdout) != 0)
	{
		perror(PROGNAME ": stdout");
		return 1;
	}
	return (failed || total.errors > 0) ? 1 : 0;
}
