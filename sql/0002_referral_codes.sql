-- Referral codes. EXPIRED and EXHAUSTED are derived at read time, never stored.
CREATE TABLE referral_codes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Stored normalized: upper-case, trimmed. Generated: [PREFIX-]XXXXXXXXXX over
  -- Crockford base32; vanity: 4-20 of [A-Z0-9_-].
  code text NOT NULL
    CONSTRAINT referral_codes_code_format CHECK (code ~ '^[A-Z0-9_-]{4,29}$'),
  user_id text NOT NULL
    CONSTRAINT referral_codes_user_id_length CHECK (char_length(user_id) BETWEEN 1 AND 100),
  program_id bigint NOT NULL
    CONSTRAINT referral_codes_program_id_fkey REFERENCES referral_programs (id),
  status text NOT NULL DEFAULT 'ACTIVE'
    CONSTRAINT referral_codes_status_valid CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
  uses_count integer NOT NULL DEFAULT 0
    CONSTRAINT referral_codes_uses_count_non_negative CHECK (uses_count >= 0),
  max_uses integer
    CONSTRAINT referral_codes_max_uses_range CHECK (max_uses BETWEEN 1 AND 1000000000),
  expires_at timestamptz,
  vanity boolean NOT NULL DEFAULT false,
  -- Which of the user's max_codes_per_user places in the program this code
  -- takes: the unique index below makes the per-user limit race-free.
  slot integer NOT NULL
    CONSTRAINT referral_codes_slot_range CHECK (slot BETWEEN 1 AND 1000),
  -- CreateCode idempotency key.
  request_id text
    CONSTRAINT referral_codes_request_id_length CHECK (char_length(request_id) BETWEEN 1 AND 255),
  metadata jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT referral_codes_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT referral_codes_code_key UNIQUE (code),
  -- uses_count never passes max_uses, however many callers race.
  CONSTRAINT referral_codes_within_max_uses CHECK (max_uses IS NULL OR uses_count <= max_uses),
  CONSTRAINT referral_codes_user_slot_key UNIQUE (program_id, user_id, slot),
  CONSTRAINT referral_codes_request_id_key UNIQUE (program_id, request_id)
);

-- ListCodes by user (any program), in creation order.
CREATE INDEX referral_codes_user_id_id_idx ON referral_codes (user_id, id);
-- ListCodes by program.
CREATE INDEX referral_codes_program_id_id_idx ON referral_codes (program_id, id);
