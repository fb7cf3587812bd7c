/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The one place where bidguard knows which PostgreSQL major it is built
 *	  against.
 *
 * bidguard supports PostgreSQL 15 to 18.  Every PG_VERSION_NUM test lives
 * here, as Citus keeps its in pg_version_compat.h: the feature files are
 * written against the newest API, and the older majors get that API from the
 * definitions below.  A major outside the range stops the build with one
 * message instead of a wall of compiler errors.
 *
 * Differences handled:
 *	- pg_noreturn (18) replaced pg_attribute_noreturn(); it goes before the
 *	  declaration and cannot mark a function pointer.
 *	- index_beginscan() takes an IndexScanInstrumentation pointer (18).
 *	- object_ownercheck() (16) replaced pg_class_ownercheck().
 *	- intervals may be infinite (17): INTERVAL_NOT_FINITE() is false before.
 *	- ExecInsertIndexTuples() takes onlySummarizing (16);
 *	  ExecCheckIndexConstraints() takes the tuple's own tid (18);
 *	  index_insert_cleanup() exists (17); getIdentitySequence() takes the
 *	  Relation (17).
 *
 * Locks: none.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_COMPAT_H
#define BIDGUARD_COMPAT_H

/* The Makefile checks the same range before compiling anything. */
#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "bidguard supports PostgreSQL 15, 16, 17 and 18; see doc/operations.md, Supported versions"
#endif

#include "access/genam.h"
#include "catalog/dependency.h"
#include "executor/executor.h"
#include "catalog/pg_class.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

/* Function specifier for functions that do not return: before the declaration. */
#if PG_VERSION_NUM < 180000
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define pg_noreturn _Noreturn
#elif defined(__GNUC__)
#define pg_noreturn __attribute__((noreturn))
#else
#define pg_noreturn
#endif
#endif

/* index_beginscan() without instrumentation. */
#if PG_VERSION_NUM >= 180000
#define bidguard_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define bidguard_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/* object_ownercheck() for relations, the only class bidguard asks about. */
#if PG_VERSION_NUM < 160000
static inline bool
object_ownercheck(Oid classid, Oid objectid, Oid roleid)
{
	if (classid != RelationRelationId)
		elog(ERROR, "bidguard: object_ownercheck for class %u is not provided", classid);
	return pg_class_ownercheck(objectid, roleid);
}
#endif

/* The executor's index insertion and ON CONFLICT pre-check (direct.c). */
#if PG_VERSION_NUM >= 160000
#define bidguard_exec_insert_index_tuples(rri, slot, estate, nodup, specconflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (nodup), (specconflict), (arbiters), false)
#else
#define bidguard_exec_insert_index_tuples(rri, slot, estate, nodup, specconflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (nodup), (specconflict), (arbiters))
#endif
#if PG_VERSION_NUM >= 180000
#define bidguard_exec_check_index_constraints(rri, slot, estate, conflict, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict), NULL, (arbiters))
#else
#define bidguard_exec_check_index_constraints(rri, slot, estate, conflict, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict), (arbiters))
#endif
#if PG_VERSION_NUM >= 170000
#define bidguard_index_insert_cleanup(ind, info) index_insert_cleanup((ind), (info))
#define bidguard_identity_sequence(rel, attnum) getIdentitySequence((rel), (attnum), true)
#else
#define bidguard_index_insert_cleanup(ind, info) ((void) 0)
#define bidguard_identity_sequence(rel, attnum) \
	getIdentitySequence(RelationGetRelid(rel), (attnum), true)
#endif

/* Infinite intervals exist from PostgreSQL 17 on. */
/* PostgreSQL 17 added LockHeldByMe's "orstronger" */
#if PG_VERSION_NUM >= 170000
#define bidguard_lock_held_by_me(tag, mode) LockHeldByMe((tag), (mode), false)
#else
#define bidguard_lock_held_by_me(tag, mode) LockHeldByMe((tag), (mode))
#endif

#ifndef INTERVAL_NOT_FINITE
#define INTERVAL_NOT_FINITE(i) false
#endif

#endif							/* BIDGUARD_COMPAT_H */
