import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";
import type { ReferralCode } from "../codes/model.ts";
import type { UsableCodeProgram } from "../codes/usability.ts";
import type { RewardRuleProgram } from "../programs/reward.ts";
import type { Program } from "../programs/model.ts";
import { programVersion, refereeRewardColumns, refereeRewardFields, tiersColumn, toRefereeReward } from "../programs/repository.ts";
import type { PayoutStatus, Referral } from "./model.ts";

// Statements on conversions. Writes referral_trackings; recording a
// conversion also takes a use in referral_codes and grants the reward from
// referral_programs' budget, in the same statement. Reads both for context,
// and referrer_earnings (running totals its triggers keep) for earnings.

/** A referral_trackings row with its program's key and code, as the statements below select it (referralColumns). */
export const referralFields = z.object({
  id: z.string(),
  program_id: z.bigint(),
  program_key: z.string(),
  code_id: z.bigint(),
  code: z.string(),
  referrer_user_id: z.string(),
  referred_user_id: z.string(),
  transaction_id: z.string().nullable(),
  transaction_amount_minor: z.bigint().nullable(),
  amount_earned_minor: z.bigint(),
  referee_reward_minor: z.bigint(),
  currency: z.string(),
  converted_at: z.date(),
  payable_at: z.date(),
  first_conversion: z.boolean(),
  payout_status: z.enum(["PENDING", "PAID", "FAILED", "REVERSED"]),
  payout_reference: z.string().nullable(),
  paid_at: z.date().nullable(),
  failed_at: z.date().nullable(),
  failure_reason: z.string().nullable(),
  reversed_at: z.date().nullable(),
  reversal_reason: z.string().nullable(),
  clawback: z.boolean(),
  payout_id: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  created_at: z.date(),
  updated_at: z.date(),
});

export function toReferral(row: z.output<typeof referralFields>): Referral {
  return {
    id: row.id,
    programId: row.program_id,
    programKey: row.program_key,
    codeId: row.code_id,
    code: row.code,
    referrerUserId: row.referrer_user_id,
    referredUserId: row.referred_user_id,
    transactionId: row.transaction_id,
    transactionAmountMinor: row.transaction_amount_minor,
    amountEarnedMinor: row.amount_earned_minor,
    refereeRewardMinor: row.referee_reward_minor,
    currency: row.currency,
    convertedAt: row.converted_at,
    payableAt: row.payable_at,
    firstConversion: row.first_conversion,
    payoutStatus: row.payout_status,
    payoutReference: row.payout_reference,
    paidAt: row.paid_at,
    failedAt: row.failed_at,
    failureReason: row.failure_reason,
    reversedAt: row.reversed_at,
    reversalReason: row.reversal_reason,
    clawback: row.clawback,
    payoutId: row.payout_id,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const referralRow = referralFields.transform(toReferral);

/** Columns of a tracking `t` joined with its program `p` and code `c`. */
export const referralColumns = sql.fragment`
  t.id::text AS id, t.program_id, p.program_key, t.code_id, c.code, t.referrer_user_id, t.referred_user_id,
  t.transaction_id, t.transaction_amount_minor, t.amount_earned_minor, t.referee_reward_minor, t.currency, t.converted_at, t.payable_at,
  t.first_conversion, t.payout_status, t.payout_reference, t.paid_at, t.failed_at, t.failure_reason,
  t.reversed_at, t.reversal_reason, t.clawback, t.payout_id::text AS payout_id, t.metadata, t.created_at, t.updated_at
`;

/** Joins a tracking `t` with its program `p` and code `c`. */
export const referralJoins = sql.fragment`
  JOIN referral_programs p ON p.id = t.program_id
  JOIN referral_codes c ON c.id = t.code_id
`;

export async function findReferral(db: CommonQueryMethods, id: string): Promise<Referral | null> {
  return db.maybeOne(sql.type(referralRow)`SELECT ${referralColumns} FROM referral_trackings t ${referralJoins} WHERE t.id = ${id}::uuid`);
}

/** What a conversion through a code is decided on, read in one statement. */
export type ConversionContext = {
  code: Pick<ReferralCode, "id" | "code" | "userId" | "status" | "usesCount" | "maxUses" | "expiresAt" | "createdAt">;
  program: ConversionProgram;
  /** The conversion already recorded with this transaction_id in the program, if any. */
  replayId: string | null;
  /** The referred user's first conversion in the program: who they are attributed to, and since when. */
  firstConversion: { id: string; referrerUserId: string; codeId: bigint; convertedAt: Date } | null;
  /** Whether the referred user holds one of the code's uses (then converting takes none). */
  holdsUse: boolean;
  /** The program's version (its updated_at in microseconds): the write refuses to run on a program changed since. */
  programVersion: bigint;
  /**
   * Only for programs with max_rewards_per_referrer or tiers: the referrer's
   * rewarded (not reversed) conversions in the program, and their lowest free
   * reward slot (within 1..max_rewards_per_referrer when set, else
   * 1..priorRewards+1; null: none free).
   */
  rewardSlots: { priorRewards: number; freeSlot: number | null } | null;
};

/** The program as a conversion sees it: who may use its codes, its reward rule, its limits. */
export type ConversionProgram = UsableCodeProgram &
  RewardRuleProgram &
  Pick<Program, "id" | "programKey" | "refereeReward" | "maxRewardsPerReferrer" | "budgetMinor" | "rewardsGrantedMinor" | "holdDays">;

const conversionContextRow = z
  .object({
    code_id: z.bigint(),
    code: z.string(),
    referrer_user_id: z.string(),
    code_status: z.enum(["ACTIVE", "INACTIVE", "SUSPENDED"]),
    uses_count: z.number().int(),
    max_uses: z.number().int().nullable(),
    expires_at: z.date().nullable(),
    code_created_at: z.date(),
    program_id: z.bigint(),
    program_key: z.string(),
    active: z.boolean(),
    allow_self_referral: z.boolean(),
    recurrence: z.enum(["ONE_TIME", "RECURRING"]),
    conversion_window_days: z.number().int().nullable(),
    reward_kind: z.enum(["FIXED", "PERCENTAGE"]),
    reward_amount_minor: z.bigint(),
    reward_basis_points: z.number().int(),
    tiers: tiersColumn,
    ...refereeRewardFields,
    reward_currency: z.string(),
    max_rewards_per_referrer: z.number().int().nullable(),
    budget_minor: z.bigint().nullable(),
    rewards_granted_minor: z.bigint(),
    hold_days: z.number().int(),
    replay_id: z.string().nullable(),
    first_id: z.string().nullable(),
    first_referrer_user_id: z.string().nullable(),
    first_code_id: z.bigint().nullable(),
    first_converted_at: z.date().nullable(),
    holds_use: z.boolean(),
    program_version: z.bigint(),
    prior_rewards: z.number().int().nullable(),
    free_reward_slot: z.number().int().nullable(),
    ord: z.number().int(),
  })
  .transform((row): { ord: number; context: ConversionContext } => ({
    ord: row.ord,
    context: {
      code: {
        id: row.code_id,
        code: row.code,
        userId: row.referrer_user_id,
        status: row.code_status,
        usesCount: row.uses_count,
        maxUses: row.max_uses,
        expiresAt: row.expires_at,
        createdAt: row.code_created_at,
      },
      program: {
        id: row.program_id,
        programKey: row.program_key,
        active: row.active,
        allowSelfReferral: row.allow_self_referral,
        recurrence: row.recurrence,
        conversionWindowDays: row.conversion_window_days,
        rewardKind: row.reward_kind,
        rewardAmountMinor: row.reward_amount_minor,
        rewardBasisPoints: row.reward_basis_points,
        tiers: row.tiers,
        refereeReward: toRefereeReward(row),
        rewardCurrency: row.reward_currency,
        maxRewardsPerReferrer: row.max_rewards_per_referrer,
        budgetMinor: row.budget_minor,
        rewardsGrantedMinor: row.rewards_granted_minor,
        holdDays: row.hold_days,
      },
      replayId: row.replay_id,
      firstConversion:
        row.first_id === null || row.first_referrer_user_id === null || row.first_code_id === null || row.first_converted_at === null
          ? null
          : { id: row.first_id, referrerUserId: row.first_referrer_user_id, codeId: row.first_code_id, convertedAt: row.first_converted_at },
      holdsUse: row.holds_use,
      programVersion: row.program_version,
      rewardSlots: row.prior_rewards === null ? null : { priorRewards: row.prior_rewards, freeSlot: row.free_reward_slot },
    },
  }));

/** What a conversion is looked up by. */
export type ConversionLookup = { code: string; transactionId: string | null; referredUserId: string };

/**
 * Everything each conversion is decided on, for several at once, in one
 * read-only statement: the code, its program, the conversion this one would
 * replay (same transaction_id), the referred user's first conversion in the
 * program and whether they hold one of the code's uses, and (for programs
 * with max_rewards_per_referrer or tiers only) the referrer's rewarded
 * conversions and lowest free reward slot. Answers in the order asked; null
 * where there is no such code. None of it is trusted to stay true:
 * `recordConversion` lets the database refuse what changed since. Each lookup
 * is its own index probes (LATERAL), however many there are.
 */
export async function findConversionContexts(
  db: CommonQueryMethods,
  lookups: readonly ConversionLookup[],
): Promise<(ConversionContext | null)[]> {
  // Reward slots only matter to programs with max_rewards_per_referrer or
  // tiers; elsewhere they
  // are not counted at all (a referrer may have millions of conversions).
  const slotsMatter = sql.fragment`(p.max_rewards_per_referrer IS NOT NULL OR p.tiers <> '[]'::jsonb)`;
  const rows = await db.any(sql.prepared("find_conversion_contexts", conversionContextRow)`
    SELECT input.ord::integer AS ord,
      c.id AS code_id, c.code, c.user_id AS referrer_user_id, c.status AS code_status, c.uses_count, c.max_uses, c.expires_at,
      c.created_at AS code_created_at, p.id AS program_id, ${programVersion("p")} AS program_version, p.program_key, p.active, p.allow_self_referral, p.recurrence, p.conversion_window_days,
      p.reward_kind, p.reward_amount_minor, p.reward_basis_points, p.tiers, p.reward_currency, ${refereeRewardColumns},
      p.max_rewards_per_referrer, p.budget_minor, p.rewards_granted_minor, p.hold_days,
      replay.id AS replay_id,
      first.id AS first_id, first.referrer_user_id AS first_referrer_user_id, first.code_id AS first_code_id,
      first.converted_at AS first_converted_at,
      EXISTS (SELECT 1 FROM referral_trackings r
        WHERE r.code_id = c.id AND r.referred_user_id = input.referred_user_id AND r.holds_use) AS holds_use,
      CASE WHEN ${slotsMatter} THEN rewarded.prior_rewards END AS prior_rewards,
      CASE WHEN ${slotsMatter} THEN (
        SELECT min(slot)::integer FROM generate_series(1, COALESCE(p.max_rewards_per_referrer, rewarded.prior_rewards + 1)) AS slot
        WHERE NOT EXISTS (
          SELECT 1 FROM referral_trackings taken
          WHERE taken.program_id = c.program_id AND taken.referrer_user_id = c.user_id AND taken.reward_slot = slot
        )
      ) END AS free_reward_slot
    FROM unnest(
      ${sql.array(lookups.map((l) => l.code), "text")},
      ${sql.array(lookups.map((l) => l.transactionId), "text")},
      ${sql.array(lookups.map((l) => l.referredUserId), "text")}
    ) WITH ORDINALITY AS input(code, transaction_id, referred_user_id, ord)
    -- LIMIT 1 keeps this a probe of the code index per lookup: without it the
    -- planner made it a plain join, which hashed the whole table for every
    -- statement while the table was small.
    CROSS JOIN LATERAL (SELECT * FROM referral_codes c WHERE c.code = input.code LIMIT 1) c
    JOIN referral_programs p ON p.id = c.program_id
    -- Each of these is at most one row (unique indexes).
    LEFT JOIN LATERAL (
      SELECT r.id::text AS id FROM referral_trackings r
      WHERE r.program_id = c.program_id AND r.transaction_id = input.transaction_id
      LIMIT 1
    ) replay ON true
    LEFT JOIN LATERAL (
      SELECT r.id::text AS id, r.referrer_user_id, r.code_id, r.converted_at FROM referral_trackings r
      WHERE r.program_id = c.program_id AND r.referred_user_id = input.referred_user_id AND r.first_conversion
      LIMIT 1
    ) first ON true
    CROSS JOIN LATERAL (
      SELECT count(*)::integer AS prior_rewards FROM referral_trackings r
      WHERE ${slotsMatter} AND r.program_id = c.program_id AND r.referrer_user_id = c.user_id AND r.payout_status <> 'REVERSED'
    ) rewarded
  `);
  const contexts: (ConversionContext | null)[] = lookups.map(() => null);
  for (const { ord, context } of rows) contexts[ord - 1] = context;
  return contexts;
}

export type NewReferral = Pick<
  Referral,
  | "programId"
  | "programKey"
  | "codeId"
  | "code"
  | "referrerUserId"
  | "referredUserId"
  | "transactionId"
  | "transactionAmountMinor"
  | "amountEarnedMinor"
  | "refereeRewardMinor"
  | "currency"
  | "convertedAt"
  | "payableAt"
  | "firstConversion"
  | "metadata"
> & {
  /** Whether this conversion takes one of the code's uses (its referred user holds none). */
  takesUse: boolean;
  /** The program's version the conversion was decided on. */
  programVersion: bigint;
  rewardSlot: number | null;
};

/** What the database made for a recorded conversion. */
const recordedRow = z
  .object({ id: z.string(), created_at: z.date(), updated_at: z.date() })
  .transform((row) => ({ id: row.id, createdAt: row.created_at, updatedAt: row.updated_at }));

/**
 * Records a conversion in one statement, so all of it happens or none of it,
 * and only on what it was decided on:
 * - the program must still be active and unchanged (its version) as the
 *   statement's snapshot sees it, and is share-locked on its key (which
 *   holds off only a change of its key, which UpdateProgram never makes). A
 *   budgeted program's grant checks the version again on the row as the
 *   grant locks it, so a conversion decided before a change to such a program
 *   decides again after it; in a program without a budget, a conversion whose
 *   statement began before the change committed is recorded as decided (it
 *   ran alongside the change). A budget set where there was none holds
 *   conversion writes off until it commits (`holdConversionWrites`);
 * - the code must still be ACTIVE and unexpired at the conversion's time: a
 *   conversion that takes a use checks it in the update that takes the use,
 *   one that takes none share-locks the code and the conversion holding its
 *   user's use (so neither a suspension nor a reversal giving that use back
 *   can pass unseen);
 * - only a conversion standing on a use is granted its reward from a
 *   budgeted program, and inserted.
 * The database refuses what the decision could not foresee: a use past
 * max_uses, a grant past the budget or to a program changed since violates
 * a CHECK constraint (referral_codes_within_max_uses,
 * referral_programs_within_budget,
 * referral_programs_rewards_granted_minor_non_negative); a second
 * first conversion, a second use of one code by one user, a reused
 * transaction_id or a taken reward slot violates a unique index. Null when
 * anything it was decided on changed: decide again.
 *
 * It returns only what the database made (the id and the row's times): the
 * rest of the recorded row is what was given, a PENDING payout and nothing
 * paid, failed or reversed yet. Returning and parsing the whole joined row
 * cost the service more than the insert (pg builds the parsers of every
 * column anew for each result).
 */
export async function recordConversion(db: CommonQueryMethods, referral: NewReferral): Promise<Referral | null> {
  const amount = sql.fragment`${referral.amountEarnedMinor}::bigint`;
  const refereeAmount = sql.fragment`${referral.refereeRewardMinor}::bigint`;
  // The budget covers both sides.
  const granted = sql.fragment`(${amount} + ${refereeAmount})`;
  const takesUse = sql.fragment`${referral.takesUse}::boolean`;
  const at = sql.timestamp(referral.convertedAt);
  const recorded = await db.maybeOne(sql.prepared("record_conversion", recordedRow)`
    WITH program AS (
      SELECT p.id, p.budget_minor IS NOT NULL AS budgeted FROM referral_programs p
      WHERE p.id = ${referral.programId} AND p.active AND ${programVersion("p")} = ${referral.programVersion}::bigint
      FOR KEY SHARE
    ), use AS (
      UPDATE referral_codes c SET uses_count = c.uses_count + 1, updated_at = now()
      FROM program
      WHERE c.id = ${referral.codeId} AND ${takesUse}
        AND c.status = 'ACTIVE' AND (c.expires_at IS NULL OR c.expires_at > ${at})
      RETURNING c.id
    ), held AS (
      SELECT t.id FROM referral_trackings t JOIN referral_codes c ON c.id = t.code_id
      WHERE NOT ${takesUse} AND t.code_id = ${referral.codeId} AND t.referred_user_id = ${referral.referredUserId} AND t.holds_use
        AND c.status = 'ACTIVE' AND (c.expires_at IS NULL OR c.expires_at > ${at})
      FOR SHARE
    ), standing AS (
      -- The use this conversion stands on: the one it took, or the one its
      -- user holds. Reading it runs the code's row locks first, in the order
      -- ReverseReferral locks the rows in (code, then program).
      SELECT 1 AS one FROM use UNION ALL SELECT 1 FROM held
    ), granted AS (
      -- The program's version again, on the row as the grant locked it (an
      -- UpdateProgram may have committed since this statement's snapshot):
      -- if it moved, a negative counter, which
      -- referral_programs_rewards_granted_minor_non_negative refuses, undoes
      -- the whole statement, the use included, and the conversion decides again.
      UPDATE referral_programs p SET rewards_granted_minor = CASE
          WHEN ${programVersion("p")} = ${referral.programVersion}::bigint THEN p.rewards_granted_minor + ${granted}
          ELSE -1
        END
      FROM program
      WHERE p.id = program.id AND program.budgeted AND ${granted} > 0 AND EXISTS (SELECT 1 FROM standing)
      RETURNING p.id
    ), t AS (
      INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id,
        transaction_amount_minor, amount_earned_minor, referee_reward_minor, currency, converted_at, payable_at, first_conversion,
        holds_use, reward_slot, metadata)
      SELECT program.id, ${referral.codeId}, ${referral.referrerUserId}, ${referral.referredUserId},
        ${referral.transactionId}, ${referral.transactionAmountMinor}, ${amount}, ${refereeAmount}, ${referral.currency},
        ${at}, ${sql.timestamp(referral.payableAt)}, ${referral.firstConversion},
        ${takesUse}, ${referral.rewardSlot}, ${JSON.stringify(referral.metadata)}::jsonb
      FROM program
      -- A budgeted reward needs its grant, which needs the use.
      WHERE EXISTS (SELECT 1 FROM standing)
        AND (NOT program.budgeted OR ${granted} = 0 OR EXISTS (SELECT 1 FROM granted))
      RETURNING id::text AS id, created_at, updated_at
    )
    SELECT id, created_at, updated_at FROM t
  `);
  if (recorded === null) return null;
  const { rewardSlot: _, takesUse: __, programVersion: ___, ...given } = referral;
  return {
    ...given,
    ...recorded,
    payoutStatus: "PENDING",
    payoutReference: null,
    paidAt: null,
    failedAt: null,
    failureReason: null,
    reversedAt: null,
    reversalReason: null,
    clawback: false,
    payoutId: null,
  };
}

/** Locks the referrals (in id order, so concurrent batches cannot deadlock) and returns those that exist. */
export async function lockReferrals(db: CommonQueryMethods, ids: readonly string[]): Promise<readonly Referral[]> {
  return db.any(sql.type(referralRow)`
    SELECT ${referralColumns} FROM referral_trackings t ${referralJoins}
    WHERE t.id = ANY(${sql.array(ids, "uuid")})
    ORDER BY t.id
    FOR UPDATE OF t
  `);
}

export async function setPayoutStatus(
  db: CommonQueryMethods,
  ids: readonly string[],
  change: { status: PayoutStatus; payoutReference: string | null; failureReason: string | null; now: Date },
): Promise<readonly Referral[]> {
  const at = sql.timestamp(change.now);
  return db.any(sql.type(referralRow)`
    WITH t AS (
      UPDATE referral_trackings SET
        payout_status = ${change.status},
        paid_at = CASE WHEN ${change.status} = 'PAID' THEN ${at} ELSE paid_at END,
        payout_reference = CASE WHEN ${change.status} = 'PAID' THEN ${change.payoutReference} ELSE payout_reference END,
        failed_at = CASE WHEN ${change.status} = 'FAILED' THEN ${at} ELSE failed_at END,
        failure_reason = CASE WHEN ${change.status} = 'FAILED' THEN ${change.failureReason} ELSE failure_reason END,
        updated_at = now()
      WHERE id = ANY(${sql.array(ids, "uuid")})
      RETURNING *
    )
    SELECT ${referralColumns} FROM t ${referralJoins}
  `);
}

/**
 * Reverses a referral that is PENDING, FAILED or PAID, in one conditional
 * statement (a clawback when it was PAID), and frees its reward slot. Null
 * when there is no such referral or it is already reversed.
 */
export async function reverseReferral(db: CommonQueryMethods, id: string, reason: string, now: Date): Promise<Referral | null> {
  return db.maybeOne(sql.type(referralRow)`
    WITH t AS (
      UPDATE referral_trackings SET
        payout_status = 'REVERSED',
        clawback = (payout_status = 'PAID'),
        reversed_at = ${sql.timestamp(now)},
        reversal_reason = ${reason},
        reward_slot = NULL,
        updated_at = now()
      WHERE id = ${id}::uuid AND payout_status IN ('PENDING', 'FAILED', 'PAID')
      RETURNING *
    )
    SELECT ${referralColumns} FROM t ${referralJoins}
  `);
}

/**
 * Gives the code its use back when none of the referred user's conversions
 * through it stands any more. The conversion holding the use is locked first,
 * so reversals of one user's conversions decide one after the other, and a
 * conversion standing on that use (which share-locks it) is either seen here
 * or decides again. Returns whether the use was given back.
 */
export async function releaseUse(db: CommonQueryMethods, referral: Pick<Referral, "programId" | "codeId" | "referredUserId">): Promise<boolean> {
  const { programId, codeId, referredUserId } = referral;
  const holder = await db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id::text FROM referral_trackings
    WHERE code_id = ${codeId} AND referred_user_id = ${referredUserId} AND holds_use
    FOR UPDATE
  `);
  if (holder === null) return false;
  const released = await db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    UPDATE referral_trackings SET holds_use = false, updated_at = now()
    WHERE id = ${holder}::uuid AND NOT EXISTS (
      SELECT 1 FROM referral_trackings
      WHERE program_id = ${programId} AND referred_user_id = ${referredUserId} AND code_id = ${codeId} AND payout_status <> 'REVERSED'
    )
    RETURNING id::text
  `);
  return released !== null;
}

export type ReferralFilter = {
  referrerUserId: string | null;
  referredUserId: string | null;
  programKey: string | null;
  payoutStatus: PayoutStatus | null;
  convertedAfter: Date | null;
  convertedBefore: Date | null;
};

/** Newest conversion first; keyset after (converted_at, id). */
export async function listReferrals(
  db: CommonQueryMethods,
  filter: ReferralFilter,
  after: { convertedAt: Date; id: string } | null,
  limit: number,
): Promise<readonly Referral[]> {
  const conditions = [sql.fragment`TRUE`];
  if (filter.referrerUserId !== null) conditions.push(sql.fragment`t.referrer_user_id = ${filter.referrerUserId}`);
  if (filter.referredUserId !== null) conditions.push(sql.fragment`t.referred_user_id = ${filter.referredUserId}`);
  // By the program's id, not a join on its key: the list's index on
  // (program_id, …) then yields rows in page order, with no sort.
  if (filter.programKey !== null) conditions.push(sql.fragment`t.program_id = (SELECT id FROM referral_programs WHERE program_key = ${filter.programKey})`);
  if (filter.payoutStatus !== null) conditions.push(sql.fragment`t.payout_status = ${filter.payoutStatus}`);
  if (filter.convertedAfter !== null) conditions.push(sql.fragment`t.converted_at >= ${sql.timestamp(filter.convertedAfter)}`);
  if (filter.convertedBefore !== null) conditions.push(sql.fragment`t.converted_at < ${sql.timestamp(filter.convertedBefore)}`);
  if (after !== null) {
    conditions.push(sql.fragment`(t.converted_at, t.id) < (${sql.timestamp(after.convertedAt)}, ${after.id}::uuid)`);
  }
  return db.any(sql.type(referralRow)`
    SELECT ${referralColumns} FROM referral_trackings t ${referralJoins}
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY t.converted_at DESC, t.id DESC
    LIMIT ${limit}
  `);
}

export type Earnings = {
  currency: string;
  totalMinor: bigint;
  pendingMinor: bigint;
  payableMinor: bigint;
  paidMinor: bigint;
  failedMinor: bigint;
  reversedMinor: bigint;
  clawbackMinor: bigint;
  referralCount: bigint;
};

/** One currency of GetUserEarnings, as SQL sums it (snake_case columns). */
export const earningsRow = z
    .object({
      currency: z.string(),
      total: z.bigint(),
      pending: z.bigint(),
      payable: z.bigint(),
      paid: z.bigint(),
      failed: z.bigint(),
      reversed: z.bigint(),
      clawback: z.bigint(),
      referral_count: z.bigint(),
    })
    .transform(
      (row): Earnings => ({
        currency: row.currency,
        totalMinor: row.total,
        pendingMinor: row.pending,
        payableMinor: row.payable,
        paidMinor: row.paid,
        failedMinor: row.failed,
        reversedMinor: row.reversed,
        clawbackMinor: row.clawback,
        referralCount: row.referral_count,
      }),
    );

/**
 * A referrer's earnings per currency (pending, payable, paid, failed,
 * reversed, clawback, total), in one statement: the running totals of
 * referrer_earnings (sql/0014, kept exact by triggers) summed over their few
 * rows, less the PENDING rewards still in hold at `now`, read from the index
 * of sql/0015. Its cost grows with the referrer's rewards in hold, not with
 * all their conversions.
 */
export async function earnings(db: CommonQueryMethods, userId: string, programKey: string | null, now: Date): Promise<readonly Earnings[]> {
  const inProgram = (alias: string) =>
    sql.fragment`(${programKey}::text IS NULL OR ${sql.identifier([alias, "program_id"])} = (SELECT id FROM referral_programs WHERE program_key = ${programKey}))`;
  return db.any(sql.type(earningsRow)`
    WITH totals AS (
      SELECT e.currency,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status <> 'REVERSED'), 0)::bigint AS total,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status = 'PENDING'), 0)::bigint AS pending_all,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status = 'PAID'), 0)::bigint AS paid,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status = 'FAILED'), 0)::bigint AS failed,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status = 'REVERSED'), 0)::bigint AS reversed,
        COALESCE(sum(e.amount_minor) FILTER (WHERE e.payout_status = 'REVERSED' AND e.clawback), 0)::bigint AS clawback,
        sum(e.referrals)::bigint AS referral_count
      FROM referrer_earnings e
      WHERE e.referrer_user_id = ${userId} AND ${inProgram("e")}
      GROUP BY e.currency
      HAVING sum(e.referrals) > 0
    ), in_hold AS (
      SELECT t.currency, sum(t.amount_earned_minor)::bigint AS amount
      FROM referral_trackings t
      WHERE t.referrer_user_id = ${userId} AND t.payout_status = 'PENDING' AND t.payable_at > ${sql.timestamp(now)} AND ${inProgram("t")}
      GROUP BY t.currency
    )
    SELECT s.currency, s.total,
      COALESCE(h.amount, 0)::bigint AS pending,
      (s.pending_all - COALESCE(h.amount, 0))::bigint AS payable,
      s.paid, s.failed, s.reversed, s.clawback, s.referral_count
    FROM totals s LEFT JOIN in_hold h ON h.currency = s.currency
    ORDER BY s.currency
  `);
}
