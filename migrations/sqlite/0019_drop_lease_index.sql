-- v19: SQLite drops `messages_lease`. The reaper, its only reader, finds expired claims by
-- scanning `messages_claimed` (a partial index of the claimed rows, at most about one and a
-- half batches a node) and reading each row's `locked_until`; every claim inserted into the
-- lease index, every renewal moved its entry and every completion deleted it. PostgreSQL
-- dropped it in v10 (`message_queue` has its own).
DROP INDEX messages_lease;
