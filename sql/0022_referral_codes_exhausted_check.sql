-- The codes exhausted before 0021 (few: they hold the row locks only of
-- those), then the rule itself as a constraint, for new writes at once (NOT
-- VALID takes its exclusive lock only for a moment); 0023 checks the existing
-- rows without blocking writes.
UPDATE referral_codes SET exhausted = true WHERE max_uses IS NOT NULL AND uses_count >= max_uses AND NOT exhausted;

ALTER TABLE referral_codes ADD CONSTRAINT referral_codes_exhausted_agrees
  CHECK (exhausted = (max_uses IS NOT NULL AND uses_count >= max_uses)) NOT VALID;
