/*-------------------------------------------------------------------------
 *
 * guards.h
 *	  What the files of the guards on application tables share
 *	  (guard_trigger.c, guard_admin.c, guard_common.c).
 *
 * The row logic both cooldown triggers use, CooldownGuard, is in
 * bidguard.h (cooldown.c), because bidguard_trades' trigger uses it too.
 *
 * src/guards.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_GUARDS_H
#define BIDGUARD_GUARDS_H

#include "access/htup.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"

/* The guard trigger's name, and the comments that mark the guards' indexes. */
#define GUARD_TRIGGER_NAME	"bidguard_cooldown_guard"
#define GUARD_INDEX_MARK	"bidguard_guard_cooldown"
#define UNIQUE_INDEX_MARK	"bidguard_guard_unique_active"
#define RATE_TRIGGER_NAME	"bidguard_rate_limit_guard"
#define SLOT_TRIGGER_NAME	"bidguard_slot_guard"

/* guard_common.c: SQL on an application's table, run as its owner */
typedef struct GuardAsOwner
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} GuardAsOwner;

extern void guard_as_owner_begin(Oid owner, GuardAsOwner *save);
extern void guard_as_owner_end(GuardAsOwner *save);
extern char *guard_qualified_name(Relation rel);
extern Oid	bidguard_rel_owner(Oid relid);
extern char *guard_equality_operator(Oid typid, const char *column);
extern void guard_check_time_column(TupleDesc desc, int attnum, const char *role);

/* guard_common.c: what guarding and unguarding a table share */
extern Relation guard_open_table(Oid relid, LOCKMODE mode, const char *action);
extern void guard_check_not_ours(Relation rel, Oid nspid);
extern int	guard_column(Relation rel, Name column, const char *argname);
extern void guard_exec(const char *sql, int expected);
extern int	guard_trigger_exists(Oid relid, Oid nspid, const char *tgname,
								 const char *funcname);
extern void guard_create_trigger(Oid relid, Oid nspid, Oid owner, const char *qrel,
								 const char *tgname, const char *funcname,
								 const char *column, const char *args);
extern void guard_drop_trigger(Oid relid, Oid nspid, const char *tgname,
							   const char *funcname, const char *what);
extern void guard_key_table(Oid relid, Oid nspid, Name key_column, text *prefix_arg,
							char **qrel, char **prefix, Oid *owner);
struct Trigger;
extern text *guard_row_key(Relation rel, struct Trigger *tg, HeapTuple tuple);

/* a rate or slot guard trigger's arguments, parsed once per call site */
typedef struct GuardKeyArgs
{
	Oid			tgoid;			/* whose arguments these are */
	bool		given;			/* tgargs[0] not empty */
	int32		count;			/* max_count or max_slots */
	Interval	span;			/* per or wait; zero when not given */
} GuardKeyArgs;

extern text *guard_inserted_key(FunctionCallInfo fcinfo, void (*misuse) (void),
								GuardKeyArgs **args);
extern Datum guard_pass_row(FunctionCallInfo fcinfo);

#endif							/* BIDGUARD_GUARDS_H */
