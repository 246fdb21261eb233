-- v19: two indexes lose the entries nothing reads (PostgreSQL). Kept in step with
-- migrations/sqlite/0019_unread_index_entries.sql.
--
-- An event import writes some twenty B-tree entries an event, and the schema's entries are
-- what bounds it (README, Benchmarks: `bench/import_floor.sh`). Two of them were never read:
-- without them an import of 100,000 email-only deliveries into 200,000 writes 2,244 bytes
-- an event instead of 2,346 (WAL and checkpoints, SQLite) and runs 1.7% fewer instructions.
--
-- `contacts_phone` had an entry for every contact without a number (an email-only import
-- wrote one per new contact). Every lookup by number asks `phone = $n` (a reply's sender,
-- support's search, an answer given by phone, an erasure, the delivery log), which no NULL
-- matches. Partial now, as `contacts_email_key` is: both stores still take it for
-- `phone = $n`, which implies a number (tests/store_backends.rs,
-- `the_v19_upgrade_keeps_lookups_by_number_on_their_index`).
DROP INDEX contacts_phone;
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone IS NOT NULL;

-- `events_time` (v5) was read by the purge of old events alone, which now goes type by
-- type down `events_type_time` (type, occurred_at), the index reports read: the next
-- type is one step down it, a type's old events come in its order (src/store/retention.rs,
-- `old_events_are_read_type_by_type_from_their_index`).
DROP INDEX events_time;
