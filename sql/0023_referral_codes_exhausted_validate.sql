-- Scans referral_codes under SHARE UPDATE EXCLUSIVE: code reads and writes go on.
ALTER TABLE referral_codes VALIDATE CONSTRAINT referral_codes_exhausted_agrees;
