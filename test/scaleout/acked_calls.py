#!/usr/bin/env python3
"""acked_calls.py -- workers that record every call the server acknowledged.

For the scale-out tests' "node killed mid-run" step: THREADS workers, each on
its own autocommit connection to DSN (a PL/Proxy proxy or a Citus
coordinator), call bidguard_try_trade on random bots and bidguard_create_bid
on random postings for SECONDS, and print one JSON line per outcome:

    {"ack": "trade", "id": 12, "bot": 3, "t": 1.234}    executed, committed
    {"ack": "bid", "id": 7, "m": "m", "p": "p-4", "created": true, "t": ...}
    {"ack": "refused", "bot": 3, "reason": "cooldown", "t": ...}
    {"error": "08006", "key": "bot 3", "message": "...", "t": ...}

A call whose answer never arrived (the connection broke) is an error, not an
acknowledgement.  After an error the worker reconnects (retrying every 100 ms)
and goes on.  The test then checks that every acknowledged id is in the
database, and which keys failed while a node was down.
"""

import argparse
import json
import random
import sys
import threading
import time

import psycopg

out_lock = threading.Lock()


def emit(rec):
    with out_lock:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


def worker(n, args, t0):
    rnd = random.Random(args.seed * 1000 + n)
    conn = None
    deadline = t0 + args.seconds
    while time.monotonic() < deadline:
        if conn is None:
            try:
                conn = psycopg.connect(args.dsn, autocommit=True, connect_timeout=2,
                                       prepare_threshold=None)
            except psycopg.Error as e:
                emit({"error": getattr(e, "sqlstate", None) or "connect", "key": "connect",
                      "message": str(e).splitlines()[0] if str(e) else "", "t": time.monotonic() - t0})
                time.sleep(0.1)
                continue
        if rnd.random() < 0.5:
            bot = rnd.randint(1, args.bots)
            key = f"bot {bot}"
            sql, params = "SELECT trade_id, executed, reason FROM bidguard_try_trade(%s)", (bot,)
        else:
            posting = f"p-{rnd.randint(1, args.postings)}"
            key = f"posting {posting}"
            sql, params = "SELECT bid_id, created FROM bidguard_create_bid('m', %s)", (posting,)
        try:
            row = conn.execute(sql, params).fetchone()
        except psycopg.Error as e:
            emit({"error": getattr(e, "sqlstate", None) or "none", "key": key,
                  "message": str(e).splitlines()[0] if str(e) else "", "t": time.monotonic() - t0})
            if conn.closed or conn.broken:
                conn = None
            time.sleep(0.02)
            continue
        now = time.monotonic() - t0
        if key.startswith("bot"):
            if row[1]:
                emit({"ack": "trade", "id": row[0], "bot": bot, "t": now})
            else:
                emit({"ack": "refused", "bot": bot, "reason": row[2], "t": now})
        else:
            emit({"ack": "bid", "id": row[0], "m": "m", "p": posting, "created": row[1], "t": now})
        time.sleep(args.pause)
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--bots", type=int, default=20)
    ap.add_argument("--postings", type=int, default=200)
    ap.add_argument("--pause", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.monotonic()
    emit({"start": True, "t": 0.0})
    threads = [threading.Thread(target=worker, args=(n, args, t0)) for n in range(args.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    emit({"done": True, "t": time.monotonic() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
