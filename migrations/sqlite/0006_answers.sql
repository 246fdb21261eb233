-- v5: survey answers, experiments, and what reports read (sqlite). Kept in step with
-- migrations/postgres/0005_answers.sql.

-- The experiment arm a message belongs to: a variant's name, or NULL (no variants). Reminders
-- carry their first message's variant. Held-out contacts have a row in state 'held_out'.
ALTER TABLE messages ADD COLUMN variant TEXT;
-- Reports read one job's messages over a period by due time.
CREATE INDEX messages_job_due ON messages (job_id, due_at);

-- The answer to a survey message (its token): one row per message, changed in place while the
-- answer window is open. Every answer (and every change) is also a survey.answered event.
CREATE TABLE answers (
    message_id   TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    contact_id   TEXT NOT NULL,
    -- nps (0-10) or csat (1-5)
    scale        TEXT NOT NULL,
    score        INTEGER NOT NULL,
    comment      TEXT,
    -- How it came: web (the answer page), sms (a reply), api (POST /v1/answers), cli.
    channel      TEXT NOT NULL,
    answered_at  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- How many times the answer was changed after the first.
    changes      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX answers_job ON answers (job_id, answered_at);
