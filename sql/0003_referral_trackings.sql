-- One row per conversion. Money is integer minor units.
CREATE TABLE referral_trackings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  program_id bigint NOT NULL
    CONSTRAINT referral_trackings_program_id_fkey REFERENCES referral_programs (id),
  code_id bigint NOT NULL
    CONSTRAINT referral_trackings_code_id_fkey REFERENCES referral_codes (id),
  referrer_user_id text NOT NULL
    CONSTRAINT referral_trackings_referrer_user_id_length CHECK (char_length(referrer_user_id) BETWEEN 1 AND 100),
  referred_user_id text NOT NULL
    CONSTRAINT referral_trackings_referred_user_id_length CHECK (char_length(referred_user_id) BETWEEN 1 AND 100),
  transaction_id text
    CONSTRAINT referral_trackings_transaction_id_length CHECK (char_length(transaction_id) BETWEEN 1 AND 255),
  transaction_amount_minor bigint
    CONSTRAINT referral_trackings_transaction_amount_minor_range CHECK (transaction_amount_minor BETWEEN 0 AND 1000000000000000),
  amount_earned_minor bigint NOT NULL
    CONSTRAINT referral_trackings_amount_earned_minor_non_negative CHECK (amount_earned_minor >= 0),
  currency text NOT NULL
    CONSTRAINT referral_trackings_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
  converted_at timestamptz NOT NULL,
  -- The referred user's first conversion in the program: it carries the
  -- attribution (first referrer wins) and takes one use of its code.
  first_conversion boolean NOT NULL,
  -- Whether this conversion still holds its code's use: uses_count of a code
  -- equals its conversions holding a use (a reversal may give the use back).
  holds_use boolean NOT NULL,
  -- Place among the referrer's rewarded conversions in the program, for
  -- programs with max_rewards_per_referrer or tiers; a reversal frees it.
  reward_slot integer
    CONSTRAINT referral_trackings_reward_slot_positive CHECK (reward_slot >= 1),
  -- converted_at + the program's hold_days when the conversion was recorded.
  payable_at timestamptz NOT NULL,
  payout_status text NOT NULL DEFAULT 'PENDING'
    CONSTRAINT referral_trackings_payout_status_valid CHECK (payout_status IN ('PENDING', 'PAID', 'FAILED', 'REVERSED')),
  payout_reference text
    CONSTRAINT referral_trackings_payout_reference_length CHECK (char_length(payout_reference) <= 255),
  paid_at timestamptz,
  failed_at timestamptz,
  failure_reason text
    CONSTRAINT referral_trackings_failure_reason_length CHECK (char_length(failure_reason) <= 1024),
  reversed_at timestamptz,
  reversal_reason text
    CONSTRAINT referral_trackings_reversal_reason_length CHECK (char_length(reversal_reason) <= 1024),
  -- Reversed after it had been paid: money to recover.
  clawback boolean NOT NULL DEFAULT false,
  metadata jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT referral_trackings_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- Idempotency: one conversion per transaction per program.
  CONSTRAINT referral_trackings_transaction_id_key UNIQUE (program_id, transaction_id),
  -- The timestamps agree with the payout status.
  CONSTRAINT referral_trackings_paid_has_paid_at CHECK (payout_status <> 'PAID' OR paid_at IS NOT NULL),
  CONSTRAINT referral_trackings_failed_has_failed_at CHECK (payout_status <> 'FAILED' OR failed_at IS NOT NULL),
  CONSTRAINT referral_trackings_reversed_has_reversed_at CHECK ((payout_status = 'REVERSED') = (reversed_at IS NOT NULL)),
  CONSTRAINT referral_trackings_clawback_is_reversed CHECK (NOT clawback OR payout_status = 'REVERSED'),
  CONSTRAINT referral_trackings_use_held_by_first CHECK (NOT holds_use OR first_conversion),
  CONSTRAINT referral_trackings_payable_after_conversion CHECK (payable_at >= converted_at)
);

-- Attribution: a referred user has one first conversion per program, so the
-- first referrer to convert them wins, however many callers race.
CREATE UNIQUE INDEX referral_trackings_first_conversion_key
  ON referral_trackings (program_id, referred_user_id) WHERE first_conversion;
-- max_rewards_per_referrer and tiers: one rewarded conversion per place, so
-- racing conversions of one referrer cannot pass the cap.
CREATE UNIQUE INDEX referral_trackings_reward_slot_key
  ON referral_trackings (program_id, referrer_user_id, reward_slot) WHERE reward_slot IS NOT NULL;
-- A referred user's conversions in a program (attribution, replays, windows).
CREATE INDEX referral_trackings_program_referred_idx ON referral_trackings (program_id, referred_user_id);
-- A referrer's rewarded conversions in a program (caps, tiers).
CREATE INDEX referral_trackings_program_referrer_idx ON referral_trackings (program_id, referrer_user_id) WHERE payout_status <> 'REVERSED';
-- History and earnings of a referrer; history of a referred user.
CREATE INDEX referral_trackings_referrer_idx ON referral_trackings (referrer_user_id, converted_at DESC, id DESC);
CREATE INDEX referral_trackings_referred_idx ON referral_trackings (referred_user_id, converted_at DESC, id DESC);
CREATE INDEX referral_trackings_program_idx ON referral_trackings (program_id, converted_at DESC, id DESC);
CREATE INDEX referral_trackings_code_id_idx ON referral_trackings (code_id);
