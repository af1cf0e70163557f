-- postgres-migrations disable-transaction
-- ListCodes by a rare stored status alone (INACTIVE, SUSPENDED; no program,
-- no user): one range of this index in page (id) order. 0019's index leads
-- with program_id, so across programs it would need a sort of every such
-- code. Status changes only through UpdateCode. CONCURRENTLY, alone in its
-- file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_status_id_idx ON referral_codes (status, id) WHERE status <> 'ACTIVE';
