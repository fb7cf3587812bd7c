-- bench/guarded_insert.sql — the tables of bench/guarded_insert.sh: one
-- application table guarded with bidguard_guard_cooldown (trigger + the index
-- it makes), the same table unguarded, and the same table with the guard's
-- index but no trigger (to tell the trigger's cost from the index's).
-- Cooldown 0: every row is judged (lock, index read) and admitted.
SET client_min_messages = warning;
DROP TABLE IF EXISTS g_guarded, g_plain, g_indexed;
CREATE TABLE g_guarded (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, bot_id bigint NOT NULL,
                        created_at timestamptz, filled_at timestamptz);
CREATE TABLE g_plain   (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, bot_id bigint NOT NULL,
                        created_at timestamptz DEFAULT clock_timestamp(), filled_at timestamptz);
CREATE TABLE g_indexed (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, bot_id bigint NOT NULL,
                        created_at timestamptz DEFAULT clock_timestamp(), filled_at timestamptz);
CREATE INDEX ON g_indexed (bot_id, (coalesce(filled_at, created_at)));
SELECT bidguard_guard_cooldown('g_guarded', 'bot_id', 'created_at', '0 seconds', 'filled_at');
