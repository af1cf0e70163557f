-- Program statistics, folded from the event log by one replica at a time
-- (src/stats/fold.ts): conversions never touch these tables, so they add no
-- contention to them. Per-day (UTC) buckets: a conversion counts on the day
-- it happened (converted_at), a code on the day it was created.

-- Updates keep the row as it was before the change too, so a fold knows what
-- changed (a payout that was PAID, a code that was ACTIVE) without keeping
-- state of its own.
ALTER TABLE referral_events ADD COLUMN previous jsonb;

CREATE OR REPLACE FUNCTION referral_events_program_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject, previous) VALUES ('PROGRAM_UPDATED', NEW.id, to_jsonb(NEW), to_jsonb(OLD));
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_code_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject, previous) VALUES ('CODE_UPDATED', NEW.program_id, to_jsonb(NEW), to_jsonb(OLD));
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION referral_events_referral_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO referral_events (type, program_id, subject, previous)
  VALUES (
    CASE WHEN NEW.payout_status = 'REVERSED' THEN 'REFERRAL_REVERSED' ELSE 'REFERRAL_PAYOUT_STATUS_CHANGED' END,
    NEW.program_id,
    to_jsonb(NEW),
    to_jsonb(OLD)
  );
  RETURN NULL;
END $$;

CREATE TABLE program_stats_daily (
  program_id bigint NOT NULL,
  day date NOT NULL,
  codes_issued bigint NOT NULL DEFAULT 0,
  -- Of the codes issued that day, those whose stored status is ACTIVE.
  codes_active bigint NOT NULL DEFAULT 0,
  conversions bigint NOT NULL DEFAULT 0,
  -- Referred users whose first conversion in the program was that day.
  referred_users bigint NOT NULL DEFAULT 0,
  referrer_granted_minor bigint NOT NULL DEFAULT 0,
  referrer_reversed_minor bigint NOT NULL DEFAULT 0,
  -- Rewards of that day's conversions that are PAID now.
  referrer_paid_minor bigint NOT NULL DEFAULT 0,
  referee_granted_minor bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (program_id, day)
);

-- A referrer's standing conversions and rewards (net of reversals) and what
-- of them is paid, per day, for leaderboards over a range.
CREATE TABLE referrer_stats_daily (
  program_id bigint NOT NULL,
  referrer_user_id text NOT NULL,
  day date NOT NULL,
  conversions bigint NOT NULL DEFAULT 0,
  earned_minor bigint NOT NULL DEFAULT 0,
  paid_minor bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (program_id, day, referrer_user_id)
);

-- The same for all time, indexed in leaderboard order.
CREATE TABLE referrer_stats (
  program_id bigint NOT NULL,
  referrer_user_id text NOT NULL,
  conversions bigint NOT NULL DEFAULT 0,
  earned_minor bigint NOT NULL DEFAULT 0,
  paid_minor bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (program_id, referrer_user_id)
);
-- Largest first, ties by user id: ascending (-value, user id), so a page
-- resumes with one row comparison.
CREATE INDEX referrer_stats_by_conversions ON referrer_stats (program_id, (-conversions), referrer_user_id);
CREATE INDEX referrer_stats_by_earned ON referrer_stats (program_id, (-earned_minor), referrer_user_id);

-- How far the fold got in the event log, and the time its figures are exact up to.
CREATE TABLE stats_fold (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  folded_xid bigint NOT NULL DEFAULT 0,
  folded_id bigint NOT NULL DEFAULT 0,
  as_of timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO stats_fold DEFAULT VALUES;
