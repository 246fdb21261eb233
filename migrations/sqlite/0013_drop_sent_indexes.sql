-- v13: SQLite drops the two indexes of sent messages, as PostgreSQL did in v10
-- (migrations/postgres/0010_message_queue.sql): a contact's sends are found by
-- `messages_contact` (a contact has few messages), a job's by `messages_job_due`, the same
-- statements on both stores. Every completion inserted into both: without them a dispatch
-- of 200,000 took 164-168 µs of CPU a message instead of 173-179 (README, Benchmarks).
DROP INDEX messages_contact_sent;
DROP INDEX messages_job_sent;
