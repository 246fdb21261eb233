-- v15: a contact's answers by index. A contact's export (`contact export`, the API's export)
-- read them with `WHERE contact_id = $1` and an erasure deleted them so, inside its write
-- transaction: both read every answer ever kept (70,000 answers: 6-7 ms; growing with them).
CREATE INDEX answers_contact ON answers (contact_id);
