-- demo/schema.sql — the incident's `bids` table, as the scanners had it.
--
-- Shaped like the ArbitrageAI `bids` model from the bid-deduplication write-up:
-- an index on (marketplace_id, posting_id) but NO unique constraint on active
-- bids. (The write-up's UNIQUE (marketplace_id, posting_id, status) is not that
-- rule: it allows a `pending` and a `submitted` bid side by side, and forbids a
-- second `lost` bid for a posting.) The only guard is the workers' own
-- "SELECT ... FOR UPDATE, then INSERT if nothing was found" — see naive.pgbench.

SET client_min_messages = warning;
DROP TABLE IF EXISTS bids;

CREATE TABLE bids (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    marketplace_id  text        NOT NULL,
    posting_id      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'submitted', 'won', 'lost',
                          'withdrawn', 'expired', 'failed')),
    bid_data        jsonb       NOT NULL DEFAULT '{}',
    atomic_event_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX bids_marketplace_posting ON bids (marketplace_id, posting_id);
