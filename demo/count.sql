-- demo/count.sql — what a run left in a bids table, as one line:
--   bids|postings|postings_with_duplicates|surplus_active_bids
-- Run with psql -v tbl=<table>. A duplicate is a second (third, ...) *active*
-- bid (pending or submitted) for one (marketplace_id, posting_id).
WITH per_posting AS (
    SELECT count(*) AS bids,
           count(*) FILTER (WHERE status IN ('pending', 'submitted')) AS active
      FROM :"tbl"
     GROUP BY marketplace_id, posting_id
)
SELECT coalesce(sum(bids), 0)                                AS bids,
       count(*)                                              AS postings,
       count(*) FILTER (WHERE active > 1)                    AS postings_with_duplicates,
       coalesce(sum(active - 1) FILTER (WHERE active > 1), 0) AS surplus_active_bids
  FROM per_posting;
