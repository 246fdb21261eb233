-- v10: the queue by name (SQLite). Kept in step with
-- migrations/postgres/0010_message_queue.sql.
--
-- On PostgreSQL `message_queue` is a table the schema keeps, so a message's state change
-- is a HOT update of `messages`. SQLite rewrites a row's changed index entries only, so
-- the partial indexes on `messages` stay, and the queue is a view of them: the statements
-- that search the queue are the same on both stores, and SQLite flattens the view into
-- `messages` with its `messages_due`, `messages_claimed` and `messages_lease` indexes.
CREATE VIEW message_queue AS
SELECT id, due_at, state, claim_token, locked_until FROM messages
 WHERE state IN ('scheduled', 'retrying', 'claimed');
