-- v11: no plain index on contacts.email. Every lookup of a contact by its address reads
-- `LOWER(email)` (search, erasure, the log's and replies' filters, complaints) through
-- `contacts_email_lower` (v8); `contacts_email` was written for every new contact and every
-- changed address, and read by nothing.
DROP INDEX IF EXISTS contacts_email;
