-- postgres-migrations disable-transaction
-- ListCodes by program and EXHAUSTED (ACTIVE, not expired, uses reached
-- max_uses): the exhausted codes only, in id order. Often none of a program's
-- millions of codes is exhausted; without this index a page walks them all.
-- The predicate names `exhausted` (0021), not uses_count, so conversions keep
-- their HOT updates. CONCURRENTLY, alone in its file: see 0019.
CREATE INDEX CONCURRENTLY referral_codes_program_id_exhausted_idx ON referral_codes (program_id, id)
  WHERE status = 'ACTIVE' AND exhausted;
