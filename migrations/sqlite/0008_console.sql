-- v8: the console (SQLite). Kept in step with migrations/postgres/0008_console.sql.

-- What the customer got: the rendered subject and text body of each try of a message, as
-- sent, compressed (zstd of a small JSON object; see src/store/contents.rs). Written in the
-- dispatch recorder's transaction with the attempt it belongs to (`attempt` is the number
-- of the first attempt row of that channel's try). Only content: `retention.content` purges
-- these rows by `created_at` and the message and its attempts stay.
CREATE TABLE message_contents (
    message_id  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, attempt)
);
CREATE INDEX message_contents_created ON message_contents (created_at);

-- What agents did by hand in the console (retry, cancel, suppress, unsuppress, a callback
-- claimed or done), by name: the customer's timeline shows them.
CREATE TABLE agent_actions (
    id          TEXT PRIMARY KEY,
    at          INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    action      TEXT NOT NULL,
    contact_id  TEXT,
    message_id  TEXT,
    channel     TEXT,
    address     TEXT,
    note        TEXT
);
CREATE INDEX agent_actions_contact ON agent_actions (contact_id, at);
CREATE INDEX agent_actions_message ON agent_actions (message_id, at);

-- The console's search box finds a contact by email whatever its case, by index.
CREATE INDEX contacts_email_lower ON contacts (LOWER(email));
-- Health reads the last minutes' attempts, campaigns a job's last 30 days, by index. IF NOT
-- EXISTS: other branches add the same indexes under the same names.
CREATE INDEX IF NOT EXISTS attempts_at ON attempts (at);
CREATE INDEX IF NOT EXISTS messages_job_due ON messages (job_id, due_at);
