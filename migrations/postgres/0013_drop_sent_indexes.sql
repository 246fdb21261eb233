-- v13: SQLite drops `messages_contact_sent` and `messages_job_sent`
-- (migrations/sqlite/0013_drop_sent_indexes.sql). PostgreSQL dropped them in v10: nothing
-- changes here.
SELECT 1;
