-- v10: a message's state changes are HOT updates (PostgreSQL). Kept in step with
-- migrations/sqlite/0010_message_queue.sql.
--
-- PostgreSQL rewrites every index of a row whose update changes an indexed column (a
-- column of a partial index's predicate counts), and `state`, `claim_token`, `locked_until`
-- and `sent_at` were all indexed: a claim and a completion each wrote a new entry in nine of
-- the eleven indexes of `messages`, no update was HOT, and a message cost 3.3 KB of WAL
-- (bench/nodes.sh). The queue's indexes move to `message_queue`, one narrow row per
-- message that is scheduled, retrying or claimed, which the triggers below keep equal to
-- `messages` (no statement writes it; `store check` counts any difference, and
-- tests/store_backends.rs and tests/nodes.rs run it after claims, completions, releases,
-- reaps, cancellations and copies). `messages` keeps only indexes on columns a state change leaves
-- alone, so its row is rewritten in place on its page, which a fillfactor leaves room for.
-- Statement triggers (transition tables) do one set-based write per statement, not one per
-- row. Locks: a statement locks `messages` rows first and the queue rows of the same
-- messages after, always in that order, so no two writers wait on each other in a circle.
CREATE TABLE message_queue (
    id           TEXT PRIMARY KEY,
    due_at       BIGINT NOT NULL,
    state        TEXT NOT NULL,
    claim_token  TEXT,
    locked_until BIGINT
);
INSERT INTO message_queue (id, due_at, state, claim_token, locked_until)
SELECT id, due_at, state, claim_token, locked_until FROM messages
 WHERE state IN ('scheduled', 'retrying', 'claimed');
CREATE INDEX message_queue_due ON message_queue (due_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX message_queue_claimed ON message_queue (claim_token) WHERE state = 'claimed';
CREATE INDEX message_queue_lease ON message_queue (locked_until) WHERE state = 'claimed';

CREATE FUNCTION message_queue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_queue (id, due_at, state, claim_token, locked_until)
  SELECT id, due_at, state, claim_token, locked_until FROM new_rows
   WHERE state IN ('scheduled', 'retrying', 'claimed');
  RETURN NULL;
END $$;

-- A row that stays in the queue is updated (only when one of its four columns changed),
-- one that leaves it deleted, one that comes back (a rescheduled final message) inserted.
-- The rows to delete are found by `id = ANY (ARRAY(...))`, an index scan of the primary
-- key: as a join with the transition table (which has no statistics) the delete was planned
-- as a scan of the whole queue per statement, 32 us per completed message at 20,000
-- (pg_stat_statements in bench/nodes.sh). The update stays a join, which measured half the
-- time of the same `ANY` form there (190-220 ms against 460 for 20,000 claims).
CREATE FUNCTION message_queue_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE message_queue q
     SET due_at = n.due_at, state = n.state, claim_token = n.claim_token, locked_until = n.locked_until
    FROM new_rows n
   WHERE q.id = n.id AND n.state IN ('scheduled', 'retrying', 'claimed')
     AND (q.state, q.due_at, q.claim_token, q.locked_until)
         IS DISTINCT FROM (n.state, n.due_at, n.claim_token, n.locked_until);
  DELETE FROM message_queue
   WHERE id = ANY (ARRAY(SELECT id FROM new_rows WHERE state NOT IN ('scheduled', 'retrying', 'claimed')));
  INSERT INTO message_queue (id, due_at, state, claim_token, locked_until)
  SELECT n.id, n.due_at, n.state, n.claim_token, n.locked_until
    FROM new_rows n JOIN old_rows o ON o.id = n.id
   WHERE n.state IN ('scheduled', 'retrying', 'claimed')
     AND o.state NOT IN ('scheduled', 'retrying', 'claimed');
  RETURN NULL;
END $$;

CREATE FUNCTION message_queue_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM message_queue WHERE id = ANY (ARRAY(SELECT id FROM old_rows));
  RETURN NULL;
END $$;

CREATE TRIGGER messages_queue_inserted AFTER INSERT ON messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION message_queue_inserted();
CREATE TRIGGER messages_queue_updated AFTER UPDATE ON messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION message_queue_updated();
CREATE TRIGGER messages_queue_deleted AFTER DELETE ON messages
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION message_queue_deleted();

-- The queue's three now live on message_queue. The two of sent messages by contact and by
-- job indexed `sent_at`, which a completion sets: a contact's sends are found by
-- `messages_contact` (a contact has few messages), a job's by `messages_job_due`.
DROP INDEX messages_due;
DROP INDEX messages_claimed;
DROP INDEX messages_lease;
DROP INDEX messages_contact_sent;
DROP INDEX messages_job_sent;

-- Room on each page for a message's next row version: a claim's new version fits beside
-- the old one, and by the completion the claim's old version is dead and pruned, so both
-- are HOT updates (bench/nodes.sh: at 75 half of them were, at 50 94%; PostgreSQL's CPU per
-- message 0.64-0.76 of the schema before, WAL 0.61; README "Sizing"). The price is space: a
-- page of `messages` stays about half full, twice the table's size; an operator short of
-- disk may set it higher (`ALTER TABLE messages SET (fillfactor = 90)`). Pages written
-- before this migration keep their fill until the table is rewritten (VACUUM FULL or
-- pg_repack, in a quiet hour: both lock or load the table, which a migration must not).
ALTER TABLE messages SET (fillfactor = 50);
