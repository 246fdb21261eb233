-- v12: the queue trigger of an UPDATE looks for rows coming back into the queue only when
-- one left it. Kept in step with migrations/sqlite/0012_queue_trigger_insert.sql.
--
-- `message_queue_updated` (v10) inserted the rows whose new state is queued and whose old
-- one was not by joining the statement's two transition tables, for every update of
-- `messages`: a claim (256 rows) or a batch of completions, where no row ever comes back.
-- The transition tables have no statistics, and the join's plan changed between runs of
-- the same bench: 8 to 229 ms for 20,000 claimed and completed messages (0.4 to 11 us a
-- message, pg_stat_statements in bench/nodes.sh). A final message comes back only by hand
-- (a retry from the console or the API), so the join now runs only when an old row was
-- outside the queue, which one scan of the old rows tells.
CREATE OR REPLACE FUNCTION message_queue_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE message_queue q
     SET due_at = n.due_at, state = n.state, claim_token = n.claim_token, locked_until = n.locked_until
    FROM new_rows n
   WHERE q.id = n.id AND n.state IN ('scheduled', 'retrying', 'claimed')
     AND (q.state, q.due_at, q.claim_token, q.locked_until)
         IS DISTINCT FROM (n.state, n.due_at, n.claim_token, n.locked_until);
  DELETE FROM message_queue
   WHERE id = ANY (ARRAY(SELECT id FROM new_rows WHERE state NOT IN ('scheduled', 'retrying', 'claimed')));
  IF EXISTS (SELECT 1 FROM old_rows WHERE state NOT IN ('scheduled', 'retrying', 'claimed')) THEN
    INSERT INTO message_queue (id, due_at, state, claim_token, locked_until)
    SELECT n.id, n.due_at, n.state, n.claim_token, n.locked_until
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.state IN ('scheduled', 'retrying', 'claimed')
       AND o.state NOT IN ('scheduled', 'retrying', 'claimed');
  END IF;
  RETURN NULL;
END $$;
