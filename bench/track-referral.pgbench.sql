-- One TrackReferral (a referred user's first conversion in a ONE_TIME FIXED
-- program without budget or cap) as the service runs it: the statements of
-- src/referrals/track.ts, in order, in one transaction. Kept in step with the
-- repositories by hand. Each transaction picks one of the :codes seeded codes
-- BENCH00001…, as the bench's TrackReferral calls do.
\set n random(1, 9000000000000000000)
\set k random(1, :codes)
BEGIN;
SELECT c.id AS code_id, c.code, c.program_id, p.program_key, c.user_id AS referrer, c.status, c.uses_count, c.max_uses,
  c.expires_at, c.vanity, c.request_id, c.metadata, c.created_at, c.updated_at
  FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id WHERE c.code = 'BENCH' || lpad(:k::text, 5, '0') \gset
SELECT id, program_key, name, reward_kind, reward_amount_minor, reward_basis_points, tiers, reward_currency,
  recurrence, active, max_rewards_per_referrer, conversion_window_days, max_codes_per_user, code_prefix,
  code_length, default_code_max_uses, extract(epoch FROM default_code_ttl)::integer AS default_code_ttl_seconds,
  allow_self_referral, budget_minor, rewards_granted_minor, hold_days, reversal_frees_use, payout_method,
  metadata, created_at, updated_at
  FROM referral_programs WHERE id = :program_id FOR KEY SHARE;
SELECT t.id::text FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
  JOIN referral_codes c ON c.id = t.code_id WHERE t.program_id = :program_id AND t.transaction_id = 'pgb-' || :n;
SELECT t.id::text FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
  JOIN referral_codes c ON c.id = t.code_id
  WHERE t.program_id = :program_id AND t.referred_user_id = 'pgb-user-' || :n AND t.first_conversion;
UPDATE referral_codes SET uses_count = uses_count + 1, updated_at = now()
  WHERE id = :code_id AND (max_uses IS NULL OR uses_count < max_uses) RETURNING id;
WITH t AS (
  INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id,
    transaction_amount_minor, amount_earned_minor, currency, converted_at, payable_at, first_conversion,
    holds_use, reward_slot, metadata)
  VALUES (:program_id, :code_id, :referrer, 'pgb-user-' || :n, 'pgb-' || :n, 1000, 100, 'USD', now(), now(),
    true, true, NULL, '{}'::jsonb)
  RETURNING *
)
SELECT t.id::text, p.program_key, c.code FROM t JOIN referral_programs p ON p.id = t.program_id
  JOIN referral_codes c ON c.id = t.code_id;
COMMIT;
