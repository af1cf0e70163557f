import { type CommonQueryMethods, sql } from "slonik";
import { earningsRow } from "../../src/referrals/repository.ts";

/**
 * A referrer's earnings summed from every one of their conversions at `now`:
 * the reference the running totals (sql/0014) must agree with, and what
 * GetUserEarnings computed on each call before them.
 */
export function earningsFromRows(db: CommonQueryMethods, userId: string, programKey: string | null, now: Date) {
  const at = sql.timestamp(now);
  return db.any(sql.type(earningsRow)`
    SELECT t.currency,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status <> 'REVERSED'), 0)::bigint AS total,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'PENDING' AND t.payable_at > ${at}), 0)::bigint AS pending,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'PENDING' AND t.payable_at <= ${at}), 0)::bigint AS payable,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'PAID'), 0)::bigint AS paid,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'FAILED'), 0)::bigint AS failed,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'REVERSED'), 0)::bigint AS reversed,
      COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_status = 'REVERSED' AND t.clawback), 0)::bigint AS clawback,
      count(*)::bigint AS referral_count
    FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
    WHERE t.referrer_user_id = ${userId} AND (${programKey}::text IS NULL OR p.program_key = ${programKey})
    GROUP BY t.currency ORDER BY t.currency
  `);
}
