-- One TrackReferral (a referred user's first conversion in a ONE_TIME FIXED
-- program without budget or cap) as the service runs it: the two statements
-- of src/referrals/repository.ts (findConversionContext, recordConversion),
-- each its own transaction, as src/referrals/track.ts sends them, both
-- prepared (pgbench -M prepared), as the service prepares them. Kept in step
-- with the repository by hand. Each conversion picks one of the :codes seeded
-- codes BENCH00001…, as the bench's TrackReferral calls do.
\set n random(1, 9000000000000000000)
\set k random(1, :codes)
SELECT c.id AS code_id, c.code, c.user_id AS referrer_user_id, c.status AS code_status, c.uses_count, c.max_uses, c.expires_at,
  p.id AS program_id, p.program_key, p.active, p.allow_self_referral, p.recurrence, p.conversion_window_days,
  p.reward_kind, p.reward_amount_minor, p.reward_basis_points, p.tiers, p.reward_currency,
  p.max_rewards_per_referrer, p.budget_minor, p.rewards_granted_minor, p.hold_days,
  replay.id AS replay_id,
  first.id AS first_id, first.referrer_user_id AS first_referrer_user_id, first.code_id AS first_code_id,
  first.converted_at AS first_converted_at,
  CASE WHEN (p.max_rewards_per_referrer IS NOT NULL OR p.tiers <> '[]'::jsonb) THEN rewarded.prior END AS prior_rewards,
  CASE WHEN (p.max_rewards_per_referrer IS NOT NULL OR p.tiers <> '[]'::jsonb) THEN (
    SELECT min(place)::integer FROM generate_series(1, COALESCE(p.max_rewards_per_referrer, rewarded.prior + 1)) AS place
    WHERE NOT EXISTS (
      SELECT 1 FROM referral_trackings taken
      WHERE taken.program_id = c.program_id AND taken.referrer_user_id = c.user_id AND taken.reward_slot = place
    )
  ) END AS reward_place
FROM referral_codes c
JOIN referral_programs p ON p.id = c.program_id
LEFT JOIN LATERAL (
  SELECT r.id::text AS id FROM referral_trackings r
  WHERE r.program_id = c.program_id AND r.transaction_id = 'pgb-' || :n
  LIMIT 1
) replay ON true
LEFT JOIN LATERAL (
  SELECT r.id::text AS id, r.referrer_user_id, r.code_id, r.converted_at FROM referral_trackings r
  WHERE r.program_id = c.program_id AND r.referred_user_id = 'pgb-user-' || :n AND r.first_conversion
  LIMIT 1
) first ON true
CROSS JOIN LATERAL (
  SELECT count(*)::integer AS prior FROM referral_trackings r
  WHERE (p.max_rewards_per_referrer IS NOT NULL OR p.tiers <> '[]'::jsonb) AND r.program_id = c.program_id
    AND r.referrer_user_id = c.user_id AND r.payout_status <> 'REVERSED'
) rewarded
WHERE c.code = 'BENCH' || lpad(:k::text, 5, '0') \gset
WITH program AS (
  SELECT id, budget_minor IS NOT NULL AS budgeted FROM referral_programs
  WHERE id = :program_id AND active
  FOR KEY SHARE
), use AS (
  UPDATE referral_codes c SET uses_count = c.uses_count + 1, updated_at = now()
  FROM program
  WHERE c.id = :code_id AND true::boolean
  RETURNING c.id
), granted AS (
  UPDATE referral_programs p SET rewards_granted_minor = p.rewards_granted_minor + 100::bigint
  FROM program
  WHERE p.id = program.id AND program.budgeted AND 100::bigint > 0
  RETURNING p.id
), t AS (
  INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id,
    transaction_amount_minor, amount_earned_minor, currency, converted_at, payable_at, first_conversion,
    holds_use, reward_slot, metadata)
  SELECT program.id, :code_id, :referrer_user_id, 'pgb-user-' || :n, 'pgb-' || :n, 1000, 100::bigint, 'USD',
    now(), now(), true::boolean, true::boolean, NULL, '{}'::jsonb
  FROM program
  WHERE (NOT true::boolean OR EXISTS (SELECT 1 FROM use))
    AND (NOT program.budgeted OR 100::bigint = 0 OR EXISTS (SELECT 1 FROM granted))
  RETURNING *
)
SELECT t.id::text AS id, t.program_id, p.program_key, t.code_id, c.code, t.referrer_user_id, t.referred_user_id,
  t.transaction_id, t.transaction_amount_minor, t.amount_earned_minor, t.currency, t.converted_at, t.payable_at,
  t.first_conversion, t.payout_status, t.payout_reference, t.paid_at, t.failed_at, t.failure_reason,
  t.reversed_at, t.reversal_reason, t.clawback, t.metadata, t.created_at, t.updated_at
FROM t
JOIN referral_programs p ON p.id = t.program_id
JOIN referral_codes c ON c.id = t.code_id;
