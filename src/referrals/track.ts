import {
  CheckIntegrityConstraintViolationError,
  type CommonQueryMethods,
  type DatabasePool,
  UniqueIntegrityConstraintViolationError,
} from "slonik";
import { createBatcher } from "../db/batcher.ts";
import { transaction, withConnection } from "../db/transaction.ts";
import { outsideCallDeadline } from "../db/call-deadline.ts";
import { DAY_MS } from "../platform/clock.ts";
import { DomainError, invalidArgument } from "../api/reasons.ts";
import { needsUse, unusableMessages, unusableReason } from "../codes/usability.ts";
import { refereeRewardAmount, rewardAmount, rewardRuleFor } from "../programs/reward.ts";
import type { Referral } from "./model.ts";
import {
  type ConversionContext,
  type ConversionLookup,
  type ConversionProgram,
  findConversionContexts,
  findReferral,
  type NewReferral,
  recordConversion,
} from "./repository.ts";
import type { Conversion } from "./requests.ts";

/** Attempts at one conversion when racing callers keep changing what it was decided on. */
const MAX_ATTEMPTS = 40;
/**
 * The CHECK constraints a racing conversion can run into: the code's
 * max_uses, the program's budget, and the budget's counter, which a grant to
 * a program changed since the decision sets negative (`recordConversion`).
 */
const CHECKED_LIMITS = new Set([
  "referral_codes_within_max_uses",
  "referral_programs_within_budget",
  "referral_programs_rewards_granted_minor_non_negative",
]);
/** The unique indexes a racing conversion can lose on; the next attempt sees the winner. */
const RACE_CONSTRAINTS = new Set([
  "referral_trackings_first_conversion_key",
  "referral_trackings_use_key",
  "referral_trackings_transaction_id_key",
  "referral_trackings_reward_slot_key",
]);

export type TrackOutcome = { referral: Referral; replayed: boolean };

/** Thrown to roll a validate_only run back while answering with what it would have recorded. */
class RollBack {
  readonly referral: Referral;
  constructor(referral: Referral) {
    this.referral = referral;
  }
}

/**
 * What the decision rested on changed before the write: a racing call won a
 * unique index or the last use, the use this one stood on was given back, or
 * the program was deactivated. Decide again on a fresh read.
 */
class Raced {}

/** Reads what a conversion is decided on (null: no such code). */
export type ConversionReader = (lookup: ConversionLookup) => Promise<ConversionContext | null>;

/**
 * Reads conversions' contexts, concurrent ones in one statement: each read
 * costs the service more (pool checkout, driver, row parsing) than the
 * database, and under load many conversions read at once. A shared read runs
 * outside any one caller's deadline (each caller still gives up at its own).
 * Nothing is cached, and nothing read is trusted: the write checks it all.
 */
export function createConversionReader(db: DatabasePool): ConversionReader {
  return createBatcher(
    (lookups: readonly ConversionLookup[]) => outsideCallDeadline(() => findConversionContexts(db, lookups)),
    { maxBatch: 32, maxInFlight: 2 },
  );
}

/**
 * Records a conversion in two statements and no explicit transaction:
 * one read that everything is decided on, then one statement that writes all
 * of it or nothing. The decision is never trusted to still hold: every limit
 * is enforced by the write itself (CHECK constraints on uses and budgets,
 * unique indexes on attribution, uses, idempotency key and reward slots), and a
 * conversion whose write lost a race decides again on a fresh read, where it
 * sees the winner. With `validateOnly` the same write runs in a transaction
 * that is rolled back.
 */
export async function trackReferral(db: DatabasePool, readContext: ConversionReader, conversion: Conversion): Promise<TrackOutcome> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const context = await readContext(conversion);
    if (context === null) throw new DomainError("CODE_NOT_FOUND", "no such referral code", { code: conversion.code });
    const earlier = await findReplay(db, context, conversion);
    if (earlier !== null) return replay(earlier, conversion, context.program);
    try {
      return { referral: await record(db, decide(context, conversion), conversion.validateOnly), replayed: false };
    } catch (error) {
      if (error instanceof Raced) continue;
      if (!(error instanceof DomainError)) throw error;
      // A concurrent call with the same idempotency key may have committed
      // since the read, and caused this refusal (the use, reward slot or budget it
      // took): then this call is its replay.
      const now = await readContext(conversion);
      const winner = now === null ? null : await findReplay(db, now, conversion);
      if (winner !== null) return replay(winner, conversion, context.program);
      throw error;
    }
  }
  throw new DomainError("CONFLICT", "too many concurrent conversions for this referrer or user; retry");
}

/** Writes the conversion, mapping what the database refused to the rule it enforces. */
async function record(db: DatabasePool, referral: NewReferral, validateOnly: boolean): Promise<Referral> {
  const write = async (connection: CommonQueryMethods) => {
    try {
      const recorded = await recordConversion(connection, referral);
      if (recorded === null) throw new Raced();
      return recorded;
    } catch (error) {
      if (error instanceof UniqueIntegrityConstraintViolationError && RACE_CONSTRAINTS.has(error.constraint ?? "")) throw new Raced();
      // The last use or the last of the budget went to a racing conversion,
      // or the program changed: decide again on a fresh read, which tells
      // why this one cannot be recorded (it may have lost on an earlier
      // rule, such as attribution) or lets it be (the user may hold a use by
      // now, a reversal may have freed one).
      if (error instanceof CheckIntegrityConstraintViolationError && CHECKED_LIMITS.has(error.constraint ?? "")) throw new Raced();
      throw error;
    }
  };
  if (!validateOnly) return withConnection(db, write);
  try {
    await transaction(db, async (tx) => {
      throw new RollBack({ ...(await write(tx)), id: "" });
    });
  } catch (error) {
    if (error instanceof RollBack) return error.referral;
    throw error;
  }
  throw new TypeError("unreachable: a validate_only write always rolls back");
}

/**
 * The conversion this call repeats, if any: by transaction_id; without one, in
 * a ONE_TIME program, the referred user's first conversion through this code.
 */
async function findReplay(db: DatabasePool, context: ConversionContext, conversion: Conversion): Promise<Referral | null> {
  let id: string | null = null;
  if (conversion.transactionId !== null) id = context.replayId;
  else if (context.program.recurrence === "ONE_TIME" && context.firstConversion?.codeId === context.code.id) id = context.firstConversion.id;
  return id === null ? null : findReferral(db, id);
}

/**
 * Applies the conversion rules in order to what was read; the first that fails is
 * the answer. Whether the code is usable by this user is the rule ValidateCode
 * applies too (codes/usability.ts), at the conversion's time.
 */
function decide(context: ConversionContext, conversion: Conversion): NewReferral {
  const { code, program, firstConversion: first } = context;
  const about = aboutConversion(context, conversion);
  checkInput(conversion, context);

  const referredUser = { id: conversion.referredUserId, firstConversion: first, holdsUse: context.holdsUse };
  const unusable = unusableReason(code, program, referredUser, conversion.convertedAt);
  if (unusable !== null) throw new DomainError(unusable, unusableMessages[unusable], about);

  const currency = conversion.currency ?? program.rewardCurrency;
  if (currency !== program.rewardCurrency) {
    throw new DomainError("CURRENCY_MISMATCH", `the program pays in ${program.rewardCurrency}`, { ...about, field: "currency" });
  }

  // max_rewards_per_referrer: each rewarded conversion takes one of the
  // referrer's reward slots (a unique index), so racing calls cannot pass it.
  const slots = context.rewardSlots;
  const maxRewards = program.maxRewardsPerReferrer;
  if (slots !== null && (slots.freeSlot === null || (maxRewards !== null && slots.priorRewards >= maxRewards))) {
    throw new DomainError("REWARD_LIMIT_REACHED", `the referrer has reached max_rewards_per_referrer (${maxRewards})`, {
      ...about,
      referrerUserId: code.userId,
    });
  }
  const amount = rewardAmount(rewardRuleFor(program, slots?.priorRewards ?? 0), conversion.transactionAmountMinor);
  const refereeAmount = refereeRewardAmount(program.refereeReward, conversion.transactionAmountMinor);
  // The budget covers both sides.
  const granted = amount + refereeAmount;
  if (program.budgetMinor !== null && granted > 0n && program.rewardsGrantedMinor + granted > program.budgetMinor) {
    throw new DomainError("BUDGET_EXHAUSTED", "the program's budget cannot cover this conversion's rewards", about);
  }

  return {
    programId: program.id,
    programKey: program.programKey,
    codeId: code.id,
    code: code.code,
    referrerUserId: code.userId,
    referredUserId: conversion.referredUserId,
    transactionId: conversion.transactionId,
    transactionAmountMinor: conversion.transactionAmountMinor,
    amountEarnedMinor: amount,
    refereeRewardMinor: refereeAmount,
    currency,
    convertedAt: conversion.convertedAt,
    payableAt: new Date(conversion.convertedAt.getTime() + program.holdDays * DAY_MS),
    firstConversion: first === null,
    takesUse: needsUse(referredUser),
    programVersion: context.programVersion,
    rewardSlot: slots?.freeSlot ?? null,
    metadata: conversion.metadata,
  };
}

/** Error metadata naming the conversion. */
function aboutConversion(context: ConversionContext, conversion: Conversion): Record<string, string> {
  return { programKey: context.program.programKey, code: context.code.code, referredUserId: conversion.referredUserId };
}

/**
 * Inputs that depend on the code: it cannot have been used before it existed;
 * a PERCENTAGE reward (either side) needs the amount, RECURRING a
 * transaction id.
 */
function checkInput(conversion: Conversion, { code, program }: ConversionContext): void {
  if (conversion.occurredAt !== null && conversion.occurredAt.getTime() < code.createdAt.getTime()) {
    throw invalidArgument("occurred_at", `must not be before the code was created (${code.createdAt.toISOString()})`);
  }
  if (program.rewardKind === "PERCENTAGE" && conversion.transactionAmountMinor === null) {
    throw invalidArgument("transaction_amount_minor", "is required for PERCENTAGE programs");
  }
  if (program.refereeReward?.kind === "PERCENTAGE" && conversion.transactionAmountMinor === null) {
    throw invalidArgument("transaction_amount_minor", "is required when the program's referee reward is a percentage");
  }
  if (program.recurrence === "RECURRING" && conversion.transactionId === null) {
    throw invalidArgument("transaction_id", "is required for RECURRING programs");
  }
}

/** The same idempotency key again: the original when the content matches, else IDEMPOTENCY_KEY_REUSED. */
function replay(earlier: Referral, conversion: Conversion, program: ConversionProgram): TrackOutcome {
  const same =
    earlier.code === conversion.code &&
    earlier.referredUserId === conversion.referredUserId &&
    earlier.transactionAmountMinor === conversion.transactionAmountMinor &&
    earlier.currency === (conversion.currency ?? program.rewardCurrency);
  if (!same) {
    throw new DomainError("IDEMPOTENCY_KEY_REUSED", "transaction_id was already used for a different conversion", {
      field: "transaction_id",
      programKey: program.programKey,
    });
  }
  return { referral: earlier, replayed: true };
}
