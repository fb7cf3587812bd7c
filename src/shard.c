/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  bidguard_shard_key(): the routing key that decides which shard of a
 *	  scaled-out bidguard (PL/Proxy partitions, a Citus distribution
 *	  column) owns a posting or a bot.
 *
 * Locking protocol
 * ----------------
 * None: these functions take no lock and read no table.  They are
 * IMMUTABLE, so that a proxy, a shard's fence trigger and a client library
 * in any language all compute the same value for the same key.
 *
 * The algorithm, fixed forever (test/sql/shard_key.sql records values):
 *
 *	 h = FNV-1a 64 over the UTF-8 bytes of the key, exactly as
 *	     bidguard_lock_key(): for (namespace, key), the namespace's bytes,
 *	     one zero byte, the key's bytes; for one text, its bytes alone;
 *	     a bigint is hashed as its decimal text ('42', '-7')
 *	 h = murmur3's 64-bit finalizer (fmix64) of h
 *	 result = the low 32 bits of h, read as a signed integer
 *
 * FNV-1a alone mixes its low bits poorly (the last byte reaches bit 0 only
 * through one multiplication by an odd prime, so keys that differ in their
 * last character alternate between two values of bit 0); PL/Proxy takes the
 * low bits of the hash (hash & (partitions - 1)).  The finalizer makes every
 * output bit depend on every input bit.
 *
 * src/shard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "bidguard.h"

/*
 * fmix64
 *		MurmurHash3's 64-bit finalizer (public domain, Austin Appleby).
 */
static inline uint64
fmix64(uint64 k)
{
	k ^= k >> 33;
	k *= UINT64CONST(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64CONST(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return k;
}

static inline int32
shard_key_of(uint64 h)
{
	return (int32) (uint32) (fmix64(h) & UINT64CONST(0xffffffff));
}

/* The shard key of a bot (bidguard_shard_key(bigint)), for C callers. */
int32
bidguard_bot_shard_key(int64 bot_id)
{
	char		buf[MAXINT8LEN + 1];
	int			len = pg_lltoa(bot_id, buf);

	return shard_key_of(bidguard_hash_one(buf, len));
}

/* The shard key of a posting (bidguard_shard_key(text, text)). */
int32
bidguard_posting_shard_key(text *marketplace_id, text *posting_id)
{
	return shard_key_of(bidguard_posting_key(marketplace_id, posting_id));
}

/*
 * bidguard_shard_key(key text) RETURNS integer
 */
PG_FUNCTION_INFO_V1(bidguard_shard_key_text);
Datum
bidguard_shard_key_text(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT32(shard_key_of(bidguard_hash_one(VARDATA_ANY(key),
												   VARSIZE_ANY_EXHDR(key))));
}

/*
 * bidguard_shard_key(namespace text, key text) RETURNS integer
 *
 * A posting's shard key is bidguard_shard_key(marketplace_id, posting_id).
 */
PG_FUNCTION_INFO_V1(bidguard_shard_key_pair);
Datum
bidguard_shard_key_pair(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(bidguard_posting_shard_key(PG_GETARG_TEXT_PP(0),
											   PG_GETARG_TEXT_PP(1)));
}

/*
 * bidguard_shard_key(key bigint) RETURNS integer
 *
 * A bot's shard key is bidguard_shard_key(bot_id): the same value as
 * bidguard_shard_key(bot_id::text), so that a client needs one algorithm.
 */
PG_FUNCTION_INFO_V1(bidguard_shard_key_int8);
Datum
bidguard_shard_key_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(bidguard_bot_shard_key(PG_GETARG_INT64(0)));
}
