-- postgres-migrations disable-transaction
-- A referred user holds at most one use of a code: of two conversions racing
-- to take that user's use, the second violates this index and decides again
-- (then standing on the first one's use). It also finds the holder for
-- ValidateCode, TrackReferral and ReverseReferral. CONCURRENTLY (hence
-- outside a transaction, and alone in its file) so that building it does not
-- block conversions; if a build fails, drop the INVALID index it leaves before
-- starting the service again.
CREATE UNIQUE INDEX CONCURRENTLY referral_trackings_use_key ON referral_trackings (code_id, referred_user_id) WHERE holds_use;
