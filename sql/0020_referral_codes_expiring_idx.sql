-- postgres-migrations disable-transaction
-- ListCodes by program and EXPIRED (ACTIVE, expires_at passed): the active
-- codes that have an expiry, in id order; the scan reads each of them until
-- it has a page of passed ones. The time is a parameter, so no partial index
-- can hold "expired" itself; but codes expire in about the order they were
-- made (created_at + the program's default_code_ttl), so the id order meets
-- the expired ones first. (With expires_at as a third key column the scan
-- could test it inside the index, but the generic plan then prefers a bitmap
-- scan of every expired code of the program and a sort of them all.)
-- Neither status nor expires_at changes on a conversion. CONCURRENTLY, alone
-- in its file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_program_id_expiring_idx ON referral_codes (program_id, id)
  WHERE status = 'ACTIVE' AND expires_at IS NOT NULL;
