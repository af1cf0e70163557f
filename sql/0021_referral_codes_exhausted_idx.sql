-- postgres-migrations disable-transaction
-- ListCodes by program and EXHAUSTED (ACTIVE, not expired, uses_count has
-- reached max_uses): the exhausted codes only, in id order. Often none of a
-- program's millions of codes is exhausted; without this index a page walks
-- them all. The price: uses_count is now an indexed column (in the predicate),
-- so a conversion's update of it can no longer be a HOT update; each such
-- update adds an entry to each index of referral_codes it belongs to (see
-- docs/performance.md, "ListCodes by status"). CONCURRENTLY, alone in its
-- file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_program_id_exhausted_idx ON referral_codes (program_id, id)
  WHERE status = 'ACTIVE' AND max_uses IS NOT NULL AND uses_count >= max_uses;
