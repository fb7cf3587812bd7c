"""examples/celery/send_trades.py — the incident's scheduler: duplicate trade tasks.

Every --every-ms, for each of --bots bots, it sends --copies identical trade
tasks at once (as the incident's overlapping beat schedules and retries did),
for --seconds; then it waits for every task and prints one JSON line:
{"sent": n, "executed": n, "cooldown": n, "trade_ids": [...]}.
Needs BIDGUARD_BROKER and BIDGUARD_RESULTS (tasks.py).

    python3 send_trades.py --bots 4 --copies 3 --every-ms 50 --seconds 3
"""

import argparse
import json
import time

from tasks import trade

ap = argparse.ArgumentParser()
ap.add_argument("--bots", type=int, default=4)
ap.add_argument("--copies", type=int, default=3)
ap.add_argument("--every-ms", type=int, default=50)
ap.add_argument("--seconds", type=float, default=3)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()

results = []
end = time.monotonic() + args.seconds
while time.monotonic() < end:
    for bot in range(1, args.bots + 1):
        for _ in range(args.copies):
            results.append(trade.delay(bot_id=bot, order={"side": "buy", "bot": bot}))
    time.sleep(args.every_ms / 1000.0)

# Wait by polling each task's state: AsyncResult.get() on many results of
# the Redis backend can hang on its pub/sub (celery/celery#4983-style issues).
deadline = time.monotonic() + args.timeout
pending = list(results)
while pending and time.monotonic() < deadline:
    pending = [r for r in pending if not r.ready()]
    if pending:
        time.sleep(0.2)
if pending:
    raise SystemExit(f"{len(pending)} of {len(results)} tasks not done after {args.timeout} s")

summary = {"sent": len(results), "executed": 0, "cooldown": 0, "trade_ids": []}
for r in results:
    out = r.get(timeout=5)  # ready: raises the task's exception, if it failed
    if "executed" in out:
        summary["executed"] += 1
        summary["trade_ids"].append(out["executed"])
    else:
        summary[out["skipped"]] += 1
print(json.dumps(summary))
