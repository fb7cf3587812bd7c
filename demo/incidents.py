#!/usr/bin/env python3
"""demo/incidents.py -- the Python example's workers, with or without bidguard.

    incidents.py --guard bidguard  [bidguard_worker.py options]
    incidents.py --guard none      [bidguard_worker.py options]

The workers are examples/python/bidguard_worker.py's own scanner and trader
loops, run by its own main().  Only the guard object they talk to differs:

  bidguard   the example's Bidguard class: bidguard_create_bid(),
             bidguard_try_trade() and friends on bidguard's tables;
  none       CheckThenInsert below: the incidents' own code on plain tables
             (demo/schema.sql, demo/trade_schema.sql):
             * bids: "SELECT ... FOR UPDATE the posting's active bid; if there
               is none, INSERT one" (create_bid_with_deduplication() in
               shared/background/bid-deduplication-writeup.md).  FOR UPDATE
               locks only rows that exist: while the posting has no bid, it
               locks nothing, and every scanner asking then is told "no";
             * trades: "has the bot traded within its cooldown (max of
               coalesce(filled_at, created_at))?  if not, place the order and
               record the trade" (shared/background/double-trade-writeup.md).
               The trade being placed is not in the table until the exchange
               has answered, so every worker asking meanwhile passes.

So whatever differs between the two runs of scripts/demo.sh is the guard.
"""

import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "examples", "python"))
import bidguard_worker as worker  # noqa: E402  (the path above comes first)
from psycopg.types.json import Jsonb  # noqa: E402

ACTIVE = "('pending', 'submitted')"


class CheckThenInsert:
    """The incidents' code: a check, then a write, with nothing in between."""

    name = "check-then-insert"

    def register_bots(self, conn, bots, cooldown_ms):
        with conn.transaction():
            for bot in bots:
                conn.execute(
                    """INSERT INTO bots (bot_id, cooldown)
                       VALUES (%s, make_interval(secs => %s))
                       ON CONFLICT (bot_id) DO UPDATE SET cooldown = excluded.cooldown""",
                    (bot, cooldown_ms / 1000))

    def create_bid(self, conn, marketplace, posting, bid_data):
        # "Use SELECT FOR UPDATE to lock the row and prevent race conditions"
        row = conn.execute(
            f"""SELECT id FROM bids
                 WHERE marketplace_id = %s AND posting_id = %s AND status IN {ACTIVE}
                 LIMIT 1 FOR UPDATE""",
            (marketplace, posting)).fetchone()
        if row is not None:
            return row[0], False
        (bid_id,) = conn.execute(
            """INSERT INTO bids (marketplace_id, posting_id, status, bid_data)
               VALUES (%s, %s, 'pending', %s) RETURNING id""",
            (marketplace, posting, Jsonb(bid_data))).fetchone()
        return bid_id, True

    def submit_bid(self, conn, bid_id):
        conn.execute("UPDATE bids SET status = 'submitted' WHERE id = %s AND status = 'pending'",
                     (bid_id,))

    def withdraw_posting(self, conn, marketplace, posting, reason):
        cur = conn.execute(
            f"""UPDATE bids SET status = 'withdrawn'
                 WHERE marketplace_id = %s AND posting_id = %s AND status IN {ACTIVE}""",
            (marketplace, posting))
        return cur.rowcount > 0

    def try_trade(self, conn, bot, trade_data):
        # _should_execute_automatic_trade(): the bot's last trade against its cooldown
        cooldown, left = conn.execute(
            """SELECT extract(epoch FROM b.cooldown)::float8,
                      extract(epoch FROM (SELECT max(coalesce(t.filled_at, t.created_at))
                                            FROM trades AS t
                                           WHERE t.bot_id = b.bot_id AND t.status <> 'failed')
                                         + b.cooldown - clock_timestamp())::float8
                 FROM bots AS b
                WHERE b.bot_id = %s""",
            (bot,)).fetchone()
        if left is not None and left > 0:
            return worker.Decision("cooldown", None, left, None)
        # "yes": the task goes on to place the order, with an id of its own
        return worker.Decision("executed", None, cooldown, uuid.uuid4())

    def _record(self, conn, bot, decision, trade_data, status):
        # the trade is recorded once the exchange has answered
        conn.execute(
            """INSERT INTO trades (bot_id, status, trade_data, client_order_id, filled_at)
               VALUES (%s, %s, %s, %s, CASE WHEN %s = 'filled' THEN clock_timestamp() END)""",
            (bot, status, Jsonb(trade_data), decision.client_order_id, status))

    def fill_trade(self, conn, bot, decision, trade_data):
        self._record(conn, bot, decision, trade_data, "filled")

    def fail_trade(self, conn, bot, decision, trade_data, why):
        self._record(conn, bot, decision, trade_data, "failed")


def main(argv):
    if len(argv) < 2 or argv[0] != "--guard" or argv[1] not in ("bidguard", "none"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    guard = worker.Bidguard() if argv[1] == "bidguard" else CheckThenInsert()
    return worker.main(argv[2:], guard=guard, client=f"demo-{argv[1]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
