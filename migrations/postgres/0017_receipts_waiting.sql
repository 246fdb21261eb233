-- v17: SMS delivery receipts that came before the record of their own send. The gateway
-- answers the send, and the recorder commits the attempt with the gateway's id a moment
-- later (seconds when the store is busy); a receipt pushed in between matched no attempt,
-- was answered 200 and was lost (a provider does not push a 2xx again). It now waits here,
-- and the commit that records its attempt applies it (store::receipts). One for another
-- system's message never matches: rows older than a day go when the next one comes.
CREATE TABLE receipts_waiting (
    gateway      TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    reference    TEXT,
    code         TEXT,
    text         TEXT,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (gateway, provider_id, status)
);
CREATE INDEX receipts_waiting_reference ON receipts_waiting (reference) WHERE reference IS NOT NULL;
CREATE INDEX receipts_waiting_received ON receipts_waiting (received_at);
