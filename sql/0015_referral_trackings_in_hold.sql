-- postgres-migrations disable-transaction
-- GetUserEarnings' one read of conversions: a referrer's PENDING rewards
-- still in hold (payable_at after now), which it subtracts from the PENDING
-- total of referrer_earnings (0014) to tell pending from payable. The index
-- holds what that sum needs, so it reads the index alone. CONCURRENTLY (hence
-- outside a transaction, and alone in its file) so that building it does not
-- block conversions; if a build fails, drop the INVALID index it leaves
-- before starting the service again.
CREATE INDEX CONCURRENTLY referral_trackings_in_hold ON referral_trackings (referrer_user_id, payable_at)
  INCLUDE (program_id, currency, amount_earned_minor) WHERE payout_status = 'PENDING';
