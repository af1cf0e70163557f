-- A referrer's running totals for GetUserEarnings (src/referrals/repository.ts
-- `earnings`): summing every conversion of a heavy referrer on each call took
-- seconds. Kept by triggers in the statement that changes referral_trackings,
-- so they are exact at every snapshot (nothing to fold, no staleness).
--
-- Rows per (referrer, program, currency, payout_status, clawback): the sum
-- of amount_earned_minor and the count of those conversions. What depends on
-- the clock (in hold or payable) is not kept: the reader takes the PENDING
-- total and subtracts the rewards still in hold, read from the index of 0015.
--
-- A key may have several rows, and its figures are their sum: a change adds
-- its delta to a row of its key that no other transaction holds (FOR UPDATE
-- SKIP LOCKED), and only when every row is held does it add a row. So
-- conversions of one referrer racing in parallel never wait for each other
-- on a hot row (a key grows about as many rows as changes ever ran on it at
-- once), a referrer converting one at a time keeps one row per key, and the
-- triggers never wait for a lock at all (they cannot take part in a
-- deadlock). Any single row may go negative; only the sum means anything.
CREATE TABLE referrer_earnings (
  referrer_user_id text NOT NULL,
  program_id bigint NOT NULL,
  currency text NOT NULL,
  payout_status text NOT NULL,
  clawback boolean NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  amount_minor bigint NOT NULL,
  referrals bigint NOT NULL,
  PRIMARY KEY (referrer_user_id, program_id, currency, payout_status, clawback, id)
);

-- One statement-level trigger function for every change, with transition
-- tables (`new_rows`, `old_rows`): a statement's deltas are summed per key
-- first, so a payout settling a million rewards of one referrer adds to a
-- few keys once, not twice per row (each update of a row in one transaction
-- leaves a version the next one steps over). A deletion counts negative; an
-- update counts only rows whose key or amount changed (a payout status, a
-- clawback), negative under the old key and positive under the new one
-- (PostgreSQL keeps the old and new rows of every UPDATE of the table for
-- it, bookkeeping updates too: the price of summing per statement). A bulk
-- statement (an import, a load: over 100 keys) adds one new row per key in
-- one INSERT rather than a statement per key.
CREATE FUNCTION referrer_earnings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  deltas referrer_earnings[];
  d referrer_earnings;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(ROW(n.referrer_user_id, n.program_id, n.currency, n.payout_status, n.clawback, 0, n.amount, n.referrals)::referrer_earnings) INTO deltas
    FROM (
      SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount_earned_minor) AS amount, count(*) AS referrals
      FROM new_rows GROUP BY 1, 2, 3, 4, 5
    ) n;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT array_agg(ROW(o.referrer_user_id, o.program_id, o.currency, o.payout_status, o.clawback, 0, -o.amount, -o.referrals)::referrer_earnings) INTO deltas
    FROM (
      SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount_earned_minor) AS amount, count(*) AS referrals
      FROM old_rows GROUP BY 1, 2, 3, 4, 5
    ) o;
  ELSE
    SELECT array_agg(ROW(m.referrer_user_id, m.program_id, m.currency, m.payout_status, m.clawback, 0, m.amount, m.referrals)::referrer_earnings) INTO deltas
    FROM (
      SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount) AS amount, sum(referrals) AS referrals
      FROM (
        SELECT o.referrer_user_id, o.program_id, o.currency, o.payout_status, o.clawback, -o.amount_earned_minor AS amount, -1 AS referrals
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.referrer_user_id, o.program_id, o.currency, o.payout_status, o.clawback, o.amount_earned_minor)
          IS DISTINCT FROM (n.referrer_user_id, n.program_id, n.currency, n.payout_status, n.clawback, n.amount_earned_minor)
        UNION ALL
        SELECT n.referrer_user_id, n.program_id, n.currency, n.payout_status, n.clawback, n.amount_earned_minor, 1
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.referrer_user_id, o.program_id, o.currency, o.payout_status, o.clawback, o.amount_earned_minor)
          IS DISTINCT FROM (n.referrer_user_id, n.program_id, n.currency, n.payout_status, n.clawback, n.amount_earned_minor)
      ) moved
      GROUP BY 1, 2, 3, 4, 5
      HAVING sum(amount) <> 0 OR sum(referrals) <> 0
    ) m;
  END IF;
  IF deltas IS NULL THEN
    RETURN NULL;
  ELSIF cardinality(deltas) > 100 THEN
    INSERT INTO referrer_earnings (referrer_user_id, program_id, currency, payout_status, clawback, amount_minor, referrals)
    SELECT x.referrer_user_id, x.program_id, x.currency, x.payout_status, x.clawback, x.amount_minor, x.referrals FROM unnest(deltas) x;
    RETURN NULL;
  END IF;
  -- Each key's delta onto its first row no other transaction holds, else
  -- onto a row of its own. (One simple statement per key: their plans are
  -- cached, where one statement over the array was planned again each time.)
  FOREACH d IN ARRAY deltas LOOP
    UPDATE referrer_earnings e SET amount_minor = e.amount_minor + d.amount_minor, referrals = e.referrals + d.referrals
    WHERE (e.referrer_user_id, e.program_id, e.currency, e.payout_status, e.clawback) = (d.referrer_user_id, d.program_id, d.currency, d.payout_status, d.clawback)
      AND e.id = (
        SELECT f.id FROM referrer_earnings f
        WHERE (f.referrer_user_id, f.program_id, f.currency, f.payout_status, f.clawback) = (d.referrer_user_id, d.program_id, d.currency, d.payout_status, d.clawback)
        ORDER BY f.id LIMIT 1 FOR UPDATE SKIP LOCKED
      );
    IF NOT FOUND THEN
      INSERT INTO referrer_earnings (referrer_user_id, program_id, currency, payout_status, clawback, amount_minor, referrals)
      VALUES (d.referrer_user_id, d.program_id, d.currency, d.payout_status, d.clawback, d.amount_minor, d.referrals);
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER referrer_earnings_created AFTER INSERT ON referral_trackings
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION referrer_earnings_changed();
CREATE TRIGGER referrer_earnings_deleted AFTER DELETE ON referral_trackings
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION referrer_earnings_changed();
CREATE TRIGGER referrer_earnings_updated AFTER UPDATE ON referral_trackings
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION referrer_earnings_changed();

-- The conversions recorded so far, in one statement. Changes to
-- referral_trackings wait from CREATE TRIGGER above (its lock blocks writes)
-- to this migration's commit, so none is counted twice or missed.
INSERT INTO referrer_earnings (referrer_user_id, program_id, currency, payout_status, clawback, amount_minor, referrals)
SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount_earned_minor), count(*)
FROM referral_trackings GROUP BY 1, 2, 3, 4, 5;
