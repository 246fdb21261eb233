-- v4: inbound SMS replies (SQLite). Kept in step with migrations/postgres/0004_replies.sql.

-- Every SMS a customer sent us through a gateway, so support sees "wrong number" or "the
-- parcel never came" beside the message it answers. `action` is what the reply did:
-- opt_out (a STOP keyword suppressed the number), opt_in (START lifted a STOP), or NULL
-- (a message for a person). `contact_id` is the contact with that phone number when the
-- reply came, if any.
CREATE TABLE replies (
    id           TEXT PRIMARY KEY,
    gateway      TEXT NOT NULL,
    from_number  TEXT NOT NULL,
    contact_id   TEXT,
    text         TEXT NOT NULL,
    action       TEXT,
    received_at  INTEGER NOT NULL,
    -- The provider's id for the message (Twilio MessageSid, Aliyun sequence_id), if any: a
    -- push the provider repeats (after a 5xx or a timeout) is stored once.
    provider_id  TEXT
);
CREATE UNIQUE INDEX replies_provider ON replies (gateway, provider_id);
CREATE INDEX replies_contact ON replies (contact_id, received_at);
CREATE INDEX replies_from ON replies (from_number, received_at);
