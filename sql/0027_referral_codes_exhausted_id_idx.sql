-- postgres-migrations disable-transaction
-- ListCodes by EXHAUSTED alone: the exhausted codes in id order; as 0024
-- without the program (its predicate names `exhausted`, not uses_count, so
-- conversions stay HOT updates). CONCURRENTLY, alone in its file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_exhausted_id_idx ON referral_codes (id) WHERE status = 'ACTIVE' AND exhausted;
