/*-------------------------------------------------------------------------
 *
 * rate_limit.h
 *	  The rate-limit decision (rate_limit.c) that the SQL functions and the
 *	  rate-limit guard on applications' tables (rate_guard.c) share.
 *
 * src/rate_limit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_RATE_LIMIT_H
#define BIDGUARD_RATE_LIMIT_H

#include "datatype/timestamp.h"

typedef struct RateDecision
{
	bool		allowed;
	int32		remaining;		/* units left in the window now */
	Interval   *retry_after;	/* until this call (denied) or the next (admitted) fits */
	Interval   *reset_after;	/* until the window is empty */
} RateDecision;

extern void bidguard_check_rate_limit(int32 max_count, Interval *per);
extern Oid	bidguard_rate_events_relid(Oid nspid, bool check_acl);
extern void bidguard_rate_decide(Oid nspid, Oid events_relid, text *key, int32 max_count,
								 Interval *per, int32 cost, RateDecision *out);
extern bool bidguard_rate_configured(Oid nspid, text *key, int32 *max_count,
									 Interval **per);

#endif							/* BIDGUARD_RATE_LIMIT_H */
