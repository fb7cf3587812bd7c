/*-------------------------------------------------------------------------
 *
 * bid_write.h
 *	  The bid functions' direct reads and writes of bidguard_bids
 *	  (bid_write.c), used by bids.c and bid_batch.c.
 *
 * src/bid_write.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_BID_WRITE_H
#define BIDGUARD_BID_WRITE_H

#include "utils/uuid.h"

#include "bid_status.h"

/* What a lookup found of a bid. */
typedef struct BidRow
{
	int64		bid_id;
	BidStatus	status;
	pg_uuid_t	atomic_event_id;
} BidRow;

extern BidguardDirect *bid_direct_open(Oid nspid);
extern bool bid_direct_find_active(BidguardDirect *d, text *marketplace_id,
								   text *posting_id, BidRow *bid);
extern bool bid_direct_insert(Oid nspid, BidguardDirect *d, text *marketplace_id,
							  text *posting_id, Jsonb *bid_data, BidRow *bid);
extern pg_noreturn void bid_raise_posting_serialization_failure(text *marketplace_id,
																text *posting_id);

#endif							/* BIDGUARD_BID_WRITE_H */
