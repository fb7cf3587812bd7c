/*-------------------------------------------------------------------------
 *
 * bidguard.h
 *	  Declarations shared by bidguard's source files.
 *
 * bidguard keeps two races of trading and marketplace workers out of the
 * data: duplicate active bids for one posting, and trades of one bot inside
 * its cooldown; it also limits rates and concurrency by key.  The guards are
 * transaction-scoped heavyweight locks of classes of bidguard's own
 * (locks.c), row locks, a partial unique index and triggers.  Where things
 * are, by concern:
 *
 *	 module.c		_PG_init and every setting (depends on the others; none on it)
 *	 bidguard.c		the SPI plan cache, relations by schema, SPI helpers
 *	 args.c			argument checks, time arithmetic, set-returning results
 *	 locks.c		lock tags, bounded waits, bidguard_lock, bidguard_lock_key
 *	 stats.c		shared-memory statistics
 *	 compat.h		every difference between PostgreSQL majors
 *	 bids.c (bids.h), bid_batch.c		the bid functions, one and many postings
 *	 bid_write.c (bid_write.h)		their direct reads and writes
 *	 bid_status.c (bid_status.h)	statuses and bidguard_bids' trigger
 *	 trades.c, trade_write.c, trade_trigger.c (trades.h)
 *					the trade decision, the admitted trade's insert,
 *					bidguard_trades' trigger
 *	 cooldown.c		the cooldown rule's row logic both cooldown triggers share
 *	 guard_trigger.c, guard_admin.c, guard_common.c (guards.h)
 *					guards on the application's tables
 *	 rate_limit.c (rate_limit.h), rate_guard.c		rate limits, and on INSERT
 *	 slots.c, slot_guard.c		concurrency slots, and on INSERT
 *	 events.c		the audit trail and ids
 *	 direct.c		inserts without an executor per row
 *	 restore.c		what pg_restore may load as it was
 *	 shard.c		bidguard_shard_key, the routing key of every scale-out
 *	 placement.c, shard_fence.c	Citus placement, the PL/Proxy shard fence
 *
 * Each .c file's header states its locking protocol.
 *
 * src/bidguard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_H
#define BIDGUARD_H

#include "fmgr.h"
#include "utils/guc.h"
#include "compat.h"
#include "access/htup.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/*
 * Lock classes, stored in locktag_field4 of an advisory LOCKTAG.  Core's
 * pg_advisory_lock() uses 1 (one bigint key) and 2 (two int4 keys), so no
 * application advisory lock can ever collide with one of these.  pg_locks
 * shows the class as objsubid, an int2: the classes stay below 32768 so
 * that it shows them as they are written here.
 */
#define BIDGUARD_LOCK_CLASS_BID		25089	/* 0x6201: a posting */
#define BIDGUARD_LOCK_CLASS_BOT		25090	/* 0x6202: a bot's trades */
#define BIDGUARD_LOCK_CLASS_USER	25091	/* 0x6203: bidguard_lock(namespace, key) */
#define BIDGUARD_LOCK_CLASS_GUARD	25092	/* 0x6204: a key of a guarded table */
#define BIDGUARD_LOCK_CLASS_RATE	25093	/* 0x6205: a rate-limited key */
#define BIDGUARD_LOCK_CLASS_SLOT	25094	/* 0x6206: one slot of a key */

/* Longest marketplace_id / posting_id, in characters. */
#define BIDGUARD_MAX_ID_CHARS		256

/*
 * The statements bidguard runs through SPI.  Each is prepared once per
 * backend (per extension schema) and kept; see bidguard_plan().
 */
typedef enum BidguardPlanId
{
	BG_PLAN_FIND_ACTIVE_BID,
	BG_PLAN_INSERT_BID,
	BG_PLAN_BID_POSTING,
	BG_PLAN_LOCK_BID,
	BG_PLAN_UPDATE_BID_STATUS,
	BG_PLAN_INSERT_EVENT,
	BG_PLAN_INSERT_TRADE,
	BG_PLAN_UPSERT_BOT,
	BG_PLAN_LOCK_TRADE,
	BG_PLAN_TRADE_EXISTS,
	BG_PLAN_UPDATE_TRADE,
	BG_PLAN_RATE_WINDOW,
	BG_PLAN_RATE_UNITS,
	BG_PLAN_RATE_INSERT,
	BG_PLAN_RATE_PRUNE_KEY,
	BG_PLAN_RATE_CONFIG,
	BG_PLAN_RATE_PRUNE,
	BG_NUM_PLANS
} BidguardPlanId;

/*
 * The counters of bidguard_stats, in its column order.  Append only: each
 * extension version's bidguard_stats() returns a prefix of them (stats.c).
 */
typedef enum BidguardStat
{
	BG_STAT_BIDS_CREATED,
	BG_STAT_BIDS_DEDUPLICATED,
	BG_STAT_BIDS_WITHDRAWN,
	BG_STAT_TRANSITIONS_REJECTED,
	BG_STAT_TRADES_EXECUTED,
	BG_STAT_TRADES_REJECTED_COOLDOWN,
	BG_STAT_TRADES_REJECTED_BUSY,
	BG_STAT_LOCK_ACQUIRED,
	BG_STAT_LOCK_WAITED,
	BG_STAT_LOCK_TIMEOUTS,
	BG_STAT_RATE_ALLOWED,
	BG_STAT_RATE_LIMITED,
	BG_STAT_SLOTS_ACQUIRED,
	BG_STAT_SLOTS_BUSY,
	BG_STAT_SLOT_WAITS,
	BG_NUM_STATS
} BidguardStat;

/* Finite buckets of the lock-wait histogram (stats.c has their bounds). */
#define BG_WAIT_BUCKETS 13

/*
 * What a C function keeps in its FmgrInfo's fn_extra (one per call site):
 * the extension's schema, and room for a trigger's column numbers.
 */
typedef struct BidguardCallState
{
	Oid			nspid;
	void	   *columns;		/* allocated in fn_mcxt by the user */
} BidguardCallState;

/*
 * The relations and columns the trade decision reads without SQL
 * (trades.c), cached per schema (bidguard.c).
 */
typedef struct BidguardTradeRelids
{
	Oid			bots;
	Oid			bots_pkey;
	Oid			trades;
	Oid			cooldown_idx;	/* bidguard_trades_cooldown_idx */
	AttrNumber	bot_cooldown;	/* bidguard_bots.cooldown */
	AttrNumber	trade_id;
	AttrNumber	created_at;
	AttrNumber	filled_at;
} BidguardTradeRelids;

/* direct.c: inserts into bidguard's tables without SQL */
typedef struct BidguardDirectSpec
{
	const char *const *columns; /* NULL-terminated: every column the table has */
	const char *identity;		/* the identity column, or NULL */
	const char *arbiter;		/* the ON CONFLICT arbiter index, or NULL */
	const char *fkey;			/* a foreign key the caller keeps itself, or NULL */
	bool		audited;		/* the caller writes the audit trigger's event */
} BidguardDirectSpec;
typedef struct BidguardDirect BidguardDirect;
extern BidguardDirect *bidguard_direct_open(Oid nspid, Oid relid,
											const BidguardDirectSpec *spec,
											AclMode privileges);
extern bool bidguard_direct_insert(BidguardDirect *d, const Datum *values,
								   const bool *nulls, bool do_nothing, ItemPointer tid);
extern int64 bidguard_direct_next_id(BidguardDirect *d);
extern Relation bidguard_direct_relation(BidguardDirect *d);
extern Relation bidguard_direct_arbiter(BidguardDirect *d);
extern AttrNumber bidguard_direct_attnum(BidguardDirect *d, int i);
extern void bidguard_direct_close(BidguardDirect *d);

/* events.c */
extern void bidguard_event_write(Oid nspid, Datum *values, char *nulls, bool new_id);
extern Jsonb *bidguard_empty_object(void);
extern struct pg_uuid_t *bidguard_new_uuid_v7(void);
extern void bidguard_event_bid_created(Oid nspid, int64 bid_id, text *marketplace_id,
									   text *posting_id, struct pg_uuid_t *event_id,
									   TimestampTz at);
extern void bidguard_event_trade_executed(Oid nspid, int64 trade_id, int64 bot_id,
										  struct pg_uuid_t *event_id, TimestampTz at);

/* bidguard.c */
extern BidguardTradeRelids bidguard_trade_relids(Oid nspid);
extern BidguardCallState *bidguard_call_state(FunctionCallInfo fcinfo);
#define bidguard_schema(fcinfo) (bidguard_call_state(fcinfo)->nspid)
extern SPIPlanPtr bidguard_plan(Oid nspid, BidguardPlanId id);
extern Oid	bidguard_events_owner(Oid nspid);
extern void bidguard_check_writable(const char *what);
extern TimestampTz bidguard_now(void);
extern void bidguard_spi_check(int rc, int expected, const char *what);
extern int	bidguard_column(Relation rel, const char *name);
extern pg_noreturn void bidguard_trigger_misuse(const char *function, const char *how);
extern void bidguard_as_events_owner(Oid nspid, Oid *save_userid,
									 int *save_sec_context);

/* args.c */
extern text *bidguard_check_id(text *t, const char *argname);
extern Jsonb *bidguard_check_object(Jsonb *jb, const char *argname);
extern text *bidguard_arg_id(FunctionCallInfo fcinfo, int argno,
							 const char *argname);
extern char *bidguard_interval_text(Interval *iv);
extern TimestampTz bidguard_ts_plus(TimestampTz t, Interval *iv);
extern TimestampTz bidguard_ts_minus(TimestampTz t, Interval *iv);
extern int	bidguard_arg_wait_ms(Interval *wait);
extern void bidguard_check_cooldown(Interval *cooldown, const char *argname);
extern Jsonb *bidguard_arg_object(FunctionCallInfo fcinfo, int argno,
								  const char *argname);
extern void bidguard_arg_not_null(FunctionCallInfo fcinfo, int argno,
								  const char *argname);
extern void bidguard_init_srf(FunctionCallInfo fcinfo);
extern void bidguard_return_row(FunctionCallInfo fcinfo, Datum *values,
								bool *nulls);

/* stats.c */
extern bool bidguard_track_stats;
extern void bidguard_stats_init(void);
extern void bidguard_count(BidguardStat stat);
extern void bidguard_count_wait(int64 us, bool obtained);

/* restore.c */
extern bool bidguard_restoring(Relation rel);
extern void bidguard_restore_wait_for_bot(Oid nspid, int64 bot_id, int64 trade_id);

/*
 * placement.c: which relation statements on bidguard's tables use, when
 * Citus distributes them (a shard on this node) or not (the table).
 */
typedef enum BidguardTable
{
	BG_TABLE_NONE,				/* a table Citus never distributes (events) */
	BG_TABLE_BIDS,
	BG_TABLE_BOTS,
	BG_TABLE_TRADES,
	BG_NUM_TABLES
} BidguardTable;

#define BG_PLACE_UNSET	0		/* not placed: only right if not distributed */
#define BG_PLACE_SELF	(-1)	/* not distributed: the table itself */

/* Per table: BG_PLACE_UNSET, BG_PLACE_SELF or a Citus shard id (> 0). */
typedef struct BidguardPlacement
{
	int64		shard[BG_NUM_TABLES];
} BidguardPlacement;

extern BidguardPlacement bidguard_placement;
extern void bidguard_place_posting(Oid nspid, text *posting_id, Relation fence_rel,
								   BidguardPlacement *saved);
extern void bidguard_place_bot(Oid nspid, int64 bot_id, Relation fence_rel,
							   BidguardPlacement *saved);
extern void bidguard_place_unkeyed(Oid nspid, BidguardTable t, const char *function,
								   const char *keyed, BidguardPlacement *saved);
extern void bidguard_placement_restore(const BidguardPlacement *saved);
extern int64 bidguard_placed_shard(Oid nspid, BidguardTable t);
extern Oid	bidguard_placed_relid(Oid nspid, const char *relname, int64 shardid);

/* shard.c */
extern int32 bidguard_bot_shard_key(int64 bot_id);
extern int32 bidguard_posting_shard_key(text *marketplace_id, text *posting_id);

/* locks.c */
extern uint64 bidguard_hash_one(const char *key, int keylen);
extern uint64 bidguard_hash_key(const char *ns, int nslen,
								const char *key, int keylen);
extern uint64 bidguard_posting_key(text *marketplace_id, text *posting_id);
extern void bidguard_lock_posting(uint64 key);
extern bool bidguard_try_lock_posting(uint64 key);
extern void bidguard_lock_bot(int64 bot_id);
extern bool bidguard_try_lock(uint16 lockclass, uint64 key, int timeout_ms);
extern void bidguard_lock_guard(uint64 key);
extern void bidguard_lock_class(uint16 lockclass, uint64 key);

/* slots.c: bidguard.pool_mode, which module.c defines */
typedef enum BidguardPoolMode
{
	BIDGUARD_POOL_MODE_SESSION,
	BIDGUARD_POOL_MODE_TRANSACTION,
	BIDGUARD_POOL_MODE_STATEMENT
} BidguardPoolMode;
extern const struct config_enum_entry bidguard_pool_mode_options[];
extern int	bidguard_pool_mode;
extern int	bidguard_slot_acquire(text *key, int max_slots, int wait_ms, bool session);
extern int	bidguard_slot_held(text *key, int max_slots);
#define BIDGUARD_MAX_SLOTS	10000

/* bidguard.c: bidguard.test_clock, which module.c defines */
extern char *bidguard_test_clock;
struct LOCKTAG;
extern bool bidguard_lock_within(const struct LOCKTAG *tag, int timeout_ms);

/*
 * cooldown.c: the cooldown guard's row logic, shared by bidguard_trades'
 * trigger (trades.c) and the trigger bidguard_guard_cooldown() puts on an
 * application's table.  The table-specific parts are hooks.
 */
typedef struct CooldownGuard CooldownGuard;
struct CooldownGuard
{
	Relation	rel;
	int			key_attnum;
	Oid			key_type;
	int			time_attnum;	/* timestamptz */
	int			fill_attnum;	/* timestamptz; 0: none */
	int			status_attnum;	/* text; rows 'failed' do not count; 0: none */
	/* take the key's lock, waiting as lock_timeout allows */
	void		(*lock) (CooldownGuard *g, Datum key);
	/*
	 * Connected to SPI, the key's lock held: how long until a row of time
	 * "at" (filled at *fill; NULL: not filled) is clear of the key's other
	 * counting rows (NULL: clear now), excluding the row "self" (NULL on
	 * INSERT); *cooldown is set to the cooldown.
	 */
	Interval   *(*decide) (CooldownGuard *g, Datum key, TimestampTz at,
							const TimestampTz *fill, HeapTuple self, Interval **cooldown);
	/* raise 23P01 for the row of decide's "at" and "fill" (does not return) */
	void		(*violation) (CooldownGuard *g, Datum key, TimestampTz at,
							  const TimestampTz *fill, Interval *cooldown, Interval *retry);
	/* raise unless filled_at lies in [created_at, now] */
	void		(*check_fill) (CooldownGuard *g, HeapTuple tuple, TimestampTz created_at,
							   TimestampTz filled_at, TimestampTz now);
	void	   *arg;
};
extern bool bidguard_fired_before_row_ins_upd(FunctionCallInfo fcinfo);
extern HeapTuple bidguard_cooldown_guard_row(CooldownGuard *g, TriggerData *trigdata,
											 Interval **admitted_under);


#endif							/* BIDGUARD_H */
