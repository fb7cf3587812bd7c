-- demo/trade_count.sql — what a run left in a trades table, as one line:
--   trades|violations|bots_with_violations|gap1|gap2|gap3
-- Run with psql -v trades=<table> -v bots=<table>.
--
-- A violation is a pair of consecutive counting (not failed) trades of one bot
-- whose effective times, coalesce(filled_at, created_at), are closer than the
-- bot's cooldown. gap1..gap3 are the three smallest gaps between consecutive
-- trades of a bot, in seconds ('-' when there are fewer gaps).
WITH effective AS (
    SELECT bot_id, coalesce(filled_at, created_at) AS at
      FROM :"trades"
     WHERE status <> 'failed'
), gaps AS (
    SELECT e.bot_id, e.gap, b.cooldown
      FROM (SELECT bot_id, at - lag(at) OVER (PARTITION BY bot_id ORDER BY at) AS gap
              FROM effective) AS e
      JOIN :"bots" AS b USING (bot_id)
     WHERE e.gap IS NOT NULL
), smallest AS (
    SELECT to_char(extract(epoch FROM gap), 'FM999990.0000') AS gap,
           row_number() OVER (ORDER BY gap) AS n
      FROM gaps
     ORDER BY gap
     LIMIT 3
)
SELECT (SELECT count(*) FROM effective)                                AS trades,
       (SELECT count(*) FROM gaps WHERE gap < cooldown)                AS violations,
       (SELECT count(DISTINCT bot_id) FROM gaps WHERE gap < cooldown)  AS bots_with_violations,
       coalesce((SELECT gap FROM smallest WHERE n = 1), '-')           AS gap1,
       coalesce((SELECT gap FROM smallest WHERE n = 2), '-')           AS gap2,
       coalesce((SELECT gap FROM smallest WHERE n = 3), '-')           AS gap3;
