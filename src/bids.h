/*-------------------------------------------------------------------------
 *
 * bids.h
 *	  What the bid guard's two files share: the bid statuses and their
 *	  transitions (bid_status.c), used by the bid functions (bids.c).
 *
 * src/bids.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_BIDS_H
#define BIDGUARD_BIDS_H

#include "utils/uuid.h"

/* Bid statuses, in the order of the contract. */
typedef enum BidStatus
{
	BID_PENDING,
	BID_SUBMITTED,
	BID_WON,
	BID_LOST,
	BID_WITHDRAWN,
	BID_EXPIRED,
	BID_FAILED,
	BID_NUM_STATUSES,
	BID_UNKNOWN = -1
} BidStatus;

#define BID_IS_ACTIVE(s) ((s) == BID_PENDING || (s) == BID_SUBMITTED)

extern const char *const bid_status_names[BID_NUM_STATUSES];

/*
 * Set by bidguard_create_bid around its own INSERT, whose timestamps are the
 * server's already, so that the trigger does not look for a restore.
 */
extern bool bid_creating;

/* What a lookup found of a bid. */
typedef struct BidRow
{
	int64		bid_id;
	BidStatus	status;
	pg_uuid_t	atomic_event_id;
} BidRow;

/* bids.c */
extern bool bid_create(Oid nspid, text *marketplace_id, text *posting_id, Jsonb *bid_data,
					   BidRow *bid);
extern pg_noreturn void bid_raise_posting_serialization_failure(text *marketplace_id,
																text *posting_id);

/* bid_write.c */
extern BidguardDirect *bid_direct_open(Oid nspid);
extern bool bid_direct_find_active(BidguardDirect *d, text *marketplace_id,
								   text *posting_id, BidRow *bid);
extern bool bid_direct_insert(Oid nspid, BidguardDirect *d, text *marketplace_id,
							  text *posting_id, Jsonb *bid_data, BidRow *bid);

/* bid_status.c */
extern BidStatus bid_status_from_bytes(const char *s, int len);
extern BidStatus bid_status_from_datum(Datum d);
extern bool bid_transition_allowed(BidStatus from, BidStatus to);
extern bool bid_status_is_terminal(BidStatus s);
extern pg_noreturn void bid_raise_bad_transition(int64 bid_id, BidStatus from, BidStatus to,
												 const char *nspname, const char *relname);

#endif							/* BIDGUARD_BIDS_H */
