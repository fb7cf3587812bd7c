-- bench/scale_load_trades.sql — bench/scale.sh's pre-populated trades:
-- trades :from .. :to (trade_id = i) of bots 1 .. :bots (registered before,
-- with bidguard_set_cooldown), each with the trade_executed event its INSERT
-- would have written.  psql variables: from, to, bots, anchor (a timestamptz
-- in the past).
--
-- Trade i belongs to bot (i - 1) % bots + 1 and is that bot's k-th trade,
-- k = (i - 1) / bots, admitted at anchor + k minutes (+ 1 ms per bot), so
-- that a bot's trades are a minute apart, in the past, and no two of them
-- are within any cooldown under 30 s (bidguard_cooldown_violations stays
-- empty).  Statuses by i % 100: 1% failed (status_reason set, no fill), 1%
-- open (never filled), 98% filled within 30 s of admission.  cooldown, the
-- cooldown the trade was admitted under, is the bots' 1 s (NULL for the
-- failed ones, which an INSERT records unjudged).
--
-- The rows are what the triggers leave for a trade inserted with its final
-- status, as a restore or an import does: the event has event_id =
-- atomic_event_id, occurred_at = created_at, the trade's id and bot,
-- new_status = its status, detail {"reason": ...} with a status_reason.
-- Loading as in bench/scale_load_bids.sql: triggers off, uuids sorted.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SET work_mem = '1GB';
SET temp_buffers = '1GB';
SET synchronous_commit = off;
BEGIN;
CREATE TEMP TABLE scale_stage ON COMMIT DROP AS
SELECT (:from - 1 + row_number() OVER (ORDER BY u))::bigint AS i, u
  FROM (SELECT bidguard_uuid_v7() AS u FROM generate_series(:from, :to)) AS g;

CREATE TEMP VIEW scale_new_trades AS
SELECT s.i, s.u, (s.i - 1) % :bots + 1 AS bot_id,
       CASE s.i % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'open' ELSE 'filled' END AS status,
       :'anchor'::timestamptz + ((s.i - 1) / :bots) * interval '1 minute'
                              + ((s.i - 1) % :bots) * interval '1 ms' AS created_at
  FROM scale_stage AS s;

INSERT INTO bidguard_events (event_id, occurred_at, kind, trade_id, bot_id,
                             old_status, new_status, backend_pid, detail)
SELECT u, created_at, 'trade_executed', i, bot_id, NULL, status, 0,
       CASE WHEN status = 'failed' THEN '{"reason": "scale: failed"}'::jsonb ELSE '{}'::jsonb END
  FROM scale_new_trades;

INSERT INTO bidguard_trades (trade_id, bot_id, status, trade_data, status_reason,
                             atomic_event_id, created_at, filled_at, cooldown)
SELECT i, bot_id, status, '{}'::jsonb,
       CASE WHEN status = 'failed' THEN 'scale: failed' END,
       u, created_at,
       CASE WHEN status = 'filled' THEN created_at + (i % 30000) * interval '1 ms' END,
       CASE WHEN status <> 'failed' THEN interval '1 second' END
  FROM scale_new_trades;
DROP VIEW scale_new_trades;
COMMIT;
