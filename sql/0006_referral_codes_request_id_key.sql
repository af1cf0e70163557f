-- The partial index of 0005 replaces the full unique constraint on
-- (program_id, request_id), under the constraint's name, which the service
-- recognises in a unique violation (a concurrent CreateCode with the same
-- request_id).
ALTER TABLE referral_codes DROP CONSTRAINT referral_codes_request_id_key;
ALTER INDEX referral_codes_request_id_partial_key RENAME TO referral_codes_request_id_key;
