-- v12: on PostgreSQL the queue trigger of an UPDATE looks for rows coming back into the
-- queue only when one left it (migrations/postgres/0012_queue_trigger_insert.sql). On SQLite
-- `message_queue` is a view of `messages` (v10), kept by no trigger: nothing changes here.
SELECT 1;
