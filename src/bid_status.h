/*-------------------------------------------------------------------------
 *
 * bid_status.h
 *	  The bid statuses and their transitions (bid_status.c), used by the bid
 *	  functions (bids.c, bid_batch.c) and their direct writes (bid_write.c).
 *
 * src/bid_status.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_BID_STATUS_H
#define BIDGUARD_BID_STATUS_H

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
 * Set by bidguard_create_bid around its own INSERT through SQL, whose
 * timestamps are the server's already, so that the trigger does not look
 * for a restore.
 */
extern bool bid_creating;

extern BidStatus bid_status_from_bytes(const char *s, int len);
extern BidStatus bid_status_from_datum(Datum d);
extern bool bid_transition_allowed(BidStatus from, BidStatus to);
extern bool bid_status_is_terminal(BidStatus s);
extern pg_noreturn void bid_raise_bad_transition(int64 bid_id, BidStatus from, BidStatus to,
												 const char *nspname, const char *relname);

#endif							/* BIDGUARD_BID_STATUS_H */
