"""examples/celery/tasks.py — a Celery trading task made race-safe by bidguard.

The double-trade incident: Celery workers each passed a per-bot cooldown check
and both traded.  Here the check is the database's: bidguard_try_trade() takes
the bot's lock and admits the trade, or says why not, in the task's own
transaction; bidguard_rate_limit() keeps the exchange's API limit (orders per
second per account) in the same transaction, so a trade that is rolled back
gives its unit back.  Any number of workers, processes or hosts may run the
same task for the same bot at the same moment: one trades, the others learn
'busy' or 'cooldown' and when to come back (retry_after).

Run a worker (Redis as the broker, libpq's PG* variables for the database):
    BIDGUARD_BROKER=redis://localhost:6379/0 celery -A tasks worker
and send trades from anywhere:
    from tasks import trade; trade.delay(bot_id=7, order={"side": "buy"})

Settings (environment): BIDGUARD_BROKER (broker URL), BIDGUARD_RESULTS (a
result backend URL, if callers wait for results), BIDGUARD_EXCHANGE_MS
(how long the simulated exchange takes, default 20), BIDGUARD_RATE (the
exchange's limit per account: "<count>/<seconds>", default "20/1").
"""

import json
import os
import random
import time

import psycopg
from celery import Celery
from celery.signals import worker_process_init

app = Celery("bidguard_example",
             broker=os.environ.get("BIDGUARD_BROKER", "redis://localhost:6379/0"),
             backend=os.environ.get("BIDGUARD_RESULTS") or None)
app.conf.update(
    task_acks_late=True,            # a task whose worker dies is redelivered ...
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

EXCHANGE_MS = int(os.environ.get("BIDGUARD_EXCHANGE_MS", "20"))
RATE_COUNT, RATE_SECONDS = (int(x) for x in os.environ.get("BIDGUARD_RATE", "20/1").split("/"))

_conn = None


@worker_process_init.connect
def _no_inherited_connection(**_):
    """Each worker process opens its own connection (never share one across fork)."""
    global _conn
    _conn = None


def db():
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(autocommit=True, application_name="celery-trader")
    return _conn


def place_order(order, client_order_id):
    """The (simulated) exchange: takes EXCHANGE_MS, rejects one order in ten."""
    time.sleep(EXCHANGE_MS / 1000.0)
    return random.random() >= 0.1


@app.task(bind=True, max_retries=None)
def trade(self, bot_id, order, account="acct-1"):
    """Trade for bot_id once its cooldown allows and the account's rate limit has room.

    Returns what happened: {"executed": trade_id} or {"skipped": reason}.
    """
    conn = db()
    # A task redelivered after its worker died (acks_late) cannot trade twice:
    # if the first run committed, the bot is in its cooldown now.
    with conn.transaction():
        t = conn.execute(
            "SELECT trade_id, executed, reason, extract(epoch FROM retry_after), atomic_event_id"
            "  FROM bidguard_try_trade(%s, %s::jsonb, '0')",
            (bot_id, json.dumps({"task": self.request.id, "order": order})),
        ).fetchone()
        trade_id, executed, reason, retry_after, event_id = t
        if reason == "busy":
            # another worker is trading this bot right now: come back shortly
            raise self.retry(countdown=EXCHANGE_MS / 1000.0)
        if reason == "cooldown":
            # the bot traded recently: this order is moot (a scheduler sends a new one)
            return {"skipped": "cooldown", "retry_after": float(retry_after)}

        # The exchange's limit, in the same transaction: if it says no, the
        # exception rolls back the admission too, and both are given back.
        allowed, retry = conn.execute(
            "SELECT allowed, extract(epoch FROM retry_after)"
            "  FROM bidguard_rate_limit(%s, %s, make_interval(secs => %s))",
            ("exchange:" + account, RATE_COUNT, RATE_SECONDS),
        ).fetchone()
        if not allowed:
            raise self.retry(countdown=float(retry))

        if place_order(order, str(event_id)):
            conn.execute("SELECT * FROM bidguard_fill_trade(%s)", (trade_id,))
        else:
            conn.execute("SELECT * FROM bidguard_fail_trade(%s, 'rejected by the exchange')", (trade_id,))
    return {"executed": trade_id}
