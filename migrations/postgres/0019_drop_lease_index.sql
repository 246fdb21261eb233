-- v19: SQLite drops `messages_lease` (migrations/sqlite/0019_drop_lease_index.sql).
-- PostgreSQL dropped it in v10: nothing changes here.
SELECT 1;
