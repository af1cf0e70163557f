import { type CommonQueryMethods, type FragmentSqlToken, type IdentifierSqlToken, sql } from "slonik";
import { z } from "zod";
import type { NewProgram, Program, ProgramSettings, RefereeReward, RewardTier } from "./model.ts";

// Statements on programs. Writes referral_programs; reads referral_trackings
// only to count the standing rewards when a budget is set.

/** The `tiers` jsonb column, as RewardTiers. */
export const tiersColumn = z
  .array(
    z.object({
      min_prior_rewards: z.number().int(),
      reward_amount_minor: z.union([z.string(), z.number()]).transform((value) => BigInt(value)),
      reward_basis_points: z.number().int(),
    }),
  )
  .transform((tiers): RewardTier[] =>
    tiers.map((tier) => ({
      minPriorRewards: tier.min_prior_rewards,
      rewardAmountMinor: tier.reward_amount_minor,
      rewardBasisPoints: tier.reward_basis_points,
    })),
  );

/** The referee reward columns of referral_programs (refereeRewardColumns). */
export const refereeRewardFields = {
  referee_reward_kind: z.enum(["FIXED", "PERCENTAGE"]).nullable(),
  referee_amount_minor: z.bigint(),
  referee_basis_points: z.number().int(),
  referee_max_amount_minor: z.bigint().nullable(),
  referee_external_coupon_id: z.string().nullable(),
};

export function toRefereeReward(row: z.output<z.ZodObject<typeof refereeRewardFields>>): RefereeReward | null {
  if (row.referee_reward_kind === null) return null;
  return {
    kind: row.referee_reward_kind,
    amountMinor: row.referee_amount_minor,
    basisPoints: row.referee_basis_points,
    maxAmountMinor: row.referee_max_amount_minor,
    externalCouponId: row.referee_external_coupon_id,
  };
}

/** The referee reward columns of a program `p`. */
export const refereeRewardColumns = sql.fragment`
  p.referee_reward_kind, p.referee_amount_minor, p.referee_basis_points, p.referee_max_amount_minor, p.referee_external_coupon_id
`;

/** A referral_programs row as the statements below select it (programColumns). */
export const programFields = z.object({
  id: z.bigint(),
  program_key: z.string(),
  name: z.string(),
  reward_kind: z.enum(["FIXED", "PERCENTAGE"]),
  reward_amount_minor: z.bigint(),
  reward_basis_points: z.number().int(),
  tiers: tiersColumn,
  ...refereeRewardFields,
  reward_currency: z.string(),
  recurrence: z.enum(["ONE_TIME", "RECURRING"]),
  active: z.boolean(),
  max_rewards_per_referrer: z.number().int().nullable(),
  conversion_window_days: z.number().int().nullable(),
  max_codes_per_user: z.number().int(),
  code_prefix: z.string(),
  code_length: z.number().int(),
  default_code_max_uses: z.number().int().nullable(),
  default_code_ttl_seconds: z.number().int().nullable(),
  allow_self_referral: z.boolean(),
  budget_minor: z.bigint().nullable(),
  rewards_granted_minor: z.bigint(),
  hold_days: z.number().int(),
  reversal_frees_use: z.boolean(),
  min_payout_minor: z.bigint(),
  max_payout_minor: z.bigint().nullable(),
  payout_method: z.enum(["manual", "stripe_connect", "wise", "paypal"]),
  metadata: z.record(z.string(), z.string()),
  created_at: z.date(),
  updated_at: z.date(),
});

export function toProgram(row: z.output<typeof programFields>): Program {
  return {
    id: row.id,
    programKey: row.program_key,
    name: row.name,
    rewardKind: row.reward_kind,
    rewardAmountMinor: row.reward_amount_minor,
    rewardBasisPoints: row.reward_basis_points,
    tiers: row.tiers,
    refereeReward: toRefereeReward(row),
    rewardCurrency: row.reward_currency,
    recurrence: row.recurrence,
    active: row.active,
    maxRewardsPerReferrer: row.max_rewards_per_referrer,
    conversionWindowDays: row.conversion_window_days,
    maxCodesPerUser: row.max_codes_per_user,
    codePrefix: row.code_prefix,
    codeLength: row.code_length,
    defaultCodeMaxUses: row.default_code_max_uses,
    defaultCodeTtlSeconds: row.default_code_ttl_seconds,
    allowSelfReferral: row.allow_self_referral,
    budgetMinor: row.budget_minor,
    rewardsGrantedMinor: row.rewards_granted_minor,
    holdDays: row.hold_days,
    reversalFreesUse: row.reversal_frees_use,
    minPayoutMinor: row.min_payout_minor,
    maxPayoutMinor: row.max_payout_minor,
    payoutMethod: row.payout_method,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const programRow = programFields.transform(toProgram);

/** The columns of `programFields`, from a referral_programs row (unqualified names). */
export const programColumns = sql.fragment`
  id, program_key, name, reward_kind, reward_amount_minor, reward_basis_points, tiers,
  referee_reward_kind, referee_amount_minor, referee_basis_points, referee_max_amount_minor, referee_external_coupon_id,
  reward_currency, recurrence, active, max_rewards_per_referrer, conversion_window_days,
  max_codes_per_user, code_prefix, code_length, default_code_max_uses,
  extract(epoch FROM default_code_ttl)::integer AS default_code_ttl_seconds,
  allow_self_referral, budget_minor, rewards_granted_minor, hold_days, reversal_frees_use,
  min_payout_minor, max_payout_minor, payout_method, metadata, created_at, updated_at
`;

/** Tiers as stored: amounts as strings, so jsonb keeps every digit. */
function tiersJson(tiers: ProgramSettings["tiers"]): string {
  return JSON.stringify(
    tiers.map((tier) => ({
      min_prior_rewards: tier.minPriorRewards,
      reward_amount_minor: tier.rewardAmountMinor.toString(),
      reward_basis_points: tier.rewardBasisPoints,
    })),
  );
}

type Primitive = string | number | boolean | bigint | null;

/** Column and SQL value of each setting present in `settings`. */
function columnValues(settings: Partial<ProgramSettings>): { column: IdentifierSqlToken; value: FragmentSqlToken }[] {
  const columns: { column: IdentifierSqlToken; value: FragmentSqlToken }[] = [];
  const setFragment = (column: string, value: FragmentSqlToken) => columns.push({ column: sql.identifier([column]), value });
  const set = (column: string, value: Primitive | undefined) => {
    if (value !== undefined) setFragment(column, sql.fragment`${value}`);
  };
  set("name", settings.name);
  set("reward_kind", settings.rewardKind);
  set("reward_amount_minor", settings.rewardAmountMinor);
  set("reward_basis_points", settings.rewardBasisPoints);
  if (settings.tiers !== undefined) setFragment("tiers", sql.fragment`${tiersJson(settings.tiers)}::jsonb`);
  if (settings.refereeReward !== undefined) {
    const referee = settings.refereeReward;
    set("referee_reward_kind", referee?.kind ?? null);
    set("referee_amount_minor", referee?.amountMinor ?? 0n);
    set("referee_basis_points", referee?.basisPoints ?? 0);
    set("referee_max_amount_minor", referee?.maxAmountMinor ?? null);
    set("referee_external_coupon_id", referee?.externalCouponId ?? null);
  }
  set("recurrence", settings.recurrence);
  set("active", settings.active);
  set("max_rewards_per_referrer", settings.maxRewardsPerReferrer);
  set("conversion_window_days", settings.conversionWindowDays);
  set("max_codes_per_user", settings.maxCodesPerUser);
  set("code_prefix", settings.codePrefix);
  set("code_length", settings.codeLength);
  set("default_code_max_uses", settings.defaultCodeMaxUses);
  if (settings.defaultCodeTtlSeconds !== undefined) {
    setFragment("default_code_ttl", sql.fragment`make_interval(secs => ${settings.defaultCodeTtlSeconds})`);
  }
  set("allow_self_referral", settings.allowSelfReferral);
  set("budget_minor", settings.budgetMinor);
  set("hold_days", settings.holdDays);
  set("reversal_frees_use", settings.reversalFreesUse);
  set("min_payout_minor", settings.minPayoutMinor);
  set("max_payout_minor", settings.maxPayoutMinor);
  set("payout_method", settings.payoutMethod);
  if (settings.metadata !== undefined) setFragment("metadata", sql.fragment`${JSON.stringify(settings.metadata)}::jsonb`);
  return columns;
}

export async function insertProgram(db: CommonQueryMethods, program: NewProgram): Promise<Program> {
  const values = [
    { column: sql.identifier(["program_key"]), value: sql.fragment`${program.programKey}` },
    { column: sql.identifier(["reward_currency"]), value: sql.fragment`${program.rewardCurrency}` },
    ...columnValues(program),
  ];
  return db.one(sql.type(programRow)`
    INSERT INTO referral_programs (${sql.join(values.map((v) => v.column), sql.fragment`, `)})
    VALUES (${sql.join(values.map((v) => v.value), sql.fragment`, `)})
    RETURNING ${programColumns}
  `);
}

export async function findProgramByKey(db: CommonQueryMethods, programKey: string): Promise<Program | null> {
  return db.maybeOne(sql.type(programRow)`
    SELECT ${programColumns} FROM referral_programs WHERE program_key = ${programKey}
  `);
}

/**
 * A program's version: its updated_at, exact to the microsecond. Only
 * UpdateProgram moves it, always forward; conversions and UpdateProgram
 * write only to the version they read.
 */
export const programVersion = (alias: string) => sql.fragment`(extract(epoch FROM ${sql.identifier([alias, "updated_at"])}) * 1000000)::bigint`;

/** A program with the version it was read at. */
export type VersionedProgram = { program: Program; version: bigint };

const versionedProgramRow = programFields
  .extend({ version: z.bigint() })
  .transform(({ version, ...row }): VersionedProgram => ({ program: toProgram(row), version }));

/** The program and its version (UpdateProgram's read: the write refuses to run on another version). */
export async function findVersionedProgramByKey(db: CommonQueryMethods, programKey: string): Promise<VersionedProgram | null> {
  return db.maybeOne(sql.type(versionedProgramRow)`
    SELECT ${programColumns}, ${programVersion("p")} AS version FROM referral_programs p WHERE program_key = ${programKey}
  `);
}

export async function listPrograms(
  db: CommonQueryMethods,
  options: { active: boolean | null; afterKey: string | null; limit: number },
): Promise<readonly Program[]> {
  const conditions = [sql.fragment`TRUE`];
  if (options.active !== null) conditions.push(sql.fragment`active = ${options.active}`);
  if (options.afterKey !== null) conditions.push(sql.fragment`program_key > ${options.afterKey}`);
  return db.any(sql.type(programRow)`
    SELECT ${programColumns} FROM referral_programs
    WHERE ${sql.join(conditions, sql.fragment` AND `)}
    ORDER BY program_key
    LIMIT ${options.limit}
  `);
}

/**
 * Whether the change gives a budget to a program that had none: the
 * granted-rewards counter is kept only while a program has a budget, so
 * setting one counts the standing rewards afresh.
 */
export function startsBudget(current: Program, changes: Partial<ProgramSettings>): boolean {
  return changes.budgetMinor !== undefined && changes.budgetMinor !== null && current.budgetMinor === null;
}

/**
 * Makes conversion writes wait until the transaction ends, once those in
 * flight have finished. Every conversion's write statement holds ROW
 * EXCLUSIVE on referral_programs from its start (it may add to a budget's
 * counter), as does every other write to the table, and this mode conflicts
 * with it; a table lock is a queue, so writes that arrive meanwhile wait
 * behind it instead of going ahead of it. Counting a new budget's standing
 * rewards needs this: a conversion in flight may have decided on the program
 * without a budget (and so grants nothing against it), and it must be
 * counted, or see the budget. The mode conflicts with itself, so two such
 * updates take turns instead of deadlocking.
 */
export async function holdConversionWrites(tx: CommonQueryMethods): Promise<void> {
  await tx.query(sql.type(z.object({}))`LOCK TABLE referral_programs IN SHARE ROW EXCLUSIVE MODE`);
}

/**
 * Writes the changed settings to the program at the version it was read at,
 * in one statement: null when the program changed since (read it again).
 * The version moves on: conversions decided on the version before decide
 * again. A budget set where there was none counts the standing rewards
 * (the caller holds conversion writes: `holdConversionWrites`), clearing it
 * resets the counter.
 *
 * The statement locks the row in the non-key mode (FOR NO KEY UPDATE, as no
 * column of a key changes), which the key-share locks of conversions, code
 * inserts and reversals do not conflict with: a stream of them cannot hold
 * it off. It waits only for budget grants in flight (each one statement),
 * which queue fairly behind it.
 */
export async function updateProgram(db: CommonQueryMethods, current: VersionedProgram, changes: Partial<ProgramSettings>): Promise<Program | null> {
  const { program, version } = current;
  const assignments = columnValues(changes).map(({ column, value }) => sql.fragment`${column} = ${value}`);
  if (changes.budgetMinor !== undefined && (changes.budgetMinor === null) !== (program.budgetMinor === null)) {
    assignments.push(
      changes.budgetMinor === null
        ? sql.fragment`rewards_granted_minor = 0`
        : sql.fragment`rewards_granted_minor = (
            SELECT COALESCE(sum(amount_earned_minor + referee_reward_minor), 0) FROM referral_trackings
            WHERE program_id = ${program.id} AND payout_status <> 'REVERSED'
          )`,
    );
  }
  // Strictly later than the version it replaces, whatever the clock says.
  const updatedAt = sql.fragment`updated_at = greatest(now(), p.updated_at + interval '1 microsecond')`;
  return db.maybeOne(sql.type(programRow)`
    UPDATE referral_programs p
    SET ${sql.join([...assignments, updatedAt], sql.fragment`, `)}
    WHERE id = ${program.id} AND ${programVersion("p")} = ${version}::bigint
    RETURNING ${programColumns}
  `);
}

/**
 * The program of a reversal, share-locked on its key until the transaction
 * ends (which blocks neither conversions nor UpdateProgram).
 */
export async function findProgramForConversion(db: CommonQueryMethods, id: bigint): Promise<Program> {
  return db.one(sql.type(programRow)`SELECT ${programColumns} FROM referral_programs WHERE id = ${id} FOR KEY SHARE`);
}

/** Returns a reversed conversion's rewards (both sides) to the program's budget. */
export async function returnToBudget(db: CommonQueryMethods, id: bigint, amount: bigint): Promise<void> {
  await db.query(sql.type(z.object({}))`
    UPDATE referral_programs SET rewards_granted_minor = rewards_granted_minor - ${amount}
    WHERE id = ${id} AND budget_minor IS NOT NULL
  `);
}
