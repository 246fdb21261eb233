-- v7: bounces, complaints, suppressions that expire, the reputation brake (SQLite). Kept in
-- step with migrations/postgres/0007_feedback.sql.

-- A soft-bounce suppression lifts itself: the address is tried again after this instant.
-- NULL: until support removes it.
ALTER TABLE suppressions ADD COLUMN expires_at INTEGER;

-- Every bounce and complaint, from every source: an SMTP refusal (smtp), a delivery status
-- notification (dsn, RFC 3464), a feedback report (arf, RFC 5965) or a provider's event
-- (ses, sendgrid, mailgun, postmark). Kept with the raw report for support. `kind` is hard,
-- soft, rate_limit, policy or complaint; `action` what it did (suppressed, suppressed until
-- a time, counted, nothing). message_id/attempt: the message and attempt it answers, when
-- it could be matched (VERP, Message-ID or the provider's id).
CREATE TABLE bounces (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    source       TEXT NOT NULL,
    address      TEXT NOT NULL,
    domain       TEXT NOT NULL,
    message_id   TEXT,
    attempt      INTEGER,
    job_id       TEXT,
    status       TEXT,
    code         INTEGER,
    detail       TEXT NOT NULL,
    -- The report's own id (a DSN's Message-ID, a provider's event id): a report delivered
    -- twice is kept once.
    report_id    TEXT,
    raw          TEXT,
    action       TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX bounces_report ON bounces (source, report_id);
CREATE INDEX bounces_address ON bounces (address, kind, received_at);
CREATE INDEX bounces_message ON bounces (message_id);
CREATE INDEX bounces_job ON bounces (job_id, received_at);
-- The retention purge (retention.bounces) finds the oldest by time.
CREATE INDEX bounces_time ON bounces (received_at);

-- Who put an address on the suppression list or took it off, and why: kept after a
-- removal, so support can answer "why did this customer stop getting mail".
CREATE TABLE suppression_changes (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    change      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX suppression_changes_address ON suppression_changes (channel, address, at);
CREATE INDEX suppression_changes_time ON suppression_changes (at);

-- The reputation brake: a scope (job:<id> or domain:<sending domain>) whose marketing
-- sends are paused while released_at is NULL. A row stays after release, for the record.
CREATE TABLE brakes (
    scope        TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    engaged_at   INTEGER NOT NULL,
    released_at  INTEGER,
    released_by  TEXT
);
