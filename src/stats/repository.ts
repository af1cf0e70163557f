import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";

// Statements of the statistics. Folds referral_events (read only) into
// program_stats_daily, referrer_stats_daily and referrer_stats, moving
// stats_fold's position; reads those, and referral_programs for the budget.

/** Key of the advisory lock that lets one replica at a time fold. */
const FOLD_LOCK = 0x53_54_41_54; // "STAT"

/** A field of an event's snapshot (sql/0012): of the row after the change, or before it. */
type Snapshot = "code" | "referral" | "previous_code" | "previous_referral";
const field = (row: Snapshot, name: string) => sql.fragment`(${sql.identifier(["b", row])}).${sql.identifier([name])}`;
/** The UTC day of a timestamp field of an event's snapshot. */
const dayOf = (row: Snapshot, name: string) => sql.fragment`(${field(row, name)} AT TIME ZONE 'UTC')::date`;

/**
 * Folds up to `limit` events after the fold's position into the rollups, in
 * log order, and moves the position, in one statement (one transaction): a
 * crash folds nothing twice. Only events of finished transactions (below the
 * snapshot's xmin) are folded, so none can appear behind the position later.
 * When it caught up, the figures are exact up to the start of the oldest
 * transaction still running (or now). Does nothing while another replica
 * folds. Returns how many events it folded, or null when another replica
 * holds the fold.
 */
export async function foldEvents(db: CommonQueryMethods, limit: number): Promise<number | null> {
  const amount = field("referral", "amount_earned_minor");
  const refereeAmount = field("referral", "referee_reward_minor");
  const convertedOn = dayOf("referral", "converted_at");
  const referrer = field("referral", "referrer_user_id");
  const wasPaid = sql.fragment`(${field("previous_referral", "payout_status")} = 'PAID')`;
  const nowPaid = sql.fragment`(${field("referral", "payout_status")} = 'PAID')`;
  const activeNow = sql.fragment`(${field("code", "status")} = 'ACTIVE')::int`;
  const activeBefore = sql.fragment`(${field("previous_code", "status")} = 'ACTIVE')::int`;
  return db.maybeOneFirst(sql.type(z.object({ folded: z.number().int() }))`
    WITH lock AS (
      SELECT pg_try_advisory_xact_lock(${FOLD_LOCK}) AS held
    ), fold AS (
      SELECT f.folded_xid, f.folded_id FROM stats_fold f WHERE (SELECT held FROM lock)
    ), horizon AS (
      SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin
    ), b AS (
      SELECT e.xid, e.id, e.type, e.program_id, e.code, e.referral, e.previous_code, e.previous_referral, e.occurred_at
      FROM fold, horizon, referral_events e
      WHERE (e.xid, e.id) > (fold.folded_xid, fold.folded_id) AND e.xid < horizon.xmin
        AND e.type IN ('CODE_CREATED', 'CODE_UPDATED', 'REFERRAL_CREATED', 'REFERRAL_PAYOUT_STATUS_CHANGED', 'REFERRAL_REVERSED')
      ORDER BY e.xid, e.id
      LIMIT ${limit}
    ), program_deltas AS (
      SELECT program_id, day, sum(codes_issued) AS codes_issued, sum(codes_active) AS codes_active, sum(conversions) AS conversions,
        sum(referred_users) AS referred_users, sum(referrer_granted) AS referrer_granted, sum(referrer_reversed) AS referrer_reversed,
        sum(referrer_paid) AS referrer_paid, sum(referee_granted) AS referee_granted
      FROM (
        SELECT b.program_id, ${dayOf("code", "created_at")} AS day, 1 AS codes_issued, ${activeNow} AS codes_active, 0 AS conversions,
          0 AS referred_users, 0 AS referrer_granted, 0 AS referrer_reversed, 0 AS referrer_paid, 0 AS referee_granted
        FROM b WHERE b.type = 'CODE_CREATED'
        UNION ALL
        SELECT b.program_id, ${dayOf("code", "created_at")}, 0, ${activeNow} - ${activeBefore}, 0, 0, 0, 0, 0, 0
        FROM b WHERE b.type = 'CODE_UPDATED'
        UNION ALL
        SELECT b.program_id, ${convertedOn}, 0, 0, 1, ${field("referral", "first_conversion")}::int, ${amount}, 0, 0, ${refereeAmount}
        FROM b WHERE b.type = 'REFERRAL_CREATED'
        UNION ALL
        SELECT b.program_id, ${convertedOn}, 0, 0, 0, 0, 0, 0, CASE WHEN ${nowPaid} AND NOT ${wasPaid} THEN ${amount} ELSE 0 END, 0
        FROM b WHERE b.type = 'REFERRAL_PAYOUT_STATUS_CHANGED'
        UNION ALL
        SELECT b.program_id, ${convertedOn}, 0, 0, 0, 0, 0, ${amount}, CASE WHEN ${wasPaid} THEN -${amount} ELSE 0 END, 0
        FROM b WHERE b.type = 'REFERRAL_REVERSED'
      ) d
      GROUP BY program_id, day
    ), programs_folded AS (
      INSERT INTO program_stats_daily AS s (program_id, day, codes_issued, codes_active, conversions, referred_users,
        referrer_granted_minor, referrer_reversed_minor, referrer_paid_minor, referee_granted_minor)
      SELECT program_id, day, codes_issued, codes_active, conversions, referred_users, referrer_granted, referrer_reversed, referrer_paid, referee_granted
      FROM program_deltas
      ON CONFLICT (program_id, day) DO UPDATE SET
        codes_issued = s.codes_issued + EXCLUDED.codes_issued,
        codes_active = s.codes_active + EXCLUDED.codes_active,
        conversions = s.conversions + EXCLUDED.conversions,
        referred_users = s.referred_users + EXCLUDED.referred_users,
        referrer_granted_minor = s.referrer_granted_minor + EXCLUDED.referrer_granted_minor,
        referrer_reversed_minor = s.referrer_reversed_minor + EXCLUDED.referrer_reversed_minor,
        referrer_paid_minor = s.referrer_paid_minor + EXCLUDED.referrer_paid_minor,
        referee_granted_minor = s.referee_granted_minor + EXCLUDED.referee_granted_minor
      RETURNING 1
    ), referrer_deltas AS (
      SELECT program_id, referrer_user_id, day, sum(conversions) AS conversions, sum(earned) AS earned, sum(paid) AS paid
      FROM (
        SELECT b.program_id, ${referrer} AS referrer_user_id, ${convertedOn} AS day, 1 AS conversions, ${amount} AS earned, 0::bigint AS paid
        FROM b WHERE b.type = 'REFERRAL_CREATED'
        UNION ALL
        SELECT b.program_id, ${referrer}, ${convertedOn}, 0, 0, CASE WHEN ${nowPaid} AND NOT ${wasPaid} THEN ${amount} ELSE 0 END
        FROM b WHERE b.type = 'REFERRAL_PAYOUT_STATUS_CHANGED'
        UNION ALL
        SELECT b.program_id, ${referrer}, ${convertedOn}, -1, -${amount}, CASE WHEN ${wasPaid} THEN -${amount} ELSE 0 END
        FROM b WHERE b.type = 'REFERRAL_REVERSED'
      ) d
      GROUP BY program_id, referrer_user_id, day
    ), referrer_days_folded AS (
      INSERT INTO referrer_stats_daily AS s (program_id, referrer_user_id, day, conversions, earned_minor, paid_minor)
      SELECT program_id, referrer_user_id, day, conversions, earned, paid FROM referrer_deltas
      ON CONFLICT (program_id, day, referrer_user_id) DO UPDATE SET
        conversions = s.conversions + EXCLUDED.conversions,
        earned_minor = s.earned_minor + EXCLUDED.earned_minor,
        paid_minor = s.paid_minor + EXCLUDED.paid_minor
      RETURNING 1
    ), referrers_folded AS (
      INSERT INTO referrer_stats AS s (program_id, referrer_user_id, conversions, earned_minor, paid_minor)
      SELECT program_id, referrer_user_id, sum(conversions), sum(earned), sum(paid) FROM referrer_deltas GROUP BY program_id, referrer_user_id
      ON CONFLICT (program_id, referrer_user_id) DO UPDATE SET
        conversions = s.conversions + EXCLUDED.conversions,
        earned_minor = s.earned_minor + EXCLUDED.earned_minor,
        paid_minor = s.paid_minor + EXCLUDED.paid_minor
      RETURNING 1
    ), last AS (
      SELECT xid, id, occurred_at FROM b ORDER BY xid DESC, id DESC LIMIT 1
    ), counted AS (
      SELECT count(*)::integer AS folded FROM b
    )
    UPDATE stats_fold f SET
      folded_xid = COALESCE((SELECT xid FROM last), f.folded_xid),
      folded_id = COALESCE((SELECT id FROM last), f.folded_id),
      -- Caught up: exact up to the oldest transaction still writing, or now.
      -- Else up to the last event folded.
      as_of = CASE WHEN (SELECT folded FROM counted) < ${limit}
        THEN LEAST(statement_timestamp(), COALESCE((SELECT min(xact_start) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()), 'infinity'))
        ELSE (SELECT occurred_at FROM last) END
    FROM fold
    RETURNING (SELECT folded FROM counted) AS folded
  `);
}

/** When the statistics are exact up to. */
export async function statsAsOf(db: CommonQueryMethods): Promise<Date> {
  return db.oneFirst(sql.type(z.object({ as_of: z.date() }))`SELECT as_of FROM stats_fold`);
}

const programStatsRow = z
  .object({
    program_id: z.bigint(),
    currency: z.string(),
    budget_remaining: z.bigint().nullable(),
    codes_issued: z.bigint(),
    codes_active: z.bigint(),
    conversions: z.bigint(),
    referred_users: z.bigint(),
    referrer_granted: z.bigint(),
    referrer_reversed: z.bigint(),
    referrer_paid: z.bigint(),
    referee_granted: z.bigint(),
    as_of: z.date(),
  })
  .transform((row) => ({
    currency: row.currency,
    budgetRemainingMinor: row.budget_remaining,
    codesIssued: row.codes_issued,
    codesActive: row.codes_active,
    conversions: row.conversions,
    referredUsers: row.referred_users,
    referrerRewardsGrantedMinor: row.referrer_granted,
    referrerRewardsReversedMinor: row.referrer_reversed,
    referrerRewardsPaidMinor: row.referrer_paid,
    refereeRewardsGrantedMinor: row.referee_granted,
    asOf: row.as_of,
  }));

export type ProgramStats = z.output<typeof programStatsRow>;

/** A range of whole UTC days, [from, to); null: unbounded. */
export type DayRange = { from: Date | null; to: Date | null };

const dayConditions = (range: DayRange) => {
  const conditions = [];
  if (range.from !== null) conditions.push(sql.fragment`day >= ${sql.date(range.from)}`);
  if (range.to !== null) conditions.push(sql.fragment`day < ${sql.date(range.to)}`);
  return conditions;
};

/** A program's figures over whole days (one row per day of the range, at most). Null: no such program. */
export async function programStats(db: CommonQueryMethods, programKey: string, range: DayRange): Promise<ProgramStats | null> {
  const conditions = [sql.fragment`s.program_id = p.id`, ...dayConditions(range)];
  return db.maybeOne(sql.type(programStatsRow)`
    SELECT p.id AS program_id, p.reward_currency AS currency, p.budget_minor - p.rewards_granted_minor AS budget_remaining,
      COALESCE(sum(s.codes_issued), 0)::bigint AS codes_issued, COALESCE(sum(s.codes_active), 0)::bigint AS codes_active,
      COALESCE(sum(s.conversions), 0)::bigint AS conversions, COALESCE(sum(s.referred_users), 0)::bigint AS referred_users,
      COALESCE(sum(s.referrer_granted_minor), 0)::bigint AS referrer_granted, COALESCE(sum(s.referrer_reversed_minor), 0)::bigint AS referrer_reversed,
      COALESCE(sum(s.referrer_paid_minor), 0)::bigint AS referrer_paid, COALESCE(sum(s.referee_granted_minor), 0)::bigint AS referee_granted,
      (SELECT as_of FROM stats_fold) AS as_of
    FROM referral_programs p
    LEFT JOIN program_stats_daily s ON ${sql.join(conditions, sql.fragment` AND `)}
    WHERE p.program_key = ${programKey}
    GROUP BY p.id
  `);
}

export type TopReferrer = { referrerUserId: string; conversions: bigint; earnedMinor: bigint; paidMinor: bigint };
export type LeaderboardOrder = "conversions" | "earned";

const topReferrerRow = z
  .object({ referrer_user_id: z.string(), conversions: z.bigint(), earned_minor: z.bigint(), paid_minor: z.bigint() })
  .transform((row): TopReferrer => ({
    referrerUserId: row.referrer_user_id,
    conversions: row.conversions,
    earnedMinor: row.earned_minor,
    paidMinor: row.paid_minor,
  }));

/**
 * The leaderboard: referrers by standing conversions or earned amount (then
 * by user id), after the keyset `after`. All time reads the totals' index in
 * order; a range sums each referrer's days in it: an index-only scan of the
 * range, a hash aggregate by referrer with bigint_sum (sql/0016), then a
 * top-N sort of the page.
 */
export async function topReferrers(
  db: CommonQueryMethods,
  request: { programId: bigint; range: DayRange; orderBy: LeaderboardOrder; after: { value: bigint; referrerUserId: string } | null; limit: number },
): Promise<readonly TopReferrer[]> {
  const { programId, range, orderBy, after, limit } = request;
  // Largest first, then by user id: ascending (-value, user), which the
  // totals' expression indexes hold in this order.
  const key = sql.fragment`(-${sql.identifier([orderBy === "conversions" ? "conversions" : "earned_minor"])})`;
  const keyset = after === null ? sql.fragment`TRUE` : sql.fragment`(${key}, referrer_user_id) > (${-after.value}::bigint, ${after.referrerUserId})`;
  if (range.from === null && range.to === null) {
    return db.any(sql.type(topReferrerRow)`
      SELECT referrer_user_id, conversions, earned_minor, paid_minor FROM referrer_stats
      WHERE program_id = ${programId} AND conversions > 0 AND ${keyset}
      ORDER BY ${key}, referrer_user_id
      LIMIT ${limit}
    `);
  }
  return db.any(sql.type(topReferrerRow)`
    SELECT referrer_user_id, conversions, earned_minor, paid_minor FROM (
      SELECT referrer_user_id, bigint_sum(conversions) AS conversions, bigint_sum(earned_minor) AS earned_minor, bigint_sum(paid_minor) AS paid_minor
      FROM referrer_stats_daily
      WHERE ${sql.join([sql.fragment`program_id = ${programId}`, ...dayConditions(range)], sql.fragment` AND `)}
      GROUP BY referrer_user_id
    ) r
    WHERE conversions > 0 AND ${keyset}
    ORDER BY ${key}, referrer_user_id
    LIMIT ${limit}
  `);
}
