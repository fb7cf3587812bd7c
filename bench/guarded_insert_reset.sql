-- bench/guarded_insert_reset.sql — empty the tables before every run.
TRUNCATE g_guarded, g_plain, g_indexed;
CHECKPOINT;
