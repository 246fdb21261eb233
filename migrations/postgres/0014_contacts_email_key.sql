-- v14: a contact's address as lookups compare it, in its own indexed column. Lookups by
-- address (erasure, search, the log's and replies' filters, answers by phone, complaints)
-- compared `LOWER(email)`, which lowers ASCII only in SQLite (and follows the database's
-- locale in PostgreSQL), with an address the binary lowered by Unicode's rules: a contact
-- `ÜLLA@example.com` was not found as `ülla@example.com`. The binary now writes `email_key`
-- (the address trimmed and lowered as the suppression list keeps it) with every contact.
ALTER TABLE contacts ADD COLUMN email_key TEXT;

-- Addresses of ASCII only, without surrounding white space, get their key here (ASCII
-- letters lowered by `translate`, which no locale changes, as Rust's `to_lowercase` does
-- for them). The others stay without one for the binary to compute after migrating
-- (`Store::key_contacts`), found through `contacts_unkeyed`, which is empty once it has run
-- and stays empty: every write of a contact writes its key.
UPDATE contacts
   SET email_key = translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
 WHERE email IS NOT NULL
   AND octet_length(email) = char_length(email)
   AND email = btrim(email, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13));

-- Partial: a lookup `email_key = $1` implies the key is there, contacts without an address
-- are not in it, and the search for unkeyed contacts cannot take it for `contacts_unkeyed`.
CREATE INDEX contacts_email_key ON contacts (email_key) WHERE email_key IS NOT NULL;
CREATE INDEX contacts_unkeyed ON contacts (id) WHERE email IS NOT NULL AND email_key IS NULL;
DROP INDEX IF EXISTS contacts_email_lower;
