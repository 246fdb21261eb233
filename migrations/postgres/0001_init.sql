-- aftercare schema v1 (PostgreSQL). Instants are milliseconds since the Unix epoch (UTC);
-- JSON is stored as text. Kept in step with migrations/sqlite/0001_init.sql.

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    email       TEXT,
    phone       TEXT,
    locale      TEXT,
    timezone    TEXT,
    birthday    TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    consent     TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX contacts_email ON contacts (email);
CREATE INDEX contacts_phone ON contacts (phone);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    contact_id      TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    occurred_offset BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    order_id        TEXT,
    data            TEXT NOT NULL,
    digest          TEXT NOT NULL
);
CREATE INDEX events_contact_type ON events (contact_id, type);
CREATE INDEX events_order ON events (order_id);

-- The outbox: the one source of truth for what will be sent. The store is the timer.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL,
    contact_id    TEXT NOT NULL,
    event_id      TEXT,
    step          BIGINT NOT NULL,
    dedupe_key    TEXT NOT NULL,
    template      TEXT NOT NULL,
    state         TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    not_after     BIGINT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    channel       TEXT,
    address       TEXT,
    claim_token   TEXT,
    locked_by     TEXT,
    locked_until  BIGINT,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    sent_at       BIGINT,
    UNIQUE (job_id, dedupe_key, step)
);
CREATE INDEX messages_due ON messages (due_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX messages_claimed ON messages (claim_token) WHERE state = 'claimed';
CREATE INDEX messages_lease ON messages (locked_until) WHERE state = 'claimed';
CREATE INDEX messages_contact ON messages (contact_id, job_id);
CREATE INDEX messages_event ON messages (event_id);

-- Every delivery attempt, never updated: what support reads.
CREATE TABLE attempts (
    message_id   TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    channel      TEXT NOT NULL,
    address      TEXT,
    outcome      TEXT NOT NULL,
    code         BIGINT,
    detail       TEXT,
    provider_id  TEXT,
    node         TEXT,
    duration_ms  BIGINT,
    PRIMARY KEY (message_id, attempt)
);
