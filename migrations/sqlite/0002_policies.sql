-- v2: message classes and tokens, callback rows, anniversaries, suppression, recurring
-- triggers (SQLite). Kept in step with migrations/postgres/0002_policies.sql.

-- marketing (consent, caps) or service.
ALTER TABLE messages ADD COLUMN class TEXT NOT NULL DEFAULT 'marketing';
-- Per-message random token ({{message.token}}): matches survey answers to messages.
ALTER TABLE messages ADD COLUMN token TEXT;
-- The one channel this row goes through (a callback task: webhook); NULL = the job's channels.
ALTER TABLE messages ADD COLUMN channel_plan TEXT;
CREATE UNIQUE INDEX messages_token ON messages (token);
CREATE INDEX messages_contact_sent ON messages (contact_id, sent_at) WHERE state = 'sent';
CREATE INDEX messages_job_sent ON messages (job_id, sent_at) WHERE state = 'sent';

-- Date fields of contacts by month and day, so the anniversary scan reads one day's
-- contacts by index instead of every contact.
CREATE TABLE contact_dates (
    contact_id  TEXT NOT NULL,
    field       TEXT NOT NULL,
    month_day   TEXT NOT NULL,
    date        TEXT NOT NULL,
    PRIMARY KEY (contact_id, field)
);
CREATE INDEX contact_dates_day ON contact_dates (field, month_day);

-- Addresses that must not be contacted on a channel (unsubscribe, bounce, STOP reply).
CREATE TABLE suppressions (
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, address)
);

-- The last occurrence each recurring job fired for: catch-up after downtime happens once,
-- and several nodes cannot fire the same occurrence twice.
CREATE TABLE recurring (
    job_id        TEXT PRIMARY KEY,
    last_fire_at  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX events_type_time ON events (type, occurred_at);
