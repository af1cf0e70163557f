import { type CommonQueryMethods, type FragmentSqlToken, sql } from "slonik";
import { z } from "zod";
import type { Program } from "../programs/model.ts";
import { refereeRewardColumns, refereeRewardFields, tiersColumn, toRefereeReward } from "../programs/repository.ts";
import type { CodeStatus, ReferralCode } from "./model.ts";
import type { RewardRuleProgram } from "../programs/reward.ts";
import type { ReferredUser, UsableCodeProgram } from "./usability.ts";

// Statements on codes. Writes referral_codes; reads referral_programs (each
// code's program) and, for ValidateCode, referral_trackings (the referred
// user's first conversion and held use, the owner's rewarded conversions).

/** A referral_codes row with its program's key, as the statements below select it (codeColumns). */
export const codeFields = z.object({
  id: z.bigint(),
  code: z.string(),
  program_id: z.bigint(),
  program_key: z.string(),
  user_id: z.string(),
  status: z.enum(["ACTIVE", "INACTIVE", "SUSPENDED"]),
  uses_count: z.number().int(),
  max_uses: z.number().int().nullable(),
  expires_at: z.date().nullable(),
  vanity: z.boolean(),
  request_id: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  created_at: z.date(),
  updated_at: z.date(),
});

export function toReferralCode(row: z.output<typeof codeFields>): ReferralCode {
  return {
    id: row.id,
    code: row.code,
    programId: row.program_id,
    programKey: row.program_key,
    userId: row.user_id,
    status: row.status,
    usesCount: row.uses_count,
    maxUses: row.max_uses,
    expiresAt: row.expires_at,
    vanity: row.vanity,
    requestId: row.request_id,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const codeRow = codeFields.transform(toReferralCode);

/** Columns of a code row `c`, its program's key given by `programKey`. */
function columnsOfCode(programKey: FragmentSqlToken) {
  return sql.fragment`
    c.id, c.code, c.program_id, ${programKey} AS program_key, c.user_id, c.status, c.uses_count, c.max_uses,
    c.expires_at, c.vanity, c.request_id, c.metadata, c.created_at, c.updated_at
  `;
}

/** Columns of a code row `c` joined with its program `p`. */
export const codeColumns = columnsOfCode(sql.fragment`p.program_key`);

/**
 * SQL condition: code `c` has derived status `status` at `now`. The stored
 * status is a literal, not a parameter, and the rare states are spelled as
 * the partial indexes of sql/0019, 0020 and 0024 define them (`exhausted` is
 * kept equal to `uses_count >= max_uses` by sql/0021–0023): a generic plan (the
 * service plans every statement generically) can use a partial index only
 * when the statement's text implies the index's predicate.
 */
function statusCondition(status: CodeStatus, now: Date): FragmentSqlToken {
  const at = sql.timestamp(now);
  const expired = sql.fragment`(c.expires_at IS NOT NULL AND c.expires_at <= ${at})`;
  switch (status) {
    case "INACTIVE":
      return sql.fragment`c.status = 'INACTIVE'`;
    case "SUSPENDED":
      return sql.fragment`c.status = 'SUSPENDED'`;
    case "EXPIRED":
      return sql.fragment`c.status = 'ACTIVE' AND ${expired}`;
    case "EXHAUSTED":
      return sql.fragment`c.status = 'ACTIVE' AND NOT ${expired} AND c.exhausted`;
    case "ACTIVE":
      return sql.fragment`c.status = 'ACTIVE' AND NOT ${expired} AND NOT c.exhausted`;
  }
}

/**
 * A user's lowest free slot of a program's `max_codes_per_user`, as both
 * CreateCode and BatchCreateCodes find it: slot 1 when it is free (one index
 * probe, the usual case), else the lowest slot just above one the user holds
 * (the lowest free slot always is one of these), so the search costs as many
 * probes as the user has codes, not max_codes_per_user of them. NULL when
 * every slot is taken.
 */
function freeSlot(programId: FragmentSqlToken, userId: FragmentSqlToken, maxCodes: FragmentSqlToken): FragmentSqlToken {
  const heldBy = sql.fragment`taken.program_id = ${programId} AND taken.user_id = ${userId}`;
  return sql.fragment`CASE
    WHEN NOT EXISTS (SELECT 1 FROM referral_codes taken WHERE ${heldBy} AND taken.slot = 1) THEN 1
    ELSE (
      SELECT min(candidate.slot) FROM (SELECT taken.slot + 1 AS slot FROM referral_codes taken WHERE ${heldBy}) candidate
      WHERE candidate.slot <= ${maxCodes} AND NOT EXISTS (SELECT 1 FROM referral_codes taken WHERE ${heldBy} AND taken.slot = candidate.slot)
    )
  END`;
}

export type NewCode = {
  code: string;
  programId: bigint;
  userId: string;
  vanity: boolean;
  /** Explicit limit; null takes the program's default_code_max_uses. */
  maxUses: number | null;
  /** Explicit expiry; null takes now + the program's default_code_ttl. */
  expiresAt: Date | null;
  requestId: string | null;
  metadata: Record<string, string>;
  /** Insert nothing when the user already holds a usable code ("give me my code"). */
  unlessUsableExists: boolean;
};

/**
 * Inserts a code in the user's lowest free slot of the program's
 * `max_codes_per_user` (freeSlot), in one statement. Returns null when the user has no
 * free slot. Concurrent callers that pick the same slot collide on the
 * unique (program_id, user_id, slot) index and retry; the limit cannot be
 * exceeded however many race. With `unlessUsableExists`, also returns null
 * when the user holds a usable code.
 */
export async function insertCode(db: CommonQueryMethods, code: NewCode, now: Date): Promise<ReferralCode | null> {
  return db.maybeOne(sql.type(codeRow)`
    WITH inserted AS (
      INSERT INTO referral_codes (code, user_id, program_id, slot, max_uses, expires_at, vanity, request_id, metadata)
      SELECT ${code.code}, ${code.userId}, p.id, free.slot,
        COALESCE(${code.maxUses}::integer, p.default_code_max_uses),
        COALESCE(${code.expiresAt === null ? null : sql.timestamp(code.expiresAt)}, ${sql.timestamp(now)} + p.default_code_ttl),
        ${code.vanity}, ${code.requestId}, ${JSON.stringify(code.metadata)}::jsonb
      FROM referral_programs p
      CROSS JOIN LATERAL (SELECT ${freeSlot(sql.fragment`p.id`, sql.fragment`${code.userId}::text`, sql.fragment`p.max_codes_per_user`)} AS slot) free
      WHERE p.id = ${code.programId} AND free.slot IS NOT NULL
        AND NOT (${code.unlessUsableExists} AND EXISTS (
          SELECT 1 FROM referral_codes c
          WHERE c.program_id = p.id AND c.user_id = ${code.userId} AND ${statusCondition("ACTIVE", now)}
        ))
      RETURNING *
    )
    SELECT ${codeColumns} FROM inserted c JOIN referral_programs p ON p.id = c.program_id
  `);
}

/**
 * A batch's codes as one row: the columns they all share, and their ids, codes
 * and users as arrays in insertion order. A thousand full rows cost the service
 * more to receive and parse than the database takes to insert them.
 */
const insertedBatch = codeFields
  .omit({ id: true, code: true, user_id: true })
  .extend({ ids: z.array(z.string()), codes: z.array(z.string()), user_ids: z.array(z.string()) })
  .transform((batch): ReferralCode[] =>
    batch.ids.map((id, i) => toReferralCode({ ...batch, id: BigInt(id), code: batch.codes[i]!, user_id: batch.user_ids[i]! })),
  );

/**
 * Inserts one generated code per user in one statement: all or nothing; the
 * codes come back in the order of `userIds`. Every column but id, code, user
 * and slot comes from the single `batch` row, which the statement returns
 * as it inserted it.
 *
 * Each user takes their lowest free slot (freeSlot). A user with no free
 * slot gets a NULL slot, which the NOT NULL constraint refuses, failing the
 * whole statement (NotNullIntegrityConstraintViolationError on column
 * "slot").
 */
export async function insertCodes(
  db: CommonQueryMethods,
  batch: { programId: bigint; userIds: readonly string[]; codes: readonly string[] },
  now: Date,
): Promise<readonly ReferralCode[]> {
  return db.one(sql.type(insertedBatch)`
    WITH batch AS (
      SELECT p.id AS program_id, p.program_key, p.max_codes_per_user, 'ACTIVE'::text AS status, 0 AS uses_count,
        p.default_code_max_uses AS max_uses, ${sql.timestamp(now)} + p.default_code_ttl AS expires_at, false AS vanity,
        NULL::text AS request_id, '{}'::jsonb AS metadata, now() AS created_at, now() AS updated_at
      FROM referral_programs p WHERE p.id = ${batch.programId}
    ), inserted AS (
      INSERT INTO referral_codes (
        code, user_id, slot, program_id, status, uses_count, max_uses, expires_at, vanity, request_id, metadata, created_at, updated_at
      )
      SELECT input.code, input.user_id, free.slot, b.program_id, b.status, b.uses_count, b.max_uses, b.expires_at, b.vanity,
        b.request_id, b.metadata, b.created_at, b.updated_at
      FROM unnest(${sql.array(batch.userIds, "text")}, ${sql.array(batch.codes, "text")}) WITH ORDINALITY AS input(user_id, code, ord)
      CROSS JOIN batch b
      CROSS JOIN LATERAL (SELECT ${freeSlot(sql.fragment`b.program_id`, sql.fragment`input.user_id`, sql.fragment`b.max_codes_per_user`)} AS slot) free
      ORDER BY input.ord
      RETURNING id, code, user_id
    )
    SELECT codes.ids, codes.codes, codes.user_ids, b.program_id, b.program_key, b.status, b.uses_count, b.max_uses,
      b.expires_at, b.vanity, b.request_id, b.metadata, b.created_at, b.updated_at
    FROM batch b, (
      SELECT array_agg(id::text ORDER BY id) AS ids, array_agg(code ORDER BY id) AS codes, array_agg(user_id ORDER BY id) AS user_ids
      FROM inserted
    ) codes
  `);
}

/** Which of these users already hold `max_codes_per_user` codes in the program. */
export async function usersAtCodeLimit(db: CommonQueryMethods, programId: bigint, userIds: readonly string[]): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ user_id: z.string() }))`
    SELECT c.user_id FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE c.program_id = ${programId} AND c.user_id = ANY(${sql.array(userIds, "text")})
    GROUP BY c.user_id, p.max_codes_per_user
    HAVING count(*) >= p.max_codes_per_user
  `);
}

export async function findCode(db: CommonQueryMethods, code: string): Promise<ReferralCode | null> {
  return db.maybeOne(sql.type(codeRow)`
    SELECT ${codeColumns} FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE c.code = ${code}
  `);
}

export async function findCodeByRequestId(db: CommonQueryMethods, programId: bigint, requestId: string): Promise<ReferralCode | null> {
  return db.maybeOne(sql.type(codeRow)`
    SELECT ${codeColumns} FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE c.program_id = ${programId} AND c.request_id = ${requestId}
  `);
}

/** The user's oldest code in the program that is usable at `now`. */
export async function findUsableCode(db: CommonQueryMethods, programId: bigint, userId: string, now: Date): Promise<ReferralCode | null> {
  return db.maybeOne(sql.type(codeRow)`
    SELECT ${codeColumns} FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE c.program_id = ${programId} AND c.user_id = ${userId} AND ${statusCondition("ACTIVE", now)}
    ORDER BY c.id
    LIMIT 1
  `);
}

export async function listCodes(
  db: CommonQueryMethods,
  filter: { userId: string | null; programKey: string | null; status: CodeStatus | null; afterId: bigint | null; limit: number },
  now: Date,
): Promise<readonly ReferralCode[]> {
  const conditions = [sql.fragment`TRUE`];
  if (filter.userId !== null) conditions.push(sql.fragment`c.user_id = ${filter.userId}`);
  // By the program's id, not a join on its key: the list's index on
  // (program_id, …) then yields rows in page order, with no sort.
  if (filter.programKey !== null) conditions.push(sql.fragment`c.program_id = (SELECT id FROM referral_programs WHERE program_key = ${filter.programKey})`);
  if (filter.status !== null) conditions.push(statusCondition(filter.status, now));
  if (filter.afterId !== null) conditions.push(sql.fragment`c.id > ${filter.afterId}`);
  // The page comes from referral_codes alone, each row's program key from a
  // subquery run for the page's rows: joined to referral_programs, the
  // planner could drive from every program into its (program_id, …) index
  // and sort all their matching codes (a status across every program at 10 M
  // codes: ~1 s a page) instead of walking one index in page order.
  return db.any(sql.type(codeRow)`
    SELECT ${columnsOfCode(sql.fragment`(SELECT p.program_key FROM referral_programs p WHERE p.id = c.program_id)`)}
    FROM referral_codes c
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY c.id
    LIMIT ${filter.limit}
  `);
}

export type CodeChanges = {
  status?: "ACTIVE" | "INACTIVE" | "SUSPENDED";
  maxUses?: number | null;
  expiresAt?: Date | null;
  metadata?: Record<string, string>;
};

/**
 * Changes a code in one statement; null when there is no such code. A
 * `max_uses` below `uses_count` violates referral_codes_within_max_uses, also
 * when a conversion lands concurrently.
 */
export async function updateCode(db: CommonQueryMethods, code: string, changes: CodeChanges): Promise<ReferralCode | null> {
  const assignments = [sql.fragment`updated_at = now()`];
  if (changes.status !== undefined) assignments.push(sql.fragment`status = ${changes.status}`);
  if (changes.maxUses !== undefined) assignments.push(sql.fragment`max_uses = ${changes.maxUses}`);
  if (changes.expiresAt !== undefined) {
    assignments.push(sql.fragment`expires_at = ${changes.expiresAt === null ? null : sql.timestamp(changes.expiresAt)}`);
  }
  if (changes.metadata !== undefined) assignments.push(sql.fragment`metadata = ${JSON.stringify(changes.metadata)}::jsonb`);
  return db.maybeOne(sql.type(codeRow)`
    WITH updated AS (
      UPDATE referral_codes SET ${sql.join(assignments, sql.fragment`, `)}
      WHERE code = ${code}
      RETURNING *
    )
    SELECT ${codeColumns} FROM updated c JOIN referral_programs p ON p.id = c.program_id
  `);
}

export type CodeForValidation = {
  code: ReferralCode;
  program: UsableCodeProgram & RewardRuleProgram & Pick<Program, "refereeReward">;
  /** The code owner's conversions in the program that were not reversed (counted only when the program has tiers, else 0). */
  referrerRewards: number;
  /** The referred user's standing towards the code, when the lookup names one. */
  referredUser: ReferredUser | null;
};

const validationRow = codeFields
  .extend({
    ord: z.number().int(),
    referred_user_id: z.string().nullable(),
    program_active: z.boolean(),
    allow_self_referral: z.boolean(),
    recurrence: z.enum(["ONE_TIME", "RECURRING"]),
    conversion_window_days: z.number().int().nullable(),
    reward_kind: z.enum(["FIXED", "PERCENTAGE"]),
    reward_amount_minor: z.bigint(),
    reward_basis_points: z.number().int(),
    reward_currency: z.string(),
    tiers: tiersColumn,
    ...refereeRewardFields,
    referrer_rewards: z.number().int(),
    first_referrer_user_id: z.string().nullable(),
    first_converted_at: z.date().nullable(),
    holds_use: z.boolean(),
  })
  .transform((row): { ord: number; found: CodeForValidation } => ({
    ord: row.ord,
    found: {
      code: toReferralCode(row),
      program: {
        active: row.program_active,
        allowSelfReferral: row.allow_self_referral,
        recurrence: row.recurrence,
        conversionWindowDays: row.conversion_window_days,
        rewardKind: row.reward_kind,
        rewardAmountMinor: row.reward_amount_minor,
        rewardBasisPoints: row.reward_basis_points,
        rewardCurrency: row.reward_currency,
        tiers: row.tiers,
        refereeReward: toRefereeReward(row),
      },
      referrerRewards: row.referrer_rewards,
      referredUser:
        row.referred_user_id === null
          ? null
          : {
              id: row.referred_user_id,
              firstConversion:
                row.first_referrer_user_id === null || row.first_converted_at === null
                  ? null
                  : { referrerUserId: row.first_referrer_user_id, convertedAt: row.first_converted_at },
              holdsUse: row.holds_use,
            },
    },
  }));

/**
 * Everything ValidateCode needs for several lookups at once, in one read-only
 * statement: each code, its program's rule, the owner's rewarded conversions,
 * and the referred user's first conversion in the program and whether they
 * hold one of the code's uses. Answers in the order asked; null where there
 * is no such code.
 */
export async function findCodesForValidation(
  db: CommonQueryMethods,
  lookups: readonly { code: string; referredUserId: string | null }[],
): Promise<(CodeForValidation | null)[]> {
  const rows = await db.any(sql.prepared("find_codes_for_validation", validationRow)`
    SELECT input.ord::integer AS ord, input.referred_user_id, ${codeColumns},
      p.active AS program_active, p.allow_self_referral, p.recurrence, p.conversion_window_days, p.reward_kind,
      p.reward_amount_minor, p.reward_basis_points, p.reward_currency, p.tiers, ${refereeRewardColumns},
      -- Only tiers depend on it; a referrer may have millions of conversions.
      CASE WHEN p.tiers <> '[]'::jsonb THEN (SELECT count(*)::integer FROM referral_trackings t
        WHERE t.program_id = c.program_id AND t.referrer_user_id = c.user_id AND t.payout_status <> 'REVERSED') ELSE 0 END AS referrer_rewards,
      first.referrer_user_id AS first_referrer_user_id, first.converted_at AS first_converted_at,
      EXISTS (SELECT 1 FROM referral_trackings t
        WHERE t.code_id = c.id AND t.referred_user_id = input.referred_user_id AND t.holds_use) AS holds_use
    FROM unnest(${sql.array(lookups.map((l) => l.code), "text")}, ${sql.array(lookups.map((l) => l.referredUserId), "text")})
      WITH ORDINALITY AS input(code, referred_user_id, ord)
    -- One probe of the code index per lookup, whatever the table's size: as a
    -- plain join, the generic plan for a small table hashed all of it for
    -- every batch.
    CROSS JOIN LATERAL (SELECT * FROM referral_codes c WHERE c.code = input.code LIMIT 1) c
    JOIN referral_programs p ON p.id = c.program_id
    -- At most one row (a unique index); none for a lookup without a referred user.
    LEFT JOIN LATERAL (
      SELECT t.referrer_user_id, t.converted_at FROM referral_trackings t
      WHERE t.program_id = c.program_id AND t.referred_user_id = input.referred_user_id AND t.first_conversion
      LIMIT 1
    ) first ON true
  `);
  const answers: (CodeForValidation | null)[] = lookups.map(() => null);
  for (const { ord, found } of rows) answers[ord - 1] = found;
  return answers;
}

/** Gives a use back (reversal with reversal_frees_use). */
export async function giveUseBack(db: CommonQueryMethods, codeId: bigint): Promise<void> {
  await db.query(sql.type(z.object({}))`
    UPDATE referral_codes SET uses_count = uses_count - 1, updated_at = now() WHERE id = ${codeId} AND uses_count > 0
  `);
}
