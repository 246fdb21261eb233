-- v5: retention and erasure (SQLite). Kept in step with migrations/postgres/0005_lifecycle.sql.

-- Daily figures that outlive retention: when the purge removes finished messages it adds
-- them here first, in the same transaction, so a report over last year reads these rows plus
-- the messages still stored and gets the same numbers as before the purge. One row per UTC
-- day of the outcome (sent_at, else the last update), job, step, variant, channel and
-- outcome (sent, failed, cancelled; delivered and undelivered count sent SMS again by their
-- receipt). `variant` is an A/B variant's name, NULL for none. `id` is those values joined
-- by '|', so a purge batch adds to a row with one upsert on both backends (a NULL variant
-- would never match in a unique index).
CREATE TABLE daily_counts (
    id       TEXT PRIMARY KEY,
    day      TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    step     INTEGER NOT NULL,
    variant  TEXT,
    channel  TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    n        INTEGER NOT NULL
);
CREATE INDEX daily_counts_job_day ON daily_counts (job_id, day);

-- Work one node of several does on a schedule (the daily purge): a conditional update of
-- last_run_at decides which node runs it, as `recurring` does for cron occurrences.
CREATE TABLE housekeeping (
    task         TEXT PRIMARY KEY,
    last_run_at  INTEGER NOT NULL,
    node         TEXT
);

-- The purge finds what is past retention by index, in small batches, without reading what
-- it keeps. Monotone columns (creation, attempt and receipt times) make cheap appends.
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX attempts_at ON attempts (at);
CREATE INDEX events_time ON events (occurred_at);
-- Events whose payload has not been cleared yet (retention.content).
CREATE INDEX events_content ON events (occurred_at) WHERE data <> '{}';
CREATE INDEX replies_time ON replies (received_at);
