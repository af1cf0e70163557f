-- Referral programs: the reward rule, the limits and the code format.
-- Every rule the service validates is also a constraint here, so a bug in the
-- service cannot store an invalid program.
CREATE TABLE referral_programs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  program_key text NOT NULL
    CONSTRAINT referral_programs_program_key_format CHECK (program_key ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
  name text NOT NULL
    CONSTRAINT referral_programs_name_length CHECK (char_length(name) BETWEEN 1 AND 255),
  reward_kind text NOT NULL
    CONSTRAINT referral_programs_reward_kind_valid CHECK (reward_kind IN ('FIXED', 'PERCENTAGE')),
  reward_amount_minor bigint NOT NULL DEFAULT 0,
  reward_basis_points integer NOT NULL DEFAULT 0,
  -- [{"min_prior_rewards": n, "reward_amount_minor": n, "reward_basis_points": n}, ...]
  tiers jsonb NOT NULL DEFAULT '[]'
    CONSTRAINT referral_programs_tiers_array CHECK (jsonb_typeof(tiers) = 'array' AND jsonb_array_length(tiers) <= 20),
  reward_currency text NOT NULL
    CONSTRAINT referral_programs_reward_currency_format CHECK (reward_currency ~ '^[A-Z]{3}$'),
  recurrence text NOT NULL DEFAULT 'ONE_TIME'
    CONSTRAINT referral_programs_recurrence_valid CHECK (recurrence IN ('ONE_TIME', 'RECURRING')),
  active boolean NOT NULL DEFAULT true,
  max_rewards_per_referrer integer
    CONSTRAINT referral_programs_max_rewards_per_referrer_range CHECK (max_rewards_per_referrer BETWEEN 1 AND 1000),
  conversion_window_days integer
    CONSTRAINT referral_programs_conversion_window_days_range CHECK (conversion_window_days BETWEEN 1 AND 365),
  max_codes_per_user integer NOT NULL DEFAULT 5
    CONSTRAINT referral_programs_max_codes_per_user_range CHECK (max_codes_per_user BETWEEN 1 AND 1000),
  code_prefix text NOT NULL DEFAULT ''
    CONSTRAINT referral_programs_code_prefix_format CHECK (code_prefix ~ '^[A-Z0-9]{0,8}$'),
  code_length integer NOT NULL DEFAULT 10
    CONSTRAINT referral_programs_code_length_range CHECK (code_length BETWEEN 6 AND 20),
  default_code_max_uses integer
    CONSTRAINT referral_programs_default_code_max_uses_range CHECK (default_code_max_uses BETWEEN 1 AND 1000000000),
  default_code_ttl interval
    CONSTRAINT referral_programs_default_code_ttl_range CHECK (default_code_ttl BETWEEN interval '1 second' AND interval '3650 days'),
  allow_self_referral boolean NOT NULL DEFAULT false,
  budget_minor bigint
    CONSTRAINT referral_programs_budget_minor_range CHECK (budget_minor BETWEEN 0 AND 1000000000000000),
  rewards_granted_minor bigint NOT NULL DEFAULT 0
    CONSTRAINT referral_programs_rewards_granted_minor_non_negative CHECK (rewards_granted_minor >= 0),
  hold_days integer NOT NULL DEFAULT 0
    CONSTRAINT referral_programs_hold_days_range CHECK (hold_days BETWEEN 0 AND 365),
  reversal_frees_use boolean NOT NULL DEFAULT true,
  payout_method text NOT NULL DEFAULT 'manual'
    CONSTRAINT referral_programs_payout_method_valid CHECK (payout_method IN ('manual', 'stripe_connect', 'wise', 'paypal')),
  metadata jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT referral_programs_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT referral_programs_program_key_key UNIQUE (program_key),
  CONSTRAINT referral_programs_name_key UNIQUE (name),
  -- A FIXED program pays an amount, a PERCENTAGE program basis points; never both.
  CONSTRAINT referral_programs_reward_rule CHECK (
    (reward_kind = 'FIXED' AND reward_amount_minor BETWEEN 1 AND 1000000000000 AND reward_basis_points = 0)
    OR (reward_kind = 'PERCENTAGE' AND reward_basis_points BETWEEN 1 AND 10000 AND reward_amount_minor = 0)
  ),
  -- The budget is never exceeded, whatever the service does.
  CONSTRAINT referral_programs_within_budget CHECK (budget_minor IS NULL OR rewards_granted_minor <= budget_minor)
);

-- ListPrograms filtered by active, in key order.
CREATE INDEX referral_programs_active_program_key_idx ON referral_programs (active, program_key);
