#!/usr/bin/env python3
"""bidguard_worker.py -- scanner and trading workers, race-safe through bidguard.

The two incidents bidguard exists for, as worker processes would run them:

* Scanners watch a marketplace feed and bid on every new posting.  Several
  scanners see the same posting at the same moment; each asked "is there a
  bid?", was told "no", and inserted one.  Here every scanner calls
  bidguard_create_bid(): one of them creates the bid, the others get it.

* Trading workers (Celery tasks in the incident) execute a bot's trade at most
  once per cooldown.  Two workers both passed the cooldown check and both
  traded.  Here the task calls bidguard_try_trade(), which takes the bot's lock
  inside PostgreSQL and checks the cooldown under it; the lock is held until
  the task's transaction ends, across the exchange call.  No Redis, no TTL.

Run it against a database where CREATE EXTENSION bidguard has been run; the
connection comes from libpq's environment (PGHOST, PGPORT, PGDATABASE, PGUSER,
PGPASSWORD):

    python3 bidguard_worker.py --scanners 4 --traders 4 --seconds 10

It prints one line of JSON with what the workers did (see examples/README.md,
which the Node.js and C clients follow too).

Needs psycopg 3 (Debian: apt-get install python3-psycopg; elsewhere:
pip install "psycopg[binary]").
"""

import argparse
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

ISOLATION_LEVELS = {
    "read committed": psycopg.IsolationLevel.READ_COMMITTED,
    "repeatable read": psycopg.IsolationLevel.REPEATABLE_READ,
    "serializable": psycopg.IsolationLevel.SERIALIZABLE,
}

FEED_BATCH_MS = 100     # the feed lists a fresh batch of postings this often
WITHDRAW_ONE_IN = 20    # a scanner that finds a bid withdraws it one time in 20
REJECT_ONE_IN = 10      # the simulated exchange rejects one order in 10
MAX_ATTEMPTS = 20       # tries of one transaction on 40001 / 40P01


class Retryable(Exception):
    """A transaction failed with 40001 or 40P01 MAX_ATTEMPTS times in a row."""


def in_transaction(conn, counts, work, isolation):
    """Run work(conn) in one transaction at isolation; return what it returns.

    bidguard never leaves an ambiguous outcome: a call either did its work or
    raised.  Two errors mean "this transaction lost a race, run it again from
    the start":

      40001 serialization_failure -- at REPEATABLE READ or SERIALIZABLE, the
            answer depends on a row committed after this transaction's snapshot
            (another worker's bid or trade), so the snapshot cannot give it;
      40P01 deadlock_detected -- PostgreSQL broke a lock cycle.

    Everything the transaction did is rolled back, locks included, so running
    it again is safe.  It is not safe once the transaction has done something
    outside the database, such as placing an order; execute_trade() takes
    care of that.
    """
    conn.isolation_level = isolation
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with conn.transaction():
                return work(conn)
        except (errors.SerializationFailure, errors.DeadlockDetected):
            counts["retries"] += 1
            # back off a little, more after every failure, so the racers spread out
            time.sleep(random.uniform(0, 0.001 * attempt))
    raise Retryable(f"gave up after {MAX_ATTEMPTS} serialization failures or deadlocks")


# --- the guard ---------------------------------------------------------------


@dataclass
class Decision:
    """What the cooldown guard answered for one bot."""
    reason: str                     # 'executed', 'cooldown' or 'busy'
    trade_id: Optional[int]         # the admitted trade (bidguard), else None
    retry_after: Optional[float]    # seconds: the cooldown, the time left, or None (busy)
    client_order_id: Optional[uuid.UUID]   # the trade's atomic_event_id


class Bidguard:
    """The guard: bidguard's SQL functions, one call each.

    The worker loops below only ever talk to their data through an object like
    this one.  demo/incidents.py puts the incidents' own check-then-insert code
    in its place to show the races that this class prevents.
    """

    name = "bidguard"

    def register_bots(self, conn, bots, cooldown_ms):
        with conn.transaction():
            for bot in bots:
                conn.execute("SELECT bidguard_set_cooldown(%s, make_interval(secs => %s))",
                             (bot, cooldown_ms / 1000))

    def create_bid(self, conn, marketplace, posting, bid_data):
        """Return (bid_id, created): the posting's one active bid."""
        # Takes the posting's lock inside the server, so concurrent callers
        # queue up; exactly one of them creates, all get the same bid_id.
        return conn.execute(
            "SELECT bid_id, created FROM bidguard_create_bid(%s, %s, %s)",
            (marketplace, posting, Jsonb(bid_data))).fetchone()

    def submit_bid(self, conn, bid_id):
        conn.execute("SELECT changed FROM bidguard_set_bid_status(%s, 'submitted')", (bid_id,))

    def withdraw_posting(self, conn, marketplace, posting, reason):
        """Withdraw the posting's active bid; True when this call did it."""
        (withdrawn,) = conn.execute(
            "SELECT withdrawn FROM bidguard_withdraw_posting(%s, %s, %s)",
            (marketplace, posting, reason)).fetchone()
        return withdrawn

    def try_trade(self, conn, bot, trade_data):
        # wait => '0': when another worker is trading this bot right now, answer
        # 'busy' at once instead of queueing behind it.
        trade_id, reason, retry_after, event_id = conn.execute(
            """SELECT trade_id, reason, extract(epoch FROM retry_after)::float8,
                      atomic_event_id
                 FROM bidguard_try_trade(%s, %s, wait => '0')""",
            (bot, Jsonb(trade_data))).fetchone()
        return Decision(reason, trade_id, retry_after, event_id)

    def fill_trade(self, conn, bot, decision, trade_data):
        conn.execute("SELECT changed FROM bidguard_fill_trade(%s)", (decision.trade_id,))

    def fail_trade(self, conn, bot, decision, trade_data, why):
        conn.execute("SELECT changed FROM bidguard_fail_trade(%s, %s)", (decision.trade_id, why))


# --- the exchange ------------------------------------------------------------


class PaperExchange:
    """Stands in for an exchange's order API: an order takes exchange_ms and is
    rejected one time in REJECT_ONE_IN.

    A real exchange lets the client name each order (a "client order id") and
    refuses a second order with the same name.  The worker names the order
    after the trade's atomic_event_id, so the exchange's order and the row in
    bidguard_trades carry the same id: reconciliation after a crash finds one
    from the other, and a repeated call can never place the trade twice.
    """

    def __init__(self, exchange_ms):
        self.delay = exchange_ms / 1000
        self.placed = 0

    def place_order(self, bot, client_order_id):
        """Place the order; True when it filled, False when it was rejected."""
        time.sleep(self.delay)
        self.placed += 1
        return random.randrange(REJECT_ONE_IN) != 0


# --- the trading task (the double-trade incident's Celery task) --------------


def execute_trade(conn, guard, exchange, bot, trade_data, counts):
    """Trade bot once, if its cooldown allows; return the guard's Decision.

    This is the incident's Celery task made race-safe.  In a Celery app it is
    the body of  @app.task def execute_trade(bot_id): ...  with one connection
    per worker process.  The transaction spans the exchange call on purpose:
    bidguard_try_trade() holds the bot's lock until COMMIT, so no other worker
    can admit a trade for this bot while the order is in flight, however long
    the exchange takes (a Redis lock with a TTL can expire here).  If the
    worker dies before COMMIT, the lock goes with its connection and the
    admission rolls back: the cooldown is given back.

    The transaction runs at READ COMMITTED whatever the scanners use.  Once
    the order is placed, the transaction must commit: rolling it back and
    running it again would place a second order.  At READ COMMITTED nothing
    after bidguard_try_trade() can fail with 40001 (the bot's lock already
    orders the admissions); at SERIALIZABLE, recording the fill or COMMIT may.
    """
    placed = False

    def attempt(conn):
        nonlocal placed
        if placed:
            # Not reached at READ COMMITTED; never place an order twice.
            raise RuntimeError(f"bot {bot}: the order was placed but its trade rolled back")
        decision = guard.try_trade(conn, bot, trade_data)
        if decision.reason != "executed":
            return decision, None   # 'cooldown' or 'busy': nothing was written
        filled = exchange.place_order(bot, client_order_id=decision.client_order_id)
        placed = True
        if filled:
            guard.fill_trade(conn, bot, decision, trade_data)
        else:
            guard.fail_trade(conn, bot, decision, trade_data, "rejected by the exchange")
        return decision, filled

    decision, filled = in_transaction(conn, counts, attempt,
                                      psycopg.IsolationLevel.READ_COMMITTED)
    counts["trade_calls"] += 1
    if decision.reason == "executed":
        counts["trades_executed"] += 1
        counts["trades_filled" if filled else "trades_failed"] += 1
    else:
        counts["trades_" + decision.reason] += 1
    return decision


# --- the workers -------------------------------------------------------------

stopping = False


def _stop(signum, frame):
    global stopping
    stopping = True


def connect():
    # autocommit: every transaction is an explicit  with conn.transaction()
    return psycopg.connect(autocommit=True)


def scanner(opts, guard, worker, deadline, counts):
    """Bid on postings from the feed until the deadline."""
    tag = {"client": opts.client, "worker": worker}
    with connect() as conn:
        while not stopping and time.time() < deadline:
            # Every scanner sees the same fresh batch of postings at once.
            batch = int(time.time() * 1000) // FEED_BATCH_MS
            posting = f"{batch}-{random.randrange(opts.postings)}"

            def bid(conn):
                bid_id, created = guard.create_bid(conn, opts.marketplace, posting, tag)
                withdrawn = False
                if created:
                    guard.submit_bid(conn, bid_id)
                elif random.randrange(WITHDRAW_ONE_IN) == 0:
                    withdrawn = guard.withdraw_posting(conn, opts.marketplace, posting, "rescan")
                return created, withdrawn

            created, withdrawn = in_transaction(conn, counts, bid,
                                                ISOLATION_LEVELS[opts.isolation])
            counts["bid_calls"] += 1
            counts["bids_created" if created else "bids_existing"] += 1
            counts["bids_withdrawn"] += withdrawn


def trader(opts, guard, worker, deadline, counts):
    """Trade every bot as often as its cooldown allows, until the deadline."""
    tag = {"client": opts.client, "worker": worker}
    bots = list(range(opts.first_bot, opts.first_bot + opts.bots))
    due = {bot: 0.0 for bot in bots}            # bot -> when to try it next
    exchange = PaperExchange(opts.exchange_ms)
    with connect() as conn:
        while not stopping and time.time() < deadline:
            now = time.time()
            ready = [bot for bot in bots if due[bot] <= now]
            if not ready:
                time.sleep(max(0.0, min(min(due.values()), deadline) - now))
                continue
            bot = random.choice(ready)
            decision = execute_trade(conn, guard, exchange, bot, tag, counts)
            if decision.reason == "busy":
                # Another worker holds the bot's lock: it is trading it now.
                due[bot] = time.time() + opts.exchange_ms / 1000
            else:
                # 'executed': retry_after is the cooldown; 'cooldown': the time left.
                due[bot] = time.time() + decision.retry_after
    counts["orders_placed"] += exchange.placed


def run_worker(role, opts, guard, worker, deadline, results):
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent decides
    signal.signal(signal.SIGTERM, _stop)             # finish the transaction, then stop
    counts = Counter()
    try:
        (scanner if role == "scanner" else trader)(opts, guard, worker, deadline, counts)
    except Exception as exc:                         # report, don't hide
        print(f"{opts.client} {role} {worker}: {type(exc).__name__}: {exc}", file=sys.stderr)
        counts["errors"] += 1
    results.put(dict(counts))


def parse_args(argv, client):
    def count(text):
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return value

    def positive(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError("must be >= 1")
        return value

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scanners", type=count, default=2, help="scanner processes")
    p.add_argument("--traders", type=count, default=2, help="trading processes")
    p.add_argument("--seconds", type=positive, default=5, help="how long the workers run")
    p.add_argument("--marketplace", default="example", help="marketplace id of the bids")
    p.add_argument("--postings", type=positive, default=20, help="postings per feed batch")
    p.add_argument("--bots", type=positive, default=4, help="bots traded")
    p.add_argument("--first-bot", type=positive, default=1, help="the first bot id")
    p.add_argument("--cooldown-ms", type=count, default=500, help="each bot's cooldown")
    p.add_argument("--exchange-ms", type=count, default=20, help="how long an order takes")
    p.add_argument("--isolation", choices=ISOLATION_LEVELS, default="read committed")
    p.add_argument("--client", default=client, help="tag written into bid_data and trade_data")
    return p.parse_args(argv)


def main(argv=None, guard=None, client="python"):
    """Start the workers, wait for them, print the totals as JSON."""
    opts = parse_args(argv, client)
    guard = guard or Bidguard()
    with connect() as conn:         # closed before the workers fork
        guard.register_bots(conn, range(opts.first_bot, opts.first_bot + opts.bots),
                            opts.cooldown_ms)

    results = multiprocessing.Queue()
    deadline = time.time() + opts.seconds
    roles = ["scanner"] * opts.scanners + ["trader"] * opts.traders
    workers = [multiprocessing.Process(target=run_worker,
                                       args=(role, opts, guard, n, deadline, results))
               for n, role in enumerate(roles)]
    for w in workers:
        w.start()
    totals = Counter()
    interrupted = False
    try:
        for _ in workers:
            totals.update(results.get())
    except KeyboardInterrupt:
        interrupted = True
        for w in workers:
            w.terminate()                           # SIGTERM: they stop after their transaction
    for w in workers:
        w.join()
        if w.exitcode != 0:
            totals["errors"] += 1
    if interrupted:
        print("interrupted", file=sys.stderr)
        return 130

    keys = ["bid_calls", "bids_created", "bids_existing", "bids_withdrawn",
            "trade_calls", "trades_executed", "trades_filled", "trades_failed",
            "trades_cooldown", "trades_busy", "orders_placed", "retries", "errors"]
    print(json.dumps({"client": opts.client, "scanners": opts.scanners,
                      "traders": opts.traders, "seconds": opts.seconds,
                      "isolation": opts.isolation, **{k: totals[k] for k in keys}}))
    return 1 if totals["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
