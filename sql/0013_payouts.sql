-- Payouts: rewards paid per (referrer, currency) through a provider (Stripe
-- Connect, Wise) or by hand. See src/payouts/ and docs/payouts.md.

-- A program's smallest payout and largest payout sent without review.
ALTER TABLE referral_programs
  ADD COLUMN min_payout_minor bigint NOT NULL DEFAULT 0
    CONSTRAINT referral_programs_min_payout_minor_range CHECK (min_payout_minor BETWEEN 0 AND 1000000000000),
  ADD COLUMN max_payout_minor bigint
    CONSTRAINT referral_programs_max_payout_minor_range CHECK (max_payout_minor BETWEEN 1 AND 1000000000000000),
  ADD CONSTRAINT referral_programs_payout_range CHECK (max_payout_minor IS NULL OR max_payout_minor >= min_payout_minor);
ALTER TYPE referral_program_snapshot ADD ATTRIBUTE min_payout_minor bigint, ADD ATTRIBUTE max_payout_minor bigint;

-- Where a user is paid: the provider's reference only, never bank details.
CREATE TABLE payout_accounts (
  user_id text PRIMARY KEY
    CONSTRAINT payout_accounts_user_id_length CHECK (char_length(user_id) BETWEEN 1 AND 100),
  provider text NOT NULL
    CONSTRAINT payout_accounts_provider_valid CHECK (provider IN ('STRIPE_CONNECT', 'WISE', 'MANUAL')),
  account_ref text NOT NULL
    CONSTRAINT payout_accounts_account_ref_length CHECK (char_length(account_ref) BETWEEN 1 AND 255),
  -- When the provider last said the account can be paid; manual accounts are not checked.
  verified_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT payout_accounts_account_ref_format CHECK (CASE provider
    WHEN 'STRIPE_CONNECT' THEN account_ref ~ '^acct_[A-Za-z0-9]{1,250}$'
    WHEN 'WISE' THEN account_ref ~ '^[1-9][0-9]{0,18}$'
    ELSE true
  END),
  CONSTRAINT payout_accounts_verified CHECK ((provider = 'MANUAL') = (verified_at IS NULL))
);

-- One CreatePayouts call, kept by its request_id so a retry answers the same.
CREATE TABLE payout_runs (
  request_id text PRIMARY KEY
    CONSTRAINT payout_runs_request_id_length CHECK (char_length(request_id) BETWEEN 1 AND 255),
  currency text NOT NULL
    CONSTRAINT payout_runs_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
  program_id bigint CONSTRAINT payout_runs_program_id_fkey REFERENCES referral_programs (id),
  skipped_without_account integer NOT NULL CONSTRAINT payout_runs_skipped_without_account_non_negative CHECK (skipped_without_account >= 0),
  skipped_below_minimum integer NOT NULL CONSTRAINT payout_runs_skipped_below_minimum_non_negative CHECK (skipped_below_minimum >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payouts (
  -- Also the provider's idempotency key: every attempt sends the same one.
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  request_id text NOT NULL CONSTRAINT payouts_request_id_fkey REFERENCES payout_runs (request_id),
  referrer_user_id text NOT NULL,
  currency text NOT NULL
    CONSTRAINT payouts_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
  -- The program named by the run; NULL when the run paid every program.
  program_id bigint CONSTRAINT payouts_program_id_fkey REFERENCES referral_programs (id),
  provider text NOT NULL
    CONSTRAINT payouts_provider_valid CHECK (provider IN ('STRIPE_CONNECT', 'WISE', 'MANUAL')),
  account_ref text NOT NULL,
  rewards_minor bigint NOT NULL CONSTRAINT payouts_rewards_minor_non_negative CHECK (rewards_minor >= 0),
  clawbacks_minor bigint NOT NULL CONSTRAINT payouts_clawbacks_minor_non_negative CHECK (clawbacks_minor >= 0),
  amount_minor bigint GENERATED ALWAYS AS (rewards_minor - clawbacks_minor) STORED
    CONSTRAINT payouts_amount_minor_positive CHECK (amount_minor > 0),
  referral_count integer NOT NULL CONSTRAINT payouts_referral_count_positive CHECK (referral_count >= 1),
  state text NOT NULL
    CONSTRAINT payouts_state_valid CHECK (state IN ('REQUIRES_REVIEW', 'PENDING', 'PROCESSING', 'PAID', 'FAILED', 'CANCELED')),
  provider_reference text
    CONSTRAINT payouts_provider_reference_length CHECK (char_length(provider_reference) BETWEEN 1 AND 255),
  failure_reason text
    CONSTRAINT payouts_failure_reason_length CHECK (char_length(failure_reason) BETWEEN 1 AND 1024),
  attempt_count integer NOT NULL DEFAULT 0 CONSTRAINT payouts_attempt_count_non_negative CHECK (attempt_count >= 0),
  -- When a worker may send it (again): PENDING now; PROCESSING after the
  -- attempt's lease or the backoff of an ambiguous failure.
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- Milliseconds, as callers' timestamps and page tokens carry them.
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  updated_at timestamptz NOT NULL DEFAULT now(),
  paid_at timestamptz,
  failed_at timestamptz,
  canceled_at timestamptz,
  CONSTRAINT payouts_one_per_referrer_and_run UNIQUE (request_id, referrer_user_id),
  CONSTRAINT payouts_paid CHECK ((state = 'PAID') = (paid_at IS NOT NULL) AND (state <> 'PAID' OR provider_reference IS NOT NULL)),
  CONSTRAINT payouts_failed CHECK ((state = 'FAILED') = (failed_at IS NOT NULL) AND (state <> 'FAILED' OR failure_reason IS NOT NULL)),
  CONSTRAINT payouts_canceled CHECK ((state = 'CANCELED') = (canceled_at IS NOT NULL))
);

-- The workers' queue: payouts a provider sends, by when they are due.
CREATE INDEX payouts_due ON payouts (next_attempt_at) WHERE state IN ('PENDING', 'PROCESSING') AND provider <> 'MANUAL';
-- ListPayouts pages newest first, keyset after the last row.
CREATE INDEX payouts_created_at ON payouts (created_at DESC, id DESC);
CREATE INDEX payouts_referrer ON payouts (referrer_user_id, created_at DESC, id DESC);

-- A reward sits in at most one payout at a time: the one its payout_id names
-- (set only where it is NULL; cleared when that payout fails or is canceled).
-- A clawback (a PAID reward reversed) is recovered by at most one payout:
-- clawback_payout_id.
ALTER TABLE referral_trackings
  ADD COLUMN payout_id uuid CONSTRAINT referral_trackings_payout_id_fkey REFERENCES payouts (id),
  ADD COLUMN clawback_payout_id uuid CONSTRAINT referral_trackings_clawback_payout_id_fkey REFERENCES payouts (id),
  ADD CONSTRAINT referral_trackings_clawback_payout_is_clawback CHECK (clawback_payout_id IS NULL OR clawback);
ALTER TYPE referral_snapshot ADD ATTRIBUTE payout_id uuid, ADD ATTRIBUTE clawback_payout_id uuid;

CREATE INDEX referral_trackings_payout_id ON referral_trackings (payout_id) WHERE payout_id IS NOT NULL;
CREATE INDEX referral_trackings_clawback_payout_id ON referral_trackings (clawback_payout_id) WHERE clawback_payout_id IS NOT NULL;

-- Payout events: made, paid, failed. A payout over every program has no
-- program: the event's program_id is NULL then.
CREATE TYPE payout_snapshot AS (
  id uuid,
  request_id text,
  referrer_user_id text,
  currency text,
  program_id bigint,
  provider text,
  account_ref text,
  rewards_minor bigint,
  clawbacks_minor bigint,
  amount_minor bigint,
  referral_count integer,
  state text,
  provider_reference text,
  failure_reason text,
  attempt_count integer,
  next_attempt_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz,
  paid_at timestamptz,
  failed_at timestamptz,
  canceled_at timestamptz
);

ALTER TABLE referral_events
  ALTER COLUMN program_id DROP NOT NULL,
  ADD COLUMN payout payout_snapshot,
  DROP CONSTRAINT referral_events_type_check,
  ADD CONSTRAINT referral_events_type_check CHECK (type IN (
    'PROGRAM_CREATED', 'PROGRAM_UPDATED', 'CODE_CREATED', 'CODE_UPDATED',
    'REFERRAL_CREATED', 'REFERRAL_PAYOUT_STATUS_CHANGED', 'REFERRAL_REVERSED',
    'PAYOUT_CREATED', 'PAYOUT_PAID', 'PAYOUT_FAILED'
  )),
  DROP CONSTRAINT referral_events_subject_of_type,
  ADD CONSTRAINT referral_events_subject_of_type CHECK (CASE split_part(type, '_', 1)
    WHEN 'PROGRAM' THEN num_nonnulls(program) = 1 AND num_nonnulls(code, referral, payout, previous_code, previous_referral) = 0
    WHEN 'CODE' THEN num_nonnulls(code) = 1 AND num_nonnulls(program, referral, payout, previous_referral) = 0
    WHEN 'REFERRAL' THEN num_nonnulls(referral) = 1 AND num_nonnulls(program, code, payout, previous_code) = 0
    WHEN 'PAYOUT' THEN num_nonnulls(payout) = 1 AND num_nonnulls(program, code, referral, previous_code, previous_referral) = 0
    ELSE false
  END) NOT VALID,
  ADD CONSTRAINT referral_events_program CHECK (program_id IS NOT NULL OR type LIKE 'PAYOUT\_%') NOT VALID;

CREATE FUNCTION referral_events_payouts_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, payout)
  SELECT 'PAYOUT_CREATED', n.program_id, ROW(n.*)::payout_snapshot FROM created n ORDER BY n.referrer_user_id;
  RETURN NULL;
END $$;

CREATE TRIGGER referral_events_created AFTER INSERT ON payouts
  REFERENCING NEW TABLE AS created FOR EACH STATEMENT EXECUTE FUNCTION referral_events_payouts_created();

CREATE FUNCTION referral_events_payout_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, payout) VALUES ('PAYOUT_' || NEW.state, NEW.program_id, ROW(NEW.*)::payout_snapshot);
  RETURN NULL;
END $$;

CREATE TRIGGER referral_events_updated AFTER UPDATE ON payouts
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN ('PAID', 'FAILED'))
  EXECUTE FUNCTION referral_events_payout_settled();

-- A reward reversed while its payout was on its way becomes a clawback when
-- the payout is paid: a change callers see, so an event too. Only a move
-- into REVERSED is a reversal; any other visible change of a referral's
-- payout (this one included) is a REFERRAL_PAYOUT_STATUS_CHANGED.
CREATE OR REPLACE FUNCTION referral_events_referral_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, referral, previous_referral)
  VALUES (
    CASE WHEN NEW.payout_status = 'REVERSED' AND OLD.payout_status <> 'REVERSED' THEN 'REFERRAL_REVERSED' ELSE 'REFERRAL_PAYOUT_STATUS_CHANGED' END,
    NEW.program_id,
    ROW(NEW.*)::referral_snapshot,
    ROW(OLD.*)::referral_snapshot
  );
  RETURN NULL;
END $$;

DROP TRIGGER referral_events_updated ON referral_trackings;
CREATE TRIGGER referral_events_updated AFTER UPDATE ON referral_trackings
  FOR EACH ROW WHEN (
    (OLD.payout_status, OLD.payout_reference, OLD.paid_at, OLD.failed_at, OLD.failure_reason, OLD.reversed_at, OLD.clawback)
    IS DISTINCT FROM (NEW.payout_status, NEW.payout_reference, NEW.paid_at, NEW.failed_at, NEW.failure_reason, NEW.reversed_at, NEW.clawback)
  )
  EXECUTE FUNCTION referral_events_referral_updated();
