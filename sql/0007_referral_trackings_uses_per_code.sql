-- max_uses counts the referred users holding a use of a code. A conversion
-- takes a use whenever its referred user holds none of that code's uses: their
-- first conversion through the code, or their first after every earlier one
-- was reversed in a program with reversal_frees_use. Before, only a user's
-- first conversion in the program took one, so a user who came back after a
-- refund, or converted through another code of the same referrer, stood on a
-- code without holding a use, and max_uses could be passed.
--
-- From now on, at every moment: a code's uses_count equals the distinct
-- referred users with a standing (not REVERSED) conversion through it (with
-- reversal_frees_use false, with any conversion through it). Each such user
-- holds the use on one of their conversions through the code (holds_use);
-- 0008 makes that conversion unique per code and user.
ALTER TABLE referral_trackings DROP CONSTRAINT referral_trackings_use_held_by_first;

-- Bring recorded history to the rule: one holder per code and user that
-- should hold a use (an existing holder stays one), none for the others.
CREATE TEMPORARY TABLE use_holders ON COMMIT DROP AS
  SELECT DISTINCT ON (t.code_id, t.referred_user_id) t.id
  FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
  WHERE t.payout_status <> 'REVERSED' OR NOT p.reversal_frees_use
  ORDER BY t.code_id, t.referred_user_id, t.holds_use DESC, t.converted_at, t.id;

UPDATE referral_trackings SET holds_use = false
WHERE holds_use AND id NOT IN (SELECT id FROM use_holders);
UPDATE referral_trackings SET holds_use = true
WHERE NOT holds_use AND id IN (SELECT id FROM use_holders);

-- Each code counts its holders. Where the history already passed max_uses
-- (the defect above), max_uses rises to what was granted, so the code reads
-- EXHAUSTED rather than the CHECK refusing the truth.
UPDATE referral_codes c SET
  uses_count = held.n,
  max_uses = CASE WHEN c.max_uses IS NULL THEN NULL ELSE GREATEST(c.max_uses, held.n) END,
  updated_at = now()
FROM (
  SELECT c2.id, count(t.id)::integer AS n
  FROM referral_codes c2 LEFT JOIN referral_trackings t ON t.code_id = c2.id AND t.holds_use
  GROUP BY c2.id
) held
WHERE held.id = c.id AND c.uses_count <> held.n;
