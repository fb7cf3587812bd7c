/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  bidguard's locks: stable 64-bit keys and transaction-scoped
 *	  heavyweight locks of bidguard's own lock classes.
 *
 * Locking protocol
 * ----------------
 * bidguard's locks are advisory-type LOCKTAGs in the regular lock manager,
 * built here rather than through pg_advisory_xact_lock():
 *
 *	 field1 = MyDatabaseId, field2/field3 = high/low 32 bits of a 64-bit key,
 *	 field4 = a lock class of bidguard's own (BIDGUARD_LOCK_CLASS_*).
 *
 * Core's advisory locks use field4 = 1 or 2, so an application's
 * pg_advisory_lock() keys can never collide with bidguard's, and pg_locks
 * shows bidguard's locks as locktype 'advisory' with objsubid = the class.
 * They are always taken in ExclusiveLock mode and never as session locks:
 * the lock manager releases them when the transaction ends, commits or
 * aborts, or when the backend dies, and its deadlock detector, lock_timeout
 * and pg_blocking_pids() all see them.  There are no session locks, so the
 * guards are safe behind a transaction-pooling PgBouncer.
 *
 * Keys: FNV-1a (64-bit) over the UTF-8 bytes of the namespace, one zero
 * byte, then the UTF-8 bytes of the key; the unsigned result is read as a
 * two's-complement bigint.  Text values cannot contain a zero byte, so the
 * joined input is unambiguous.  The algorithm is fixed: the same key on
 * every server, version and architecture.  A collision only makes two
 * unrelated keys wait for each other; it can never let two holders in.
 *
 * The lock of a posting is the BID-class lock with key
 * bidguard_lock_key(marketplace_id, posting_id); the lock of a bot is the
 * BOT-class lock whose key is the bot_id itself.
 *
 * Bounded waits (bidguard_try_lock_bot) first try without waiting; only when
 * the lock is taken do they wait, in the lock manager itself, with
 * lock_timeout lowered to the bound for that one LockAcquire() inside an
 * internal subtransaction, which turns the timeout error into a "false"
 * (a lock obtained in the subtransaction passes to the parent on its
 * commit).  No polling, no sleeping.
 *
 * src/locks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/builtins.h"

#include "bidguard.h"

#define FNV1A64_OFFSET	UINT64CONST(0xcbf29ce484222325)
#define FNV1A64_PRIME	UINT64CONST(0x00000100000001b3)

static inline uint64
fnv1a64_update(uint64 h, const char *p, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		h ^= (unsigned char) p[i];
		h *= FNV1A64_PRIME;
	}
	return h;
}

/*
 * bidguard_hash_one
 *		FNV-1a (64-bit) over the UTF-8 bytes of one value given in the server
 *		encoding, with no separator: the start of bidguard_shard_key(text).
 */
uint64
bidguard_hash_one(const char *key, int keylen)
{
	uint64		h;
	char	   *key8 = pg_server_to_any(key, keylen, PG_UTF8);

	if (key8 != key)
		keylen = strlen(key8);
	h = fnv1a64_update(FNV1A64_OFFSET, key8, keylen);
	if (key8 != key)
		pfree(key8);
	return h;
}

/*
 * bidguard_hash_key
 *		The 64-bit key of (ns, key), both given in the server encoding.
 */
uint64
bidguard_hash_key(const char *ns, int nslen, const char *key, int keylen)
{
	uint64		h = FNV1A64_OFFSET;
	char	   *ns8;
	char	   *key8;

	/* Hash UTF-8 whatever the database encoding; no copy when it is UTF8. */
	ns8 = pg_server_to_any(ns, nslen, PG_UTF8);
	if (ns8 != ns)
		nslen = strlen(ns8);
	key8 = pg_server_to_any(key, keylen, PG_UTF8);
	if (key8 != key)
		keylen = strlen(key8);

	h = fnv1a64_update(h, ns8, nslen);
	h = fnv1a64_update(h, "\0", 1);
	h = fnv1a64_update(h, key8, keylen);

	if (ns8 != ns)
		pfree(ns8);
	if (key8 != key)
		pfree(key8);
	return h;
}

/*
 * bidguard_lock_acquire
 *		Take the transaction-scoped exclusive lock (class, key), waiting as
 *		long as lock_timeout allows.
 */
static void
bidguard_lock_acquire(uint16 lockclass, uint64 key)
{
	LOCKTAG		tag;
	TimestampTz start;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (key >> 32), (uint32) key, lockclass);

	/* Uncontended: one attempt, nothing to time. */
	if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
	{
		bidguard_count(BG_STAT_LOCK_ACQUIRED);
		return;
	}

	start = GetCurrentTimestamp();
	PG_TRY();
	{
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	PG_CATCH();
	{
		/* lock_timeout, a deadlock or a cancel: a wait that got nothing */
		bidguard_count_wait(GetCurrentTimestamp() - start, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	bidguard_count_wait(GetCurrentTimestamp() - start, true);
	bidguard_count(BG_STAT_LOCK_ACQUIRED);
}

/*
 * bidguard_posting_key
 *		The key of a posting's lock: bidguard_lock_key(marketplace_id,
 *		posting_id).
 */
uint64
bidguard_posting_key(text *marketplace_id, text *posting_id)
{
	return bidguard_hash_key(VARDATA_ANY(marketplace_id),
							 VARSIZE_ANY_EXHDR(marketplace_id),
							 VARDATA_ANY(posting_id),
							 VARSIZE_ANY_EXHDR(posting_id));
}

/*
 * bidguard_lock_posting
 *		Take the lock of a posting until the end of the transaction.
 *
 * Creation, withdrawal and status changes made through bidguard's functions
 * hold it while they look at and change the posting's bids, so that they
 * happen one after another.  Taking it again in the same transaction is
 * cheap (the lock manager counts the holds locally).
 */
void
bidguard_lock_posting(uint64 key)
{
	bidguard_lock_acquire(BIDGUARD_LOCK_CLASS_BID, key);
}

/*
 * bidguard_try_lock_posting
 *		Take a posting's lock only if it is free now; false otherwise.
 */
bool
bidguard_try_lock_posting(uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (key >> 32), (uint32) key,
						 BIDGUARD_LOCK_CLASS_BID);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * bidguard_lock_bot
 *		Take a bot's lock until the end of the transaction, waiting as
 *		lock_timeout allows (55P03 when it expires).
 */
void
bidguard_lock_bot(int64 bot_id)
{
	bidguard_lock_acquire(BIDGUARD_LOCK_CLASS_BOT, (uint64) bot_id);
}

/*
 * bidguard_lock_guard
 *		Take the lock of one key of a guarded table (guard_trigger.c) until the end
 *		of the transaction, waiting as lock_timeout allows.
 */
void
bidguard_lock_guard(uint64 key)
{
	bidguard_lock_acquire(BIDGUARD_LOCK_CLASS_GUARD, key);
}

/*
 * bidguard_lock_class
 *		Take (class, key) until the end of the transaction, waiting as
 *		lock_timeout allows: the rate limits' key locks (rate_limit.c).
 */
void
bidguard_lock_class(uint16 lockclass, uint64 key)
{
	bidguard_lock_acquire(lockclass, key);
}

/*
 * bidguard_lock_within
 *		Wait at most timeout_ms (> 0) for the lock, held for the transaction;
 *		false if it timed out.  Other errors (deadlock, cancellation)
 *		propagate.  Only a transaction's lock can be had this way: the
 *		subtransaction's abort releases a lock granted as the timeout fired,
 *		which it would not do for a session lock (slots.c converts one).
 */
bool
bidguard_lock_within(const LOCKTAG *tag, int timeout_ms)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			save_lock_timeout = LockTimeout;
	volatile bool acquired = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		LockTimeout = timeout_ms;
		(void) LockAcquire(tag, ExclusiveLock, false, false);
		LockTimeout = save_lock_timeout;

		/*
		 * If the timer fired just as the lock was granted, ProcSleep() leaves
		 * the lock-timeout cancel pending; take it here, inside the
		 * subtransaction, rather than let it fail a later statement.  The
		 * lock then goes with the subtransaction, and the answer is "not
		 * obtained in time".
		 */
		CHECK_FOR_INTERRUPTS();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		acquired = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		LockTimeout = save_lock_timeout;
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return acquired;
}

/*
 * bidguard_try_lock
 *		Take (class, key) until the end of the transaction if it can be had
 *		within timeout_ms: 0 = without waiting, -1 = as lock_timeout allows
 *		(forever when lock_timeout is 0).  A positive bound is also capped by
 *		lock_timeout.  Returns false when the lock was not obtained in time;
 *		deadlocks (40P01) and cancellations are raised as usual.
 */
bool
bidguard_try_lock(uint16 lockclass, uint64 key, int timeout_ms)
{
	LOCKTAG		tag;

	TimestampTz start;
	bool		acquired;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (key >> 32), (uint32) key, lockclass);
	if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
	{
		bidguard_count(BG_STAT_LOCK_ACQUIRED);
		return true;
	}
	if (timeout_ms == 0)
		return false;
	if (timeout_ms < 0)
	{
		if (LockTimeout == 0)
		{
			bidguard_lock_acquire(lockclass, key);
			return true;
		}
		timeout_ms = LockTimeout;
	}
	else if (LockTimeout > 0 && LockTimeout < timeout_ms)
		timeout_ms = LockTimeout;

	start = GetCurrentTimestamp();
	acquired = bidguard_lock_within(&tag, timeout_ms);
	bidguard_count_wait(GetCurrentTimestamp() - start, acquired);
	if (acquired)
		bidguard_count(BG_STAT_LOCK_ACQUIRED);
	return acquired;
}

/*
 * bidguard_lock(namespace text, key text, wait interval DEFAULT NULL)
 * RETURNS boolean
 *
 * A transaction-scoped exclusive lock on (namespace, key), of bidguard's
 * USER lock class, keyed by bidguard_lock_key(namespace, key): true when
 * held (also when this transaction held it already), false when not
 * obtained within "wait" ('0' = try once, NULL = as lock_timeout allows).
 * namespace and key are 1 to 256 characters, as ids are (22023).
 * It is released when the transaction ends; there is no unlock.  Allowed in
 * read-only transactions and on standbys, like pg_advisory_xact_lock().
 */
PG_FUNCTION_INFO_V1(bidguard_lock);
Datum
bidguard_lock(PG_FUNCTION_ARGS)
{
	text	   *ns;
	text	   *key;
	int			wait_ms;

	ns = bidguard_arg_id(fcinfo, 0, "namespace");
	key = bidguard_arg_id(fcinfo, 1, "key");
	wait_ms = PG_ARGISNULL(2) ? -1 : bidguard_arg_wait_ms(PG_GETARG_INTERVAL_P(2));
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot take a bidguard lock during a parallel operation")));

	PG_RETURN_BOOL(bidguard_try_lock(BIDGUARD_LOCK_CLASS_USER,
									 bidguard_hash_key(VARDATA_ANY(ns),
													   VARSIZE_ANY_EXHDR(ns),
													   VARDATA_ANY(key),
													   VARSIZE_ANY_EXHDR(key)),
									 wait_ms));
}

/*
 * bidguard_lock_key(namespace text, key text) RETURNS bigint
 *
 * The stable 64-bit key of (namespace, key).  Takes no lock.
 */
PG_FUNCTION_INFO_V1(bidguard_lock_key);
Datum
bidguard_lock_key(PG_FUNCTION_ARGS)
{
	text	   *ns = PG_GETARG_TEXT_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT64((int64) bidguard_hash_key(VARDATA_ANY(ns),
											  VARSIZE_ANY_EXHDR(ns),
											  VARDATA_ANY(key),
											  VARSIZE_ANY_EXHDR(key)));
}
