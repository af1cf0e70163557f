-- postgres-migrations disable-transaction
-- ListCodes by EXPIRED alone: the active codes that have an expiry, in id
-- order, oldest (first to expire) first; as 0020 without the program.
-- CONCURRENTLY, alone in its file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_expiring_id_idx ON referral_codes (id) WHERE status = 'ACTIVE' AND expires_at IS NOT NULL;
