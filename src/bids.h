/*-------------------------------------------------------------------------
 *
 * bids.h
 *	  The body of bidguard_create_bid (bids.c), which bidguard_create_bids
 *	  (bid_batch.c) runs for each element.
 *
 * src/bids.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIDGUARD_BIDS_H
#define BIDGUARD_BIDS_H

#include "bid_write.h"

extern bool bid_create(Oid nspid, text *marketplace_id, text *posting_id, Jsonb *bid_data,
					   BidRow *bid);

#endif							/* BIDGUARD_BIDS_H */
