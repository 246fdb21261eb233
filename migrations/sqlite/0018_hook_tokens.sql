-- v18: the one-time tokens of signed webhooks (Mailgun's). Mailgun signs the timestamp and a
-- token, not the event: a signature block seen once (a stored raw report, a log) could be
-- sent again within the day it is fresh with any event of the sender's choosing, a forged
-- complaint that suppresses a customer. Mailgun's advice is to refuse a token used before;
-- a token comes again with the same body when Mailgun retries (a digest of the body tells),
-- and with another body only as a replay. Kept for as long as a signature stays fresh.
CREATE TABLE hook_tokens (
    provider  TEXT NOT NULL,
    token     TEXT NOT NULL,
    body_sha  TEXT NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX hook_tokens_seen ON hook_tokens (seen_at);
