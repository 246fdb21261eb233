-- v9: what each try said lives in its attempt row. Kept in step with
-- migrations/postgres/0009_contents_in_attempts.sql.
--
-- A table of its own cost every sent message three more B-tree inserts (its rows, its
-- primary key on the message id, whose order is random among messages due in the same
-- millisecond, and its `created_at` index): about as much dispatch CPU as the bytes
-- themselves (bench/dispatch.sh, README "Speed"). In the attempt row it costs the bytes and
-- one entry in an index that only grows at its end. `retention.content` empties the column
-- (by `attempts_content_at`); the attempt stays.
ALTER TABLE attempts ADD COLUMN content BLOB;
UPDATE attempts SET content = c.body
  FROM message_contents c
 WHERE c.message_id = attempts.message_id AND c.attempt = attempts.attempt;
DROP TABLE message_contents;
CREATE INDEX attempts_content_at ON attempts (at) WHERE content IS NOT NULL;
