#!/usr/bin/env python3
"""shard_key.py -- bidguard_shard_key() in Python, for clients that route themselves.

bidguard_shard_key(marketplace_id, posting_id) decides which shard owns a
posting, bidguard_shard_key(bot_id) which shard owns a bot (doc/api.md,
Routing key).  A client that talks to the shards directly computes the same
value with this function: the algorithm is fixed forever.

    python3 shard_key.py ebay posting-42      # prints -1578970245
    python3 shard_key.py 42                   # a bot: prints 1458453740
    python3 shard_key.py --partitions 4 ebay posting-42   # the partition: 3

Reads one key per line from standard input with --stdin (fields separated by
a tab), printing one value per line; test/t/018_shard_key.pl compares it
with the server over thousands of keys.
"""

import argparse
import sys


def shard_key(*parts: str) -> int:
    h = 0xCBF29CE484222325
    for b in b"\0".join(p.encode() for p in parts):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    for m in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, None):
        h ^= h >> 33
        if m:
            h = (h * m) & 0xFFFFFFFFFFFFFFFF
    h &= 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h   # shard_key(str(bot_id)) for a bot


def partition(key: int, partitions: int) -> int:
    """The partition PL/Proxy's RUN ON picks: key & (partitions - 1)."""
    if partitions < 1 or partitions & (partitions - 1):
        raise ValueError("partitions must be a power of 2")
    return key & (partitions - 1)


def main() -> int:
    ap = argparse.ArgumentParser(description="bidguard_shard_key() of a key")
    ap.add_argument("--partitions", type=int, help="print the partition of that many instead")
    ap.add_argument("--stdin", action="store_true", help="one tab-separated key per line on stdin")
    ap.add_argument("parts", nargs="*", help="the key: one text, a bot id, or namespace and key")
    args = ap.parse_args()
    if args.partitions is not None and (args.partitions < 1 or args.partitions & (args.partitions - 1)):
        ap.error("--partitions must be a power of 2")
    if args.stdin == bool(args.parts) or len(args.parts) > 2:
        ap.error("give one or two key parts, or --stdin")

    def out(parts):
        k = shard_key(*parts)
        print(k if args.partitions is None else partition(k, args.partitions))

    if args.stdin:
        for line in sys.stdin.buffer:
            out(line.rstrip(b"\n").decode().split("\t"))
    else:
        out(args.parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
