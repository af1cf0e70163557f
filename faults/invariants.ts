import { connectClient } from "../src/db/hosts.ts";

/**
 * The promises that must hold whatever went wrong, checked in SQL. Returns
 * the names of the checks that passed; throws listing the ones that failed.
 */
export async function checkInvariants(url: string): Promise<string[]> {
  // The primary, given several hosts.
  const client = await connectClient(url);
  const checks: [string, string][] = [
    [
      "uses_count equals the distinct referred users with a standing conversion through the code (reversal_frees_use false: any conversion)",
      `SELECT count(*) FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
       WHERE c.uses_count <> (SELECT count(DISTINCT t.referred_user_id) FROM referral_trackings t
         WHERE t.code_id = c.id AND (t.payout_status <> 'REVERSED' OR NOT p.reversal_frees_use))`,
    ],
    [
      "uses_count equals the conversions holding a use, per code",
      `SELECT count(*) FROM referral_codes c
       WHERE c.uses_count <> (SELECT count(*) FROM referral_trackings t WHERE t.code_id = c.id AND t.holds_use)`,
    ],
    [
      "no referrer above max_rewards_per_referrer",
      `SELECT count(*) FROM (
         SELECT t.program_id, t.referrer_user_id, count(*) AS n, p.max_rewards_per_referrer AS max_rewards
         FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
         WHERE t.payout_status <> 'REVERSED' AND p.max_rewards_per_referrer IS NOT NULL
         GROUP BY 1, 2, 4) r WHERE r.n > r.max_rewards`,
    ],
    [
      "no program above its budget; the granted counter equals the standing rewards of both sides",
      `SELECT count(*) FROM referral_programs p
       WHERE p.budget_minor IS NOT NULL AND (p.rewards_granted_minor > p.budget_minor OR p.rewards_granted_minor <>
         (SELECT COALESCE(sum(amount_earned_minor + referee_reward_minor), 0) FROM referral_trackings t WHERE t.program_id = p.id AND t.payout_status <> 'REVERSED'))`,
    ],
    [
      "no duplicate transaction_id in a program",
      `SELECT count(*) FROM (SELECT program_id, transaction_id FROM referral_trackings WHERE transaction_id IS NOT NULL
         GROUP BY 1, 2 HAVING count(*) > 1) d`,
    ],
    [
      "one attribution per referred user and program",
      `SELECT count(*) FROM (SELECT program_id, referred_user_id FROM referral_trackings WHERE first_conversion
         GROUP BY 1, 2 HAVING count(*) > 1) d`,
    ],
    [
      "every referred user standing on a code holds one of its uses",
      `SELECT count(*) FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
       WHERE (t.payout_status <> 'REVERSED' OR NOT p.reversal_frees_use) AND NOT EXISTS (
         SELECT 1 FROM referral_trackings h WHERE h.code_id = t.code_id AND h.referred_user_id = t.referred_user_id AND h.holds_use)`,
    ],
    [
      "every conversion and every code has exactly one created event (while nothing was pruned)",
      `SELECT count(*) FROM (
         SELECT t.id::text AS id, 'REFERRAL_CREATED' AS type FROM referral_trackings t
         UNION ALL SELECT c.id::text, 'CODE_CREATED' FROM referral_codes c
       ) made
       FULL JOIN (
         SELECT COALESCE((referral).id::text, (code).id::text) AS id, type, count(*) AS n FROM referral_events
         WHERE type IN ('REFERRAL_CREATED', 'CODE_CREATED') GROUP BY 1, 2
       ) logged USING (id, type)
       WHERE (SELECT pruned_xid FROM referral_event_log) = 0 AND logged.n IS DISTINCT FROM 1`,
    ],
    [
      "every reversed conversion has exactly one reversal event (while nothing was pruned)",
      `SELECT count(*) FROM referral_trackings t
       WHERE (SELECT pruned_xid FROM referral_event_log) = 0 AND t.payout_status = 'REVERSED'
         AND (SELECT count(*) FROM referral_events e WHERE e.type = 'REFERRAL_REVERSED' AND (e.referral).id = t.id) <> 1`,
    ],
    [
      "every open or paid payout holds exactly the rewards and clawbacks linked to it, and a failed or canceled one none",
      `SELECT count(*) FROM payouts o
       LEFT JOIN LATERAL (
         SELECT count(*) FILTER (WHERE t.payout_id = o.id) AS rewards, count(*) FILTER (WHERE t.clawback_payout_id = o.id) AS clawbacks,
           COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.payout_id = o.id), 0) AS rewards_minor,
           COALESCE(sum(t.amount_earned_minor) FILTER (WHERE t.clawback_payout_id = o.id), 0) AS clawbacks_minor
         FROM referral_trackings t WHERE t.payout_id = o.id OR t.clawback_payout_id = o.id
       ) l ON true
       WHERE CASE WHEN o.state IN ('FAILED', 'CANCELED') THEN l.rewards + l.clawbacks <> 0
         ELSE (l.rewards + l.clawbacks, l.rewards_minor, l.clawbacks_minor) <> (o.referral_count, o.rewards_minor, o.clawbacks_minor) END`,
    ],
    [
      "a PAID payout's rewards are PAID (or reversed since), and every open payout's are unpaid",
      `SELECT count(*) FROM referral_trackings t JOIN payouts o ON o.id = t.payout_id
       WHERE (o.state = 'PAID' AND t.payout_status NOT IN ('PAID', 'REVERSED'))
          OR (o.state IN ('REQUIRES_REVIEW', 'PENDING', 'PROCESSING') AND t.payout_status NOT IN ('PENDING', 'FAILED', 'REVERSED'))`,
    ],
    [
      "the running earnings totals equal the sums of the conversions, per referrer, program, currency, payout status and clawback",
      `SELECT count(*) FROM (
         SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount_minor) AS amount, sum(referrals) AS referrals
         FROM referrer_earnings GROUP BY 1, 2, 3, 4, 5 HAVING sum(amount_minor) <> 0 OR sum(referrals) <> 0
       ) e FULL JOIN (
         SELECT referrer_user_id, program_id, currency, payout_status, clawback, sum(amount_earned_minor) AS amount, count(*) AS referrals
         FROM referral_trackings GROUP BY 1, 2, 3, 4, 5
       ) t USING (referrer_user_id, program_id, currency, payout_status, clawback)
       WHERE (e.amount, e.referrals) IS DISTINCT FROM (t.amount, t.referrals)`,
    ],
  ];
  try {
    const failed: string[] = [];
    for (const [name, query] of checks) {
      const { rows } = await client.query<{ count: string }>(query);
      if (Number(rows[0]?.count) !== 0) failed.push(`${name} (${rows[0]?.count} violations)`);
    }
    if (failed.length > 0) throw new Error(`invariants broken: ${failed.join("; ")}`);
    return checks.map(([name]) => name);
  } finally {
    await client.end();
  }
}
