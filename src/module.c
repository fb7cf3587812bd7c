/*-------------------------------------------------------------------------
 *
 * module.c
 *	  The module's entry point: _PG_init defines bidguard's settings and,
 *	  when the library is preloaded, asks for the statistics' shared memory.
 *
 * Every setting is defined here, with the variable of the file that reads
 * it, so that this file depends on the others and none depends on it.
 *
 * Locks: none.
 *
 * src/module.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "bidguard.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("bidguard.test_clock",
							   "Fixed time bidguard uses instead of the server clock for trades and rate limits.",
							   "Meant for tests of cooldown and window boundaries: an empty string (the default) means the server clock.",
							   &bidguard_test_clock,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("bidguard.track_stats",
							 "Counts what bidguard's guards do in bidguard_stats.",
							 "Needs shared_preload_libraries = 'bidguard'; turning it off only skips the counting.",
							 &bidguard_track_stats,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("bidguard.pool_mode",
							 "How clients reach this server: directly or through a session pooler (session), or through a transaction or statement pooler.",
							 "Session-scoped slots are refused unless it is session: behind a transaction pooler another client would inherit them.  Set it for the pooler's role or database, or with PgBouncer's connect_query.",
							 &bidguard_pool_mode,
							 BIDGUARD_POOL_MODE_SESSION,
							 bidguard_pool_mode_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("bidguard");

	/* Shared-memory statistics only when preloaded; all else works anyway. */
	if (process_shared_preload_libraries_in_progress)
		bidguard_stats_init();
}
