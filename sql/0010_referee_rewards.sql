-- Double-sided rewards: what the referred user gets for converting. A
-- program's referee reward (no kind: none) is a rule like the referrer's;
-- each conversion records what it gave the referred user, and the program's
-- budget (rewards_granted_minor) counts both sides.
ALTER TABLE referral_programs
  ADD COLUMN referee_reward_kind text CONSTRAINT referral_programs_referee_reward_kind_check CHECK (referee_reward_kind IN ('FIXED', 'PERCENTAGE')),
  ADD COLUMN referee_amount_minor bigint NOT NULL DEFAULT 0
    CONSTRAINT referral_programs_referee_amount_minor_range CHECK (referee_amount_minor BETWEEN 0 AND 1000000000000),
  ADD COLUMN referee_basis_points integer NOT NULL DEFAULT 0
    CONSTRAINT referral_programs_referee_basis_points_range CHECK (referee_basis_points BETWEEN 0 AND 10000),
  ADD COLUMN referee_max_amount_minor bigint
    CONSTRAINT referral_programs_referee_max_amount_minor_range CHECK (referee_max_amount_minor BETWEEN 1 AND 1000000000000),
  ADD COLUMN referee_external_coupon_id text
    CONSTRAINT referral_programs_referee_external_coupon_id_length CHECK (length(referee_external_coupon_id) BETWEEN 1 AND 200),
  ADD CONSTRAINT referral_programs_referee_reward_rule CHECK (
    CASE referee_reward_kind
      WHEN 'FIXED' THEN referee_amount_minor >= 1 AND referee_basis_points = 0 AND referee_max_amount_minor IS NULL
      WHEN 'PERCENTAGE' THEN referee_basis_points >= 1 AND referee_amount_minor = 0
      ELSE referee_amount_minor = 0 AND referee_basis_points = 0 AND referee_max_amount_minor IS NULL AND referee_external_coupon_id IS NULL
    END
  );

-- A column with a constant default is added without rewriting the table. Its
-- CHECK is NOT VALID: every row written from now on is checked, and the rows
-- already there hold the default 0, so the whole-table scan that validating
-- would take under this migration's lock buys nothing.
ALTER TABLE referral_trackings
  ADD COLUMN referee_reward_minor bigint NOT NULL DEFAULT 0,
  ADD CONSTRAINT referral_trackings_referee_reward_minor_range CHECK (referee_reward_minor >= 0) NOT VALID;
