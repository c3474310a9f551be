-- A scaling event's key, chosen by the scheduler when it queues the row:
-- a statement retried after a lost answer (its first try may have
-- committed) then finds the row there and writes neither it nor its audit
-- row again. Rows from before have none.
ALTER TABLE scaling_events ADD COLUMN event_key text;
CREATE UNIQUE INDEX scaling_events_key ON scaling_events (event_key);
