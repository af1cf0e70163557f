import { z } from "zod";
import type { Program as ProgramMessage } from "../gen/referral/v1/resources_pb.js";
import { PayoutMethod as PayoutMethodEnum, Recurrence as RecurrenceEnum, RewardKind as RewardKindEnum } from "../gen/referral/v1/resources_pb.js";
import type { UpdateProgramRequest } from "../gen/referral/v1/referral_code_service_pb.js";
import { invalidArgument } from "../api/reasons.ts";
import { bigintRange, currency, intRange, metadata, noNul, NUL_MESSAGE, parseInput, programKey, requiredText } from "../api/input.ts";
import type { NewProgram, PayoutMethod, ProgramSettings, Recurrence, RefereeReward, RewardKind, RewardTier } from "./model.ts";
import { PROGRAM_DEFAULTS } from "./model.ts";

const MAX_AMOUNT_MINOR = 1_000_000_000_000n;
const MAX_BUDGET_MINOR = 1_000_000_000_000_000n;
const MAX_TTL_SECONDS = 3650 * 24 * 3600;

const rewardKinds = new Map<number, RewardKind>([
  [RewardKindEnum.FIXED, "FIXED"],
  [RewardKindEnum.PERCENTAGE, "PERCENTAGE"],
]);
const recurrences = new Map<number, Recurrence>([
  [RecurrenceEnum.UNSPECIFIED, "ONE_TIME"],
  [RecurrenceEnum.ONE_TIME, "ONE_TIME"],
  [RecurrenceEnum.RECURRING, "RECURRING"],
]);
const payoutMethods = new Map<number, PayoutMethod>([
  [PayoutMethodEnum.UNSPECIFIED, "manual"],
  [PayoutMethodEnum.MANUAL, "manual"],
  [PayoutMethodEnum.STRIPE_CONNECT, "stripe_connect"],
  [PayoutMethodEnum.WISE, "wise"],
  [PayoutMethodEnum.PAYPAL, "paypal"],
]);

const fromEnum = <T>(values: Map<number, T>, message: string) =>
  z.number().refine((value) => values.has(value), message).transform((value) => values.get(value) as T);

const optionalInt = (min: number, max: number) => intRange(min, max).optional().transform((value) => value ?? null);

const rewardKind = fromEnum(rewardKinds, "must be REWARD_KIND_FIXED or REWARD_KIND_PERCENTAGE");

/** The referred user's reward: a rule like the referrer's, checked as a whole. */
const refereeReward = z
  .object({
    kind: rewardKind,
    amountMinor: bigintRange(0n, MAX_AMOUNT_MINOR),
    basisPoints: intRange(0, 10_000),
    maxAmountMinor: bigintRange(1n, MAX_AMOUNT_MINOR)
      .optional()
      .transform((value) => value ?? null),
    externalCouponId: z
      .string()
      .max(200, "must be at most 200 characters")
      .refine(noNul, NUL_MESSAGE)
      .refine((value) => !/[\u0000-\u001f\u007f]/.test(value), "must not contain control characters")
      .transform((value) => (value === "" ? null : value)),
  })
  .superRefine((reward, ctx) => {
    const issue = (field: string, message: string) => ctx.addIssue({ code: "custom", path: [field], message });
    if (reward.kind === "FIXED") {
      if (reward.amountMinor < 1n) issue("amountMinor", "is required (1 or more) for REWARD_KIND_FIXED");
      if (reward.basisPoints !== 0) issue("basisPoints", "must be 0 for REWARD_KIND_FIXED");
      if (reward.maxAmountMinor !== null) issue("maxAmountMinor", "must be unset for REWARD_KIND_FIXED");
    } else {
      if (reward.basisPoints < 1) issue("basisPoints", "is required (1 to 10000) for REWARD_KIND_PERCENTAGE");
      if (reward.amountMinor !== 0n) issue("amountMinor", "must be 0 for REWARD_KIND_PERCENTAGE");
    }
  })
  .transform((reward): RefereeReward => reward)
  .optional()
  .transform((reward) => reward ?? null);

/** Field-by-field rules of a program: each field alone, before any SQL. */
const fields = {
  name: requiredText(255),
  rewardKind,
  rewardAmountMinor: bigintRange(0n, MAX_AMOUNT_MINOR),
  rewardBasisPoints: intRange(0, 10_000),
  tiers: z
    .array(
      z.object({
        minPriorRewards: intRange(1, 1_000_000),
        rewardAmountMinor: bigintRange(0n, MAX_AMOUNT_MINOR),
        rewardBasisPoints: intRange(0, 10_000),
      }),
    )
    .max(20, "must have at most 20 tiers")
    .superRefine((tiers, ctx) => {
      const seen = new Set<number>();
      tiers.forEach((tier, index) => {
        if (seen.has(tier.minPriorRewards)) {
          ctx.addIssue({ code: "custom", path: [index, "minPriorRewards"], message: "must be unique within the program" });
        }
        seen.add(tier.minPriorRewards);
      });
    })
    .transform((tiers) => [...tiers].sort((a, b) => a.minPriorRewards - b.minPriorRewards)),
  refereeReward,
  recurrence: fromEnum(recurrences, "must be RECURRENCE_ONE_TIME or RECURRENCE_RECURRING"),
  active: z.boolean().optional().transform((value) => value ?? true),
  maxRewardsPerReferrer: optionalInt(1, 1000),
  conversionWindowDays: optionalInt(1, 365),
  maxCodesPerUser: z
    .number()
    .int()
    .transform((value) => (value === 0 ? PROGRAM_DEFAULTS.maxCodesPerUser : value))
    .pipe(intRange(1, 1000)),
  codePrefix: z
    .string()
    .transform((value) => value.trim().toUpperCase())
    .pipe(z.string().regex(/^[A-Z0-9]{0,8}$/, "must be at most 8 characters of [A-Z0-9]")),
  codeLength: z
    .number()
    .int()
    .transform((value) => (value === 0 ? PROGRAM_DEFAULTS.codeLength : value))
    .pipe(intRange(6, 20)),
  defaultCodeMaxUses: optionalInt(1, 1_000_000_000),
  defaultCodeTtl: z
    .object({ seconds: z.bigint(), nanos: z.number() })
    .optional()
    .superRefine((ttl, ctx) => {
      if (ttl === undefined) return;
      if (ttl.nanos !== 0) ctx.addIssue({ code: "custom", message: "must be whole seconds" });
      if (ttl.seconds < 1n || ttl.seconds > BigInt(MAX_TTL_SECONDS)) {
        ctx.addIssue({ code: "custom", message: "must be between 1 second and 3650 days" });
      }
    })
    .transform((ttl) => (ttl === undefined ? null : Number(ttl.seconds))),
  allowSelfReferral: z.boolean(),
  budgetMinor: bigintRange(0n, MAX_BUDGET_MINOR)
    .optional()
    .transform((value) => value ?? null),
  holdDays: intRange(0, 365),
  minPayoutMinor: bigintRange(0n, MAX_AMOUNT_MINOR),
  maxPayoutMinor: bigintRange(1n, MAX_BUDGET_MINOR)
    .optional()
    .transform((value) => value ?? null),
  reversalFreesUse: z.boolean().optional().transform((value) => value ?? true),
  payoutMethod: fromEnum(payoutMethods, "must be a PayoutMethod value"),
  metadata,
} as const;

const newProgramSchema = z.object({
  programKey,
  ...fields,
  rewardCurrency: currency,
});

/** CreateProgram: the whole program, with defaults, checked field by field and as a whole. */
export function parseNewProgram(message: ProgramMessage | undefined): NewProgram {
  if (message === undefined) throw invalidArgument("program", "is required");
  const { defaultCodeTtl, ...program } = parseInput(newProgramSchema, message, "program");
  const settings = { ...program, defaultCodeTtlSeconds: defaultCodeTtl };
  checkRewardRule(settings);
  checkPayoutRange(settings);
  return settings;
}

/** Program fields UpdateProgram may change, by proto name. */
const updatableFields = {
  name: "name",
  reward_kind: "rewardKind",
  reward_amount_minor: "rewardAmountMinor",
  reward_basis_points: "rewardBasisPoints",
  tiers: "tiers",
  referee_reward: "refereeReward",
  recurrence: "recurrence",
  active: "active",
  max_rewards_per_referrer: "maxRewardsPerReferrer",
  conversion_window_days: "conversionWindowDays",
  max_codes_per_user: "maxCodesPerUser",
  code_prefix: "codePrefix",
  code_length: "codeLength",
  default_code_max_uses: "defaultCodeMaxUses",
  default_code_ttl: "defaultCodeTtl",
  allow_self_referral: "allowSelfReferral",
  budget_minor: "budgetMinor",
  hold_days: "holdDays",
  min_payout_minor: "minPayoutMinor",
  max_payout_minor: "maxPayoutMinor",
  payout_method: "payoutMethod",
  metadata: "metadata",
} as const satisfies Record<string, keyof typeof fields>;

type UpdatablePath = keyof typeof updatableFields;

/**
 * Set on creation only: the key names the program, its codes' rewards are in
 * its currency, and reversal_frees_use decides how many uses its codes count.
 */
const creationOnlyFields = new Set(["program_key", "reward_currency", "reversal_frees_use"]);

export type ProgramUpdate = {
  programKey: string;
  changes: Partial<ProgramSettings>;
};

/** UpdateProgram: the key, and the masked fields checked one by one. */
export function parseProgramUpdate(request: UpdateProgramRequest): ProgramUpdate {
  if (request.program === undefined) throw invalidArgument("program", "is required");
  const key = parseInput(programKey, request.program.programKey, "program.program_key");
  const paths = request.updateMask?.paths ?? [];
  if (paths.length === 0) throw invalidArgument("update_mask", "must name at least one field");
  const changes: Partial<ProgramSettings> = {};
  for (const path of new Set(paths)) {
    if (creationOnlyFields.has(path)) {
      throw invalidArgument("update_mask", `${JSON.stringify(path)} is set when the program is created and cannot change`);
    }
    if (!(path in updatableFields)) {
      throw invalidArgument("update_mask", `${JSON.stringify(path)} is not a field UpdateProgram can change`);
    }
    const field = updatableFields[path as UpdatablePath];
    const value = parseInput(fields[field] as z.ZodType, request.program[field], `program.${path}`);
    if (field === "defaultCodeTtl") changes.defaultCodeTtlSeconds = value as number | null;
    else Object.assign(changes, { [field]: value });
  }
  return { programKey: key, changes };
}

/**
 * The rules across fields: a FIXED program pays an amount and no basis points,
 * a PERCENTAGE program the reverse, and so do its tiers.
 */
/** A program's payout maximum may not be below its minimum. */
export function checkPayoutRange(program: Pick<ProgramSettings, "minPayoutMinor" | "maxPayoutMinor">): void {
  if (program.maxPayoutMinor !== null && program.maxPayoutMinor < program.minPayoutMinor) {
    throw invalidArgument("program.max_payout_minor", "must not be below min_payout_minor");
  }
}

export function checkRewardRule(program: Pick<ProgramSettings, "rewardKind" | "rewardAmountMinor" | "rewardBasisPoints" | "tiers">): void {
  if (program.rewardKind === "FIXED") {
    if (program.rewardAmountMinor < 1n) throw invalidArgument("program.reward_amount_minor", "is required (1 or more) for REWARD_KIND_FIXED");
    if (program.rewardBasisPoints !== 0) throw invalidArgument("program.reward_basis_points", "must be 0 for REWARD_KIND_FIXED");
  } else {
    if (program.rewardBasisPoints < 1) throw invalidArgument("program.reward_basis_points", "is required (1 to 10000) for REWARD_KIND_PERCENTAGE");
    if (program.rewardAmountMinor !== 0n) throw invalidArgument("program.reward_amount_minor", "must be 0 for REWARD_KIND_PERCENTAGE");
  }
  program.tiers.forEach((tier: RewardTier, index) => {
    if (program.rewardKind === "FIXED" && tier.rewardBasisPoints !== 0) {
      throw invalidArgument(`program.tiers[${index}].reward_basis_points`, "must be 0 for REWARD_KIND_FIXED");
    }
    if (program.rewardKind === "PERCENTAGE") {
      if (tier.rewardAmountMinor !== 0n) throw invalidArgument(`program.tiers[${index}].reward_amount_minor`, "must be 0 for REWARD_KIND_PERCENTAGE");
      if (tier.rewardBasisPoints < 1) throw invalidArgument(`program.tiers[${index}].reward_basis_points`, "is required (1 to 10000) for REWARD_KIND_PERCENTAGE");
    }
  });
}
