-- Event subjects as typed rows instead of jsonb. to_jsonb of every row made
-- an event cost about as much as the row it describes (a batch of a thousand
-- codes lost a quarter of its throughput to its events); a typed row is
-- copied as it is: half the bytes and WAL, and read back without parsing.
--
-- Each subject has a composite type of its own that mirrors its table, column
-- for column in the table's order (the triggers cast ROW(row.*) to it), not
-- the table's row type: a column of a table's row type would forbid adding a
-- column with a default to that table. A migration that adds a column to
-- referral_programs, referral_codes or referral_trackings adds the same
-- attribute to its snapshot type (ALTER TYPE … ADD ATTRIBUTE: older events
-- read it as NULL); test/migrations.test.ts checks that they agree.
CREATE TYPE referral_program_snapshot AS (
  id bigint,
  program_key text,
  name text,
  reward_kind text,
  reward_amount_minor bigint,
  reward_basis_points integer,
  tiers jsonb,
  reward_currency text,
  recurrence text,
  active boolean,
  max_rewards_per_referrer integer,
  conversion_window_days integer,
  max_codes_per_user integer,
  code_prefix text,
  code_length integer,
  default_code_max_uses integer,
  default_code_ttl interval,
  allow_self_referral boolean,
  budget_minor bigint,
  rewards_granted_minor bigint,
  hold_days integer,
  reversal_frees_use boolean,
  payout_method text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  referee_reward_kind text,
  referee_amount_minor bigint,
  referee_basis_points integer,
  referee_max_amount_minor bigint,
  referee_external_coupon_id text
);

CREATE TYPE referral_code_snapshot AS (
  id bigint,
  code text,
  user_id text,
  program_id bigint,
  status text,
  uses_count integer,
  max_uses integer,
  expires_at timestamptz,
  vanity boolean,
  slot integer,
  request_id text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz
);

CREATE TYPE referral_snapshot AS (
  id uuid,
  program_id bigint,
  code_id bigint,
  referrer_user_id text,
  referred_user_id text,
  transaction_id text,
  transaction_amount_minor bigint,
  amount_earned_minor bigint,
  currency text,
  converted_at timestamptz,
  first_conversion boolean,
  holds_use boolean,
  reward_slot integer,
  payable_at timestamptz,
  payout_status text,
  payout_reference text,
  paid_at timestamptz,
  failed_at timestamptz,
  failure_reason text,
  reversed_at timestamptz,
  reversal_reason text,
  clawback boolean,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  referee_reward_minor bigint
);

-- One subject column per kind, set for the event's kind only. An update of a
-- code or a referral keeps the row as it was before too (the statistics fold
-- reads what changed from it); nothing reads a program's previous row.
ALTER TABLE referral_events
  ADD COLUMN program referral_program_snapshot,
  ADD COLUMN code referral_code_snapshot,
  ADD COLUMN referral referral_snapshot,
  ADD COLUMN previous_code referral_code_snapshot,
  ADD COLUMN previous_referral referral_snapshot;

UPDATE referral_events SET
  program = CASE WHEN type LIKE 'PROGRAM\_%' THEN jsonb_populate_record(NULL::referral_program_snapshot, subject) END,
  code = CASE WHEN type LIKE 'CODE\_%' THEN jsonb_populate_record(NULL::referral_code_snapshot, subject) END,
  referral = CASE WHEN type LIKE 'REFERRAL\_%' THEN jsonb_populate_record(NULL::referral_snapshot, subject) END,
  previous_code = CASE WHEN type = 'CODE_UPDATED' THEN jsonb_populate_record(NULL::referral_code_snapshot, previous) END,
  previous_referral = CASE WHEN type LIKE 'REFERRAL\_%' AND previous IS NOT NULL THEN jsonb_populate_record(NULL::referral_snapshot, previous) END;

ALTER TABLE referral_events
  DROP COLUMN subject,
  DROP COLUMN previous,
  -- num_nonnulls: a row value whose fields are all NULL is still a value.
  ADD CONSTRAINT referral_events_subject_of_type CHECK (CASE split_part(type, '_', 1)
    WHEN 'PROGRAM' THEN num_nonnulls(program) = 1 AND num_nonnulls(code, referral, previous_code, previous_referral) = 0
    WHEN 'CODE' THEN num_nonnulls(code) = 1 AND num_nonnulls(program, referral, previous_referral) = 0
    WHEN 'REFERRAL' THEN num_nonnulls(referral) = 1 AND num_nonnulls(program, code, previous_code) = 0
    ELSE false
  END);

CREATE OR REPLACE FUNCTION referral_events_programs_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, program)
  SELECT 'PROGRAM_CREATED', n.id, ROW(n.*)::referral_program_snapshot FROM created n ORDER BY n.id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_codes_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, code)
  SELECT 'CODE_CREATED', n.program_id, ROW(n.*)::referral_code_snapshot FROM created n ORDER BY n.id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_referrals_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, referral)
  SELECT 'REFERRAL_CREATED', n.program_id, ROW(n.*)::referral_snapshot FROM created n ORDER BY n.created_at, n.id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_program_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, program) VALUES ('PROGRAM_UPDATED', NEW.id, ROW(NEW.*)::referral_program_snapshot);
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_code_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, code, previous_code)
  VALUES ('CODE_UPDATED', NEW.program_id, ROW(NEW.*)::referral_code_snapshot, ROW(OLD.*)::referral_code_snapshot);
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_referral_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, referral, previous_referral)
  VALUES (
    CASE WHEN NEW.payout_status = 'REVERSED' THEN 'REFERRAL_REVERSED' ELSE 'REFERRAL_PAYOUT_STATUS_CHANGED' END,
    NEW.program_id,
    ROW(NEW.*)::referral_snapshot,
    ROW(OLD.*)::referral_snapshot
  );
  RETURN NULL;
END $$;
