-- v3: the SMS channel (PostgreSQL). Kept in step with migrations/sqlite/0003_sms.sql.

-- Tries of the message by dispatch, which `dispatch.retry` counts (max_attempts, backoff).
-- `attempts` counts the rows of the attempt log, which is more when one try goes through
-- several SMS gateways (failover) or channels (fallback to email): each request is a row.
ALTER TABLE messages ADD COLUMN tries BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET tries = attempts;
-- The carrier's last word on a sent SMS (delivered | undelivered), from a delivery receipt;
-- NULL until one arrives (and for email). The state stays `sent`: frequency caps, reminders
-- and `exclude_if_sent` count what was sent, whatever the handset did with it.
ALTER TABLE messages ADD COLUMN delivery TEXT;
-- The SMS gateway an attempt went through (NULL for email, webhook and agents).
ALTER TABLE attempts ADD COLUMN gateway TEXT;
-- Receipts find their attempt by the id the gateway gave at send time.
CREATE INDEX attempts_provider ON attempts (provider_id) WHERE provider_id IS NOT NULL;

-- Delivery receipts as gateways pushed them: one row per attempt and status (a provider that
-- pushes the same receipt twice adds nothing; queued → delivered adds a row).
CREATE TABLE receipts (
    message_id   TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    status       TEXT NOT NULL,
    gateway      TEXT NOT NULL,
    code         TEXT,
    text         TEXT,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (message_id, attempt, status)
);
