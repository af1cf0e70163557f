import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";
import { PAYOUT_PROVIDERS, PAYOUT_STATES, type Payout, type PayoutProviderName, type PayoutState } from "./model.ts";

// Statements on payouts and payout_runs, and the links between payouts and
// the rewards they pay (referral_trackings.payout_id and clawback_payout_id),
// which only these statements set and clear. Each change of a payout's state
// moves its rewards in the same statement.

/** A payouts row as the statements below select it (payoutColumns). */
export const payoutFields = z.object({
  id: z.string(),
  request_id: z.string(),
  referrer_user_id: z.string(),
  currency: z.string(),
  program_key: z.string().nullable(),
  provider: z.enum(PAYOUT_PROVIDERS),
  account_ref: z.string(),
  amount_minor: z.bigint(),
  rewards_minor: z.bigint(),
  clawbacks_minor: z.bigint(),
  referral_count: z.number().int(),
  state: z.enum(PAYOUT_STATES),
  provider_reference: z.string().nullable(),
  failure_reason: z.string().nullable(),
  attempt_count: z.number().int(),
  created_at: z.date(),
  updated_at: z.date(),
  paid_at: z.date().nullable(),
  failed_at: z.date().nullable(),
  canceled_at: z.date().nullable(),
});

export function toPayout(row: z.output<typeof payoutFields>): Payout {
  return {
    id: row.id,
    requestId: row.request_id,
    referrerUserId: row.referrer_user_id,
    currency: row.currency,
    programKey: row.program_key,
    provider: row.provider,
    accountRef: row.account_ref,
    amountMinor: row.amount_minor,
    rewardsMinor: row.rewards_minor,
    clawbacksMinor: row.clawbacks_minor,
    referralCount: row.referral_count,
    state: row.state,
    providerReference: row.provider_reference,
    failureReason: row.failure_reason,
    attemptCount: row.attempt_count,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    paidAt: row.paid_at,
    failedAt: row.failed_at,
    canceledAt: row.canceled_at,
  };
}

const payoutRow = payoutFields.transform(toPayout);

/** Columns of `payoutFields`, from a payouts row `o` (or a CTE of them). */
export const payoutColumns = sql.fragment`
  o.id::text AS id, o.request_id, o.referrer_user_id, o.currency,
  (SELECT p.program_key FROM referral_programs p WHERE p.id = o.program_id) AS program_key,
  o.provider, o.account_ref, o.amount_minor, o.rewards_minor, o.clawbacks_minor, o.referral_count, o.state,
  o.provider_reference, o.failure_reason, o.attempt_count, o.created_at, o.updated_at, o.paid_at, o.failed_at, o.canceled_at
`;

export async function findPayout(db: CommonQueryMethods, id: string): Promise<Payout | null> {
  return db.maybeOne(sql.type(payoutRow)`SELECT ${payoutColumns} FROM payouts o WHERE o.id = ${id}::uuid`);
}

export type PayoutFilter = {
  referrerUserId: string | null;
  state: PayoutState | null;
  currency: string | null;
  createdAfter: Date | null;
  createdBefore: Date | null;
};

/** A page of payouts newest first, after the keyset `after` (created_at, id). */
export async function listPayouts(
  db: CommonQueryMethods,
  filter: PayoutFilter,
  after: { createdAt: Date; id: string } | null,
  limit: number,
): Promise<readonly Payout[]> {
  const conditions = [sql.fragment`true`];
  if (filter.referrerUserId !== null) conditions.push(sql.fragment`o.referrer_user_id = ${filter.referrerUserId}`);
  if (filter.state !== null) conditions.push(sql.fragment`o.state = ${filter.state}`);
  if (filter.currency !== null) conditions.push(sql.fragment`o.currency = ${filter.currency}`);
  if (filter.createdAfter !== null) conditions.push(sql.fragment`o.created_at >= ${sql.timestamp(filter.createdAfter)}`);
  if (filter.createdBefore !== null) conditions.push(sql.fragment`o.created_at < ${sql.timestamp(filter.createdBefore)}`);
  if (after !== null) conditions.push(sql.fragment`(o.created_at, o.id) < (${sql.timestamp(after.createdAt)}, ${after.id}::uuid)`);
  return db.any(sql.type(payoutRow)`
    SELECT ${payoutColumns} FROM payouts o
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY o.created_at DESC, o.id DESC
    LIMIT ${limit}
  `);
}

const runRow = z.object({
  currency: z.string(),
  program_id: z.bigint().nullable(),
  skipped_without_account: z.number().int(),
  skipped_below_minimum: z.number().int(),
});

export type RunRecord = { currency: string; programId: bigint | null; skippedWithoutAccount: number; skippedBelowMinimum: number };

/**
 * Records a CreatePayouts run under its request_id; null when the id was
 * taken (by a committed run, or by one still running: the insert waits for
 * it), and then the run it names.
 */
export async function claimRun(
  db: CommonQueryMethods,
  run: { requestId: string; currency: string; programId: bigint | null },
): Promise<{ created: boolean; run: RunRecord }> {
  const inserted = await db.maybeOneFirst(sql.type(z.object({ request_id: z.string() }))`
    INSERT INTO payout_runs (request_id, currency, program_id, skipped_without_account, skipped_below_minimum)
    VALUES (${run.requestId}, ${run.currency}, ${run.programId}, 0, 0)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
  `);
  const row = await db.one(sql.type(runRow)`
    SELECT currency, program_id, skipped_without_account, skipped_below_minimum FROM payout_runs WHERE request_id = ${run.requestId}
  `);
  return {
    created: inserted !== null,
    run: { currency: row.currency, programId: row.program_id, skippedWithoutAccount: row.skipped_without_account, skippedBelowMinimum: row.skipped_below_minimum },
  };
}

/** The payouts a run made, by referrer. */
export async function runPayouts(db: CommonQueryMethods, requestId: string): Promise<readonly Payout[]> {
  return db.any(sql.type(payoutRow)`
    SELECT ${payoutColumns} FROM payouts o WHERE o.request_id = ${requestId} ORDER BY o.referrer_user_id
  `);
}

/**
 * CreatePayouts' one statement, in the transaction that claimed the run:
 * locks every payable reward of `currency` (hold passed at `now`, PENDING or
 * FAILED, in no payout) and every clawback not yet recovered, in id order (so
 * concurrent runs and UpdatePayoutStatus batches cannot deadlock; a run that
 * waited sees the rows another run took and leaves them), sums them per
 * referrer, makes one payout per referrer with an account whose net total
 * reaches the minimum, links the rows to it, and records what it skipped.
 */
export async function makePayouts(
  db: CommonQueryMethods,
  run: { requestId: string; currency: string; programId: bigint | null; now: Date },
): Promise<{ skippedWithoutAccount: number; skippedBelowMinimum: number }> {
  const inProgram = run.programId === null ? sql.fragment`true` : sql.fragment`t.program_id = ${run.programId}`;
  const skipped = await db.one(sql.type(z.object({ skipped_without_account: z.number().int(), skipped_below_minimum: z.number().int(), linked: z.number().int() }))`
    WITH candidates AS (
      SELECT t.id, t.referrer_user_id, t.program_id, t.amount_earned_minor AS amount, t.payout_status = 'REVERSED' AS recovers
      FROM referral_trackings t
      WHERE t.currency = ${run.currency} AND ${inProgram} AND t.amount_earned_minor > 0
        AND (
          (t.payout_status IN ('PENDING', 'FAILED') AND t.payout_id IS NULL AND t.payable_at <= ${sql.timestamp(run.now)})
          OR (t.clawback AND t.clawback_payout_id IS NULL)
        )
      ORDER BY t.id
      FOR UPDATE OF t
    ), totals AS (
      SELECT c.referrer_user_id,
        COALESCE(sum(c.amount) FILTER (WHERE NOT c.recovers), 0) AS rewards,
        COALESCE(sum(c.amount) FILTER (WHERE c.recovers), 0) AS clawbacks,
        count(*)::integer AS referral_count,
        -- Over several programs: the largest minimum and the smallest maximum.
        max(p.min_payout_minor) AS min_payout,
        min(p.max_payout_minor) AS max_payout
      FROM candidates c JOIN referral_programs p ON p.id = c.program_id
      GROUP BY c.referrer_user_id
    ), decided AS (
      SELECT s.*, a.provider, a.account_ref,
        CASE
          WHEN a.user_id IS NULL THEN 'NO_ACCOUNT'
          WHEN s.rewards - s.clawbacks <= 0 OR s.rewards - s.clawbacks < s.min_payout THEN 'BELOW_MINIMUM'
          WHEN s.rewards - s.clawbacks > s.max_payout THEN 'REQUIRES_REVIEW'
          -- Nothing to send: a manual payout waits for its operator.
          WHEN a.provider = 'MANUAL' THEN 'PROCESSING'
          ELSE 'PENDING'
        END AS outcome
      FROM totals s LEFT JOIN payout_accounts a ON a.user_id = s.referrer_user_id
    ), made AS (
      INSERT INTO payouts (request_id, referrer_user_id, currency, program_id, provider, account_ref, rewards_minor, clawbacks_minor, referral_count, state)
      SELECT ${run.requestId}, d.referrer_user_id, ${run.currency}, ${run.programId}::bigint, d.provider, d.account_ref, d.rewards, d.clawbacks, d.referral_count, d.outcome
      FROM decided d WHERE d.outcome IN ('REQUIRES_REVIEW', 'PENDING', 'PROCESSING')
      RETURNING id, referrer_user_id
    ), linked AS (
      UPDATE referral_trackings t SET
        payout_id = CASE WHEN c.recovers THEN t.payout_id ELSE m.id END,
        clawback_payout_id = CASE WHEN c.recovers THEN m.id ELSE t.clawback_payout_id END,
        updated_at = now()
      FROM candidates c JOIN made m ON m.referrer_user_id = c.referrer_user_id
      WHERE t.id = c.id
      RETURNING t.id
    )
    UPDATE payout_runs r SET
      skipped_without_account = (SELECT count(*) FROM decided WHERE outcome = 'NO_ACCOUNT'),
      skipped_below_minimum = (SELECT count(*) FROM decided WHERE outcome = 'BELOW_MINIMUM')
    WHERE r.request_id = ${run.requestId}
    RETURNING r.skipped_without_account, r.skipped_below_minimum, (SELECT count(*)::integer FROM linked) AS linked
  `);
  return { skippedWithoutAccount: skipped.skipped_without_account, skippedBelowMinimum: skipped.skipped_below_minimum };
}

/**
 * ApprovePayout: REQUIRES_REVIEW → PENDING (PROCESSING for a manual payout,
 * which waits for its operator). Null when it is not in review (or missing).
 */
export async function approvePayout(db: CommonQueryMethods, id: string): Promise<Payout | null> {
  return db.maybeOne(sql.type(payoutRow)`
    WITH o AS (
      UPDATE payouts SET state = CASE WHEN provider = 'MANUAL' THEN 'PROCESSING' ELSE 'PENDING' END, next_attempt_at = now(), updated_at = now()
      WHERE id = ${id}::uuid AND state = 'REQUIRES_REVIEW'
      RETURNING *
    )
    SELECT ${payoutColumns} FROM o
  `);
}

/**
 * Unlinks the rows of the payout `o` (the statement's CTE) that ended without
 * paying: its rewards and clawbacks are payable again. After a failure, its
 * unpaid rewards (not those reversed meanwhile) become FAILED with the reason.
 */
function release(failure: { reason: string; at: Date } | null) {
  const failed = sql.fragment`t.payout_id = o.id AND t.payout_status IN ('PENDING', 'FAILED')`;
  const marks =
    failure === null
      ? sql.fragment``
      : sql.fragment`
        payout_status = CASE WHEN ${failed} THEN 'FAILED' ELSE t.payout_status END,
        failed_at = CASE WHEN ${failed} THEN ${sql.timestamp(failure.at)} ELSE t.failed_at END,
        failure_reason = CASE WHEN ${failed} THEN ${failure.reason} ELSE t.failure_reason END,`;
  return sql.fragment`
    UPDATE referral_trackings t SET ${marks}
      payout_id = CASE WHEN t.payout_id = o.id THEN NULL ELSE t.payout_id END,
      clawback_payout_id = CASE WHEN t.clawback_payout_id = o.id THEN NULL ELSE t.clawback_payout_id END,
      updated_at = now()
    FROM o WHERE t.payout_id = o.id OR t.clawback_payout_id = o.id
    RETURNING t.id
  `;
}

/**
 * CancelPayout: REQUIRES_REVIEW or PENDING → CANCELED, releasing its rows,
 * in one statement. Null when it was sent already (or is missing).
 */
export async function cancelPayout(db: CommonQueryMethods, id: string): Promise<Payout | null> {
  return db.maybeOne(sql.type(payoutRow)`
    WITH o AS (
      UPDATE payouts SET state = 'CANCELED', canceled_at = now(), updated_at = now()
      WHERE id = ${id}::uuid AND state IN ('REQUIRES_REVIEW', 'PENDING')
      RETURNING *
    ), released AS (${release(null)})
    SELECT ${payoutColumns} FROM o
  `);
}

/** Which PROCESSING payouts a settlement may touch: any, or only manual ones (MarkPayoutPaid/Failed). */
export type Settling = { id: string; manualOnly: boolean };

const processing = (settling: Settling) =>
  settling.manualOnly
    ? sql.fragment`id = ${settling.id}::uuid AND state = 'PROCESSING' AND provider = 'MANUAL'`
    : sql.fragment`id = ${settling.id}::uuid AND state = 'PROCESSING'`;

/**
 * PROCESSING → PAID, in one statement: its rewards become PAID with the
 * reference; a reward reversed while the payout was on its way was paid all
 * the same, so it becomes a clawback (recovered by a later payout). Null when
 * the payout is not PROCESSING (settled already, or missing).
 */
export async function settlePaid(db: CommonQueryMethods, settling: Settling, reference: string, now: Date): Promise<Payout | null> {
  const at = sql.timestamp(now);
  return db.maybeOne(sql.type(payoutRow)`
    WITH o AS (
      UPDATE payouts SET state = 'PAID', provider_reference = ${reference}, paid_at = ${at}, updated_at = now()
      WHERE ${processing(settling)}
      RETURNING *
    ), paid AS (
      UPDATE referral_trackings t SET payout_status = 'PAID', paid_at = ${at}, payout_reference = ${reference}, updated_at = now()
      FROM o WHERE t.payout_id = o.id AND t.payout_status IN ('PENDING', 'FAILED')
      RETURNING t.id
    ), reversed AS (
      UPDATE referral_trackings t SET clawback = true, updated_at = now()
      FROM o WHERE t.payout_id = o.id AND t.payout_status = 'REVERSED'
      RETURNING t.id
    )
    SELECT ${payoutColumns} FROM o
  `);
}

/**
 * PROCESSING → FAILED with the reason, in one statement: its rewards become
 * FAILED with the same reason and, like its clawbacks, payable again. Null
 * when the payout is not PROCESSING.
 */
export async function settleFailed(db: CommonQueryMethods, settling: Settling, reason: string, now: Date): Promise<Payout | null> {
  const at = sql.timestamp(now);
  return db.maybeOne(sql.type(payoutRow)`
    WITH o AS (
      UPDATE payouts SET state = 'FAILED', failure_reason = ${reason}, failed_at = ${at}, updated_at = now()
      WHERE ${processing(settling)}
      RETURNING *
    ), released AS (${release({ reason, at: now })})
    SELECT ${payoutColumns} FROM o
  `);
}

/**
 * Claims up to `limit` payouts of `providers` due for sending (PENDING, or
 * PROCESSING past the lease of their last attempt or the backoff of an
 * ambiguous failure), skipping those another worker holds: each becomes PROCESSING, counts one
 * more attempt (before it is sent: a worker killed while sending still
 * counts it) and is leased for `leaseSeconds`, after which another worker
 * sends it again, with the same idempotency key.
 */
export async function claimDuePayouts(
  db: CommonQueryMethods,
  claim: { providers: readonly PayoutProviderName[]; limit: number; leaseSeconds: number },
): Promise<readonly Payout[]> {
  const { providers, limit, leaseSeconds } = claim;
  return db.any(sql.type(payoutRow)`
    WITH due AS (
      SELECT id FROM payouts
      WHERE state IN ('PENDING', 'PROCESSING') AND provider = ANY(${sql.array(providers, "text")}) AND next_attempt_at <= now()
      ORDER BY next_attempt_at
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    ), o AS (
      UPDATE payouts p SET state = 'PROCESSING', attempt_count = p.attempt_count + 1,
        next_attempt_at = now() + make_interval(secs => ${leaseSeconds}), updated_at = now()
      FROM due WHERE p.id = due.id
      RETURNING p.*
    )
    SELECT ${payoutColumns} FROM o
  `);
}

/** An ambiguous outcome: stays PROCESSING, tried again after `retryInSeconds`. */
export async function deferPayout(db: CommonQueryMethods, id: string, detail: string, retryInSeconds: number): Promise<void> {
  await db.query(sql.type(z.object({}))`
    UPDATE payouts SET failure_reason = ${detail}, next_attempt_at = now() + make_interval(secs => ${retryInSeconds}), updated_at = now()
    WHERE id = ${id}::uuid AND state = 'PROCESSING'
  `);
}
