/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Recognising a restore: the rows that pg_restore, or psql running a
 *	  pg_dump script, loads into bidguard's own tables are kept exactly as
 *	  they were dumped, whatever order the tables arrive in.
 *
 * A row is restored when it is loaded by a top-level COPY ... FROM into that
 * very table that names every column (or none, which means all: pg_dump
 * names them all), run by a role that owns the table, as the superuser who
 * created the extension does.  Such a role could disable the table's
 * triggers anyway, so the rule gives nobody a way around a guard that they
 * did not have; and an application's INSERT or UPDATE, a COPY of some
 * columns, and any COPY by a role that only may INSERT are judged as
 * always.  A restored row keeps its times, statuses and recorded cooldown,
 * is not judged against today's cooldown, and writes no audit event: its
 * events come back with bidguard_events.
 *
 * Why not the audit trail ("is its creation event on record?"): pg_restore -j
 * loads tables in parallel, largest first, because pg_dump records the
 * foreign-key order of extension tables' data in its sort but not in the
 * archive's dependencies.  The only reference a restored row needs at once
 * is the one bidguard_trades has as a foreign key: its bot.  A restored
 * trade whose bot is not there yet waits for bidguard_bots' load to commit
 * (bidguard_restore_wait_for_bot), with a WARNING that says so.
 *
 * Locking protocol
 * ----------------
 * Recognition takes no locks; its answer is kept per statement and table.
 * The wait for a bot holds nothing beyond what the trade's COPY holds
 * (RowExclusiveLock on bidguard_trades, AccessShareLock on bidguard_bots and
 * its primary key while it reads): it re-reads the primary key with a fresh
 * snapshot every 100 ms on its latch, so bidguard_bots' own load never waits
 * for it and no deadlock can form.  It ends when the bot is there, or with
 * statement_timeout or a cancel.
 *
 * src/restore.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "storage/latch.h"
#include "tcop/pquery.h"
#include "utils/fmgroids.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "bidguard.h"

/*
 * The last answer, for one statement and table.  The statement is its plan
 * node (the statements of one query string live side by side until the
 * string is done, so each has its own) and its start time (which the next
 * query string changes, whatever memory its plan reuses).
 */
static struct
{
	bool		valid;
	void	   *statement;
	TimestampTz statement_start;
	Oid			relid;
	bool		restoring;
} restore_cache;

/* Does a COPY column list name every column of rel?  NIL names all. */
static bool
copy_names_every_column(Relation rel, List *attlist)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (attlist == NIL)
		return true;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		named = false;
		ListCell   *lc;

		if (att->attisdropped || att->attgenerated != '\0')
			continue;
		foreach(lc, attlist)
		{
			if (strcmp(strVal(lfirst(lc)), NameStr(att->attname)) == 0)
			{
				named = true;
				break;
			}
		}
		if (!named)
			return false;
	}
	return true;
}

/* The top-level statement running now, or NULL when there is not one. */
static PlannedStmt *
restore_statement(void)
{
	Portal		portal = ActivePortal;
	PlannedStmt *pstmt;

	if (portal == NULL || list_length(portal->stmts) != 1)
		return NULL;
	pstmt = linitial(portal->stmts);
	return IsA(pstmt, PlannedStmt) ? pstmt : NULL;
}

static bool
restore_judge(Relation rel, PlannedStmt *pstmt)
{
	CopyStmt   *copy;

	if (pstmt == NULL || pstmt->commandType != CMD_UTILITY ||
		pstmt->utilityStmt == NULL || !IsA(pstmt->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) pstmt->utilityStmt;
	if (!copy->is_from || copy->relation == NULL || copy->query != NULL ||
		copy->whereClause != NULL)
		return false;
	if (RangeVarGetRelid(copy->relation, NoLock, true) != RelationGetRelid(rel))
		return false;
	if (!copy_names_every_column(rel, copy->attlist))
		return false;
	return object_ownercheck(RelationRelationId, RelationGetRelid(rel), GetUserId());
}

/*
 * bidguard_restoring
 *		Is the row a trigger of rel is looking at being restored?  See the
 *		file's header for the rule.
 */
bool
bidguard_restoring(Relation rel)
{
	PlannedStmt *pstmt = restore_statement();
	TimestampTz start = GetCurrentStatementStartTimestamp();
	Oid			relid = RelationGetRelid(rel);

	if (restore_cache.valid && restore_cache.statement == pstmt &&
		restore_cache.statement_start == start && restore_cache.relid == relid)
		return restore_cache.restoring;
	restore_cache.valid = false;
	restore_cache.restoring = restore_judge(rel, pstmt);
	restore_cache.statement = pstmt;
	restore_cache.statement_start = start;
	restore_cache.relid = relid;
	restore_cache.valid = true;
	return restore_cache.restoring;
}

/* Is the bot in bidguard_bots, as a fresh snapshot sees it? */
static bool
restore_bot_exists(const BidguardTradeRelids *ids, int64 bot_id)
{
	Relation	bots = table_open(ids->bots, AccessShareLock);
	Relation	pkey = index_open(ids->bots_pkey, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(bots, NULL);
	ScanKeyData sk;
	IndexScanDesc scan;
	bool		found;

	PushActiveSnapshot(GetLatestSnapshot());
	ScanKeyInit(&sk, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(bot_id));
	scan = bidguard_index_beginscan(bots, pkey, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(bots, AccessShareLock);
	return found;
}

/*
 * bidguard_restore_wait_for_bot
 *		A restored trade's bot must be in bidguard_bots when the COPY's
 *		foreign-key check runs: wait until its load has committed.
 */
void
bidguard_restore_wait_for_bot(Oid nspid, int64 bot_id, int64 trade_id)
{
	const BidguardTradeRelids ids = bidguard_trade_relids(nspid);
	bool		warned = false;

	while (!restore_bot_exists(&ids, bot_id))
	{
		if (!warned)
		{
			ereport(WARNING,
					(errmsg("restored trade %lld waits for its bot %lld, not restored yet",
							(long long) trade_id, (long long) bot_id),
					 errdetail("Parallel pg_restore loads bidguard's tables in any order; the trade goes in once bidguard_bots' data is loaded."),
					 errhint("If bidguard_bots' data is not part of this restore, cancel it and restore bidguard_bots first.")));
			warned = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
