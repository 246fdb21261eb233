-- v16: when a contact's fields were last changed, by the event's own time. Fields used to
-- follow the event that arrived last: a backfill of old events (`events import` of a shop's
-- history) imported after live ones put back an address or a consent the customer had since
-- changed. An event older than `fields_at` now only fills what the contact lacks
-- (plan::ingest); a newer one changes fields and moves it on. Milliseconds since the epoch,
-- as `events.occurred_at`.
ALTER TABLE contacts ADD COLUMN fields_at BIGINT;

-- The contacts stored before: their newest event is the latest their fields can come from.
-- A contact without events keeps NULL (any event may change it).
UPDATE contacts
   SET fields_at = (SELECT MAX(e.occurred_at) FROM events e WHERE e.contact_id = contacts.id);
