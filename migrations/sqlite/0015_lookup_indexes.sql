-- v15: three lookups that read a whole table get an index.
--
-- A contact's answers: its export (`contact export`, the API's export) read them with
-- `WHERE contact_id = $1` and its erasure deleted them so, inside its write transaction;
-- both read every answer ever kept (70,000 answers: 6-7 ms, growing with them). An answer
-- is written once per survey reply, so the index costs next to nothing.
CREATE INDEX answers_contact ON answers (contact_id);

-- Callback tasks (`channel_plan` 'webhook'), oldest due first: the console's task list on
-- every view and `aftercare callbacks` read every message for them (0.35-0.41 s for
-- 1,000,000; 0.1 ms with this). Partial: the customers' messages (no plan) are not in it,
-- so the import and dispatch write nothing more to it.
CREATE INDEX messages_plan ON messages (channel_plan, due_at, id) WHERE channel_plan IS NOT NULL;

-- Survey comments past retention, oldest first, for the daily purge's batches: each batch
-- read every answer (a scan and a sort per 500 comments; 70,000 answers: 5.7 ms a batch,
-- 0.1 ms with this). Partial, as `events_content`: only the answers that still keep words.
CREATE INDEX answers_comment ON answers (answered_at) WHERE comment IS NOT NULL;
