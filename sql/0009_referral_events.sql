-- The event log: one row per change of a program, code or referral, written
-- by triggers in the statement that makes the change, so there is no event
-- without its change and no change without its event (a rolled-back
-- statement or validate_only run leaves neither).
--
-- Order and resumption are by (xid, id): `xid` is the writing transaction's
-- id. Readers hand out only events of transactions older than their
-- snapshot's xmin (all finished), so an event can never appear behind a
-- position already handed out, however transactions interleave their commits.
--
-- `subject` is the changed row right after the change (to_jsonb of the row);
-- readers turn it back into the table's row type with jsonb_populate_record,
-- so every value, bigints included, comes back exactly.
CREATE TABLE referral_events (
  xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
  id bigint GENERATED ALWAYS AS IDENTITY,
  type text NOT NULL CHECK (type IN (
    'PROGRAM_CREATED', 'PROGRAM_UPDATED', 'CODE_CREATED', 'CODE_UPDATED',
    'REFERRAL_CREATED', 'REFERRAL_PAYOUT_STATUS_CHANGED', 'REFERRAL_REVERSED'
  )),
  -- No foreign key: programs are never deleted, and checking one per event
  -- would cost a batch of a thousand codes a thousand lookups.
  program_id bigint NOT NULL,
  subject jsonb NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (xid, id)
);

CREATE INDEX referral_events_program ON referral_events (program_id, xid, id);

-- The log's one row: the key that signs cursors (so a forged cursor is
-- refused, not followed) and the position up to which events were pruned
-- (a cursor before it has lost events: CURSOR_EXPIRED).
CREATE TABLE referral_event_log (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  cursor_key bytea NOT NULL CHECK (length(cursor_key) >= 16),
  pruned_xid bigint NOT NULL DEFAULT 0,
  pruned_id bigint NOT NULL DEFAULT 0
);

INSERT INTO referral_event_log (cursor_key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- Created rows: one statement-level trigger per table, one INSERT of all the
-- statement's events (a batch of codes costs one statement, not one per code).
CREATE FUNCTION referral_events_programs_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject)
  SELECT 'PROGRAM_CREATED', n.id, to_jsonb(n) FROM created n ORDER BY n.id;
  RETURN NULL;
END $$;

CREATE TRIGGER referral_events_created AFTER INSERT ON referral_programs
  REFERENCING NEW TABLE AS created FOR EACH STATEMENT EXECUTE FUNCTION referral_events_programs_created();

CREATE FUNCTION referral_events_codes_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject)
  SELECT 'CODE_CREATED', n.program_id, to_jsonb(n) FROM created n ORDER BY n.id;
  RETURN NULL;
END $$;

CREATE TRIGGER referral_events_created AFTER INSERT ON referral_codes
  REFERENCING NEW TABLE AS created FOR EACH STATEMENT EXECUTE FUNCTION referral_events_codes_created();

CREATE FUNCTION referral_events_referrals_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject)
  SELECT 'REFERRAL_CREATED', n.program_id, to_jsonb(n) FROM created n ORDER BY n.created_at, n.id;
  RETURN NULL;
END $$;

CREATE TRIGGER referral_events_created AFTER INSERT ON referral_trackings
  REFERENCING NEW TABLE AS created FOR EACH STATEMENT EXECUTE FUNCTION referral_events_referrals_created();

-- Updated rows: row-level triggers whose WHEN names the fields callers see
-- change. Bookkeeping updates (a code's uses_count, a program's granted
-- counter, a referral's use and reward slot) run no trigger at all.
CREATE FUNCTION referral_events_program_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject) VALUES ('PROGRAM_UPDATED', NEW.id, to_jsonb(NEW));
  RETURN NULL;
END $$;

CREATE FUNCTION referral_events_code_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject) VALUES ('CODE_UPDATED', NEW.program_id, to_jsonb(NEW));
  RETURN NULL;
END $$;

CREATE FUNCTION referral_events_referral_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject)
  VALUES (
    CASE WHEN NEW.payout_status = 'REVERSED' THEN 'REFERRAL_REVERSED' ELSE 'REFERRAL_PAYOUT_STATUS_CHANGED' END,
    NEW.program_id,
    to_jsonb(NEW)
  );
  RETURN NULL;
END $$;

-- Only UpdateProgram moves updated_at.
CREATE TRIGGER referral_events_updated AFTER UPDATE ON referral_programs
  FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION referral_events_program_updated();

CREATE TRIGGER referral_events_updated AFTER UPDATE ON referral_codes
  FOR EACH ROW WHEN ((OLD.status, OLD.max_uses, OLD.expires_at, OLD.metadata) IS DISTINCT FROM (NEW.status, NEW.max_uses, NEW.expires_at, NEW.metadata))
  EXECUTE FUNCTION referral_events_code_updated();

CREATE TRIGGER referral_events_updated AFTER UPDATE ON referral_trackings
  FOR EACH ROW WHEN (
    (OLD.payout_status, OLD.payout_reference, OLD.paid_at, OLD.failed_at, OLD.failure_reason, OLD.reversed_at)
    IS DISTINCT FROM (NEW.payout_status, NEW.payout_reference, NEW.paid_at, NEW.failed_at, NEW.failure_reason, NEW.reversed_at)
  )
  EXECUTE FUNCTION referral_events_referral_updated();
