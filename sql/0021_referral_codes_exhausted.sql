-- Whether a code's uses have reached its max_uses, as a column of its own, so
-- that ListCodes by EXHAUSTED can walk a partial index on it (0024) while
-- uses_count stays out of every index: a conversion's update of uses_count
-- then remains a HOT update (no index entries, half the WAL), and only the
-- update that exhausts a code, or frees it again (a refund, UpdateCode
-- raising max_uses), changes an indexed column. An index whose predicate
-- named uses_count made every conversion's update non-HOT.
--
-- Adding a column with a constant default rewrites nothing. A BEFORE trigger
-- keeps it on every update of uses_count or max_uses; an insert starts with no
-- uses and max_uses ≥ 1, so false is right. 0022 backfills it and adds the
-- CHECK that it always agrees.
ALTER TABLE referral_codes ADD COLUMN exhausted boolean NOT NULL DEFAULT false;
-- The events' code snapshot mirrors the table (0012).
ALTER TYPE referral_code_snapshot ADD ATTRIBUTE exhausted boolean;

CREATE FUNCTION referral_codes_exhausted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.exhausted := NEW.max_uses IS NOT NULL AND NEW.uses_count >= NEW.max_uses;
  RETURN NEW;
END $$;

CREATE TRIGGER referral_codes_exhausted BEFORE UPDATE OF uses_count, max_uses ON referral_codes
  FOR EACH ROW EXECUTE FUNCTION referral_codes_exhausted();
