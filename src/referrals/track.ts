import { type DatabasePool, type DatabaseTransactionConnection, UniqueIntegrityConstraintViolationError } from "slonik";
import { transaction } from "../db/transaction.ts";
import { DomainError, invalidArgument } from "../errors.ts";
import { derivedStatus, type ReferralCode } from "../codes/model.ts";
import { findCode, takeUse } from "../codes/repository.ts";
import type { Program } from "../programs/model.ts";
import { findProgramForConversion, grantFromBudget } from "../programs/repository.ts";
import { rewardAmount, rewardRuleFor } from "../programs/reward.ts";
import type { Referral } from "./model.ts";
import { findByTransactionId, findFirstConversion, insertReferral, rewardPlace } from "./repository.ts";
import type { Conversion } from "./validation.ts";

const DAY_MS = 24 * 3600 * 1000;
/** Whole-transaction retries after losing a race on a unique index. */
const MAX_ATTEMPTS = 40;
/** The unique indexes a racing conversion can lose on; the retry then sees the winner. */
const RACE_CONSTRAINTS = new Set([
  "referral_trackings_first_conversion_key",
  "referral_trackings_transaction_id_key",
  "referral_trackings_reward_slot_key",
]);

export type TrackOutcome = { referral: Referral; replayed: boolean };

/**
 * Thrown to roll the transaction back while still answering: a validate_only
 * run (with what it would have recorded), or a refusal that turned out to be
 * a replay (with the original).
 */
class RollBack {
  readonly outcome: TrackOutcome;
  constructor(outcome: TrackOutcome) {
    this.outcome = outcome;
  }
}

/**
 * Records a conversion (5.3) in one transaction. Every limit is enforced by a
 * conditional update or a unique index, so racing callers cannot pass it: the
 * loser of a unique-index race retries and then sees the winner (attribution,
 * idempotency key, reward place). With `validateOnly` the same transaction
 * runs and is rolled back.
 */
export async function trackReferral(db: DatabasePool, conversion: Conversion): Promise<TrackOutcome> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    try {
      return await transaction(db, async (tx) => {
        const outcome = await recordConversion(tx, conversion);
        if (conversion.validateOnly && !outcome.replayed) {
          throw new RollBack({ ...outcome, referral: { ...outcome.referral, id: "" } });
        }
        return outcome;
      });
    } catch (error) {
      if (error instanceof RollBack) return error.outcome;
      if (error instanceof UniqueIntegrityConstraintViolationError && RACE_CONSTRAINTS.has(error.constraint ?? "")) continue;
      throw error;
    }
  }
  throw new DomainError("CONFLICT", "too many concurrent conversions for this referrer or user; retry");
}

async function recordConversion(tx: DatabaseTransactionConnection, conversion: Conversion): Promise<TrackOutcome> {
  const code = await findCode(tx, conversion.code);
  if (code === null) throw new DomainError("CODE_NOT_FOUND", "no such referral code", { code: conversion.code });
  const program = await findProgramForConversion(tx, code.programId);
  const earlier = await findReplay(tx, program, code, conversion);
  if (earlier !== null) return replay(earlier, conversion, program);
  try {
    return { referral: await recordNewConversion(tx, program, code, conversion), replayed: false };
  } catch (error) {
    // Each statement reads what is committed when it starts: a concurrent call
    // with the same idempotency key may have committed since the check above,
    // and caused this refusal (the use, the place or the budget it took). What
    // this attempt wrote is rolled back either way.
    if (!(error instanceof DomainError)) throw error;
    const winner = await findReplay(tx, program, code, conversion);
    if (winner !== null) throw new RollBack(replay(winner, conversion, program));
    throw error;
  }
}

/**
 * The conversion this call repeats, if any: by transaction_id; without one, in
 * a ONE_TIME program, by (program, referred user, code).
 */
async function findReplay(tx: DatabaseTransactionConnection, program: Program, code: ReferralCode, conversion: Conversion): Promise<Referral | null> {
  if (conversion.transactionId !== null) return findByTransactionId(tx, program.id, conversion.transactionId);
  if (program.recurrence !== "ONE_TIME") return null;
  const first = await findFirstConversion(tx, program.id, conversion.referredUserId);
  return first !== null && first.codeId === code.id ? first : null;
}

async function recordNewConversion(
  tx: DatabaseTransactionConnection,
  program: Program,
  code: ReferralCode,
  conversion: Conversion,
): Promise<Referral> {
  const about = { program_key: program.programKey, code: code.code, referred_user_id: conversion.referredUserId };
  checkInput(conversion, program);

  if (!program.active) throw new DomainError("PROGRAM_INACTIVE", "the program is not active", about);
  const status = derivedStatus({ ...code, maxUses: null }, conversion.convertedAt);
  if (status === "INACTIVE") throw new DomainError("CODE_INACTIVE", "the code is inactive", about);
  if (status === "SUSPENDED") throw new DomainError("CODE_SUSPENDED", "the code is suspended", about);
  if (status === "EXPIRED") throw new DomainError("CODE_EXPIRED", "the code had expired at occurred_at", about);
  if (conversion.referredUserId === code.userId && !program.allowSelfReferral) {
    throw new DomainError("SELF_REFERRAL", "users cannot convert through their own code in this program", about);
  }

  const first = await findFirstConversion(tx, program.id, conversion.referredUserId);
  if (first !== null) {
    if (first.referrerUserId !== code.userId) {
      throw new DomainError("ALREADY_REFERRED", "the user was already referred by another referrer in this program", about);
    }
    if (program.recurrence === "ONE_TIME") {
      throw new DomainError("ALREADY_CONVERTED", "the user already converted in this one-time program", about);
    }
    const windowDays = program.conversionWindowDays;
    if (windowDays !== null && conversion.convertedAt.getTime() > first.convertedAt.getTime() + windowDays * DAY_MS) {
      throw new DomainError("CONVERSION_WINDOW_CLOSED", `more than ${windowDays} days after the user's first conversion`, about);
    }
  }
  const currency = conversion.currency ?? program.rewardCurrency;
  if (currency !== program.rewardCurrency) {
    throw new DomainError("CURRENCY_MISMATCH", `the program pays in ${program.rewardCurrency}`, { ...about, field: "currency" });
  }

  // A referred user's first conversion takes one use of the code.
  const firstConversion = first === null;
  if (firstConversion && !(await takeUse(tx, code.id))) {
    throw new DomainError("CODE_EXHAUSTED", "the code has no uses left", about);
  }

  let priorRewards = 0;
  let rewardSlot: number | null = null;
  if (program.maxRewardsPerReferrer !== null || program.tiers.length > 0) {
    const place = await rewardPlace(tx, program.id, code.userId, program.maxRewardsPerReferrer);
    if (place.place === null || (program.maxRewardsPerReferrer !== null && place.prior >= program.maxRewardsPerReferrer)) {
      throw new DomainError("REWARD_LIMIT_REACHED", `the referrer has reached max_rewards_per_referrer (${program.maxRewardsPerReferrer})`, {
        ...about,
        referrer_user_id: code.userId,
      });
    }
    priorRewards = place.prior;
    rewardSlot = place.place;
  }
  const amount = rewardAmount(rewardRuleFor(program, priorRewards), conversion.transactionAmountMinor);
  if (program.budgetMinor !== null && amount > 0n && !(await grantFromBudget(tx, program.id, amount))) {
    throw new DomainError("BUDGET_EXHAUSTED", "the program's budget cannot cover this reward", about);
  }

  return insertReferral(tx, {
    programId: program.id,
    codeId: code.id,
    referrerUserId: code.userId,
    referredUserId: conversion.referredUserId,
    transactionId: conversion.transactionId,
    transactionAmountMinor: conversion.transactionAmountMinor,
    amountEarnedMinor: amount,
    currency,
    convertedAt: conversion.convertedAt,
    payableAt: new Date(conversion.convertedAt.getTime() + program.holdDays * DAY_MS),
    firstConversion,
    rewardSlot,
    metadata: conversion.metadata,
  });
}

/** Inputs that depend on the program: a PERCENTAGE reward needs the amount, RECURRING a transaction id. */
function checkInput(conversion: Conversion, program: Program): void {
  if (program.rewardKind === "PERCENTAGE" && conversion.transactionAmountMinor === null) {
    throw invalidArgument("transaction_amount_minor", "is required for PERCENTAGE programs");
  }
  if (program.recurrence === "RECURRING" && conversion.transactionId === null) {
    throw invalidArgument("transaction_id", "is required for RECURRING programs");
  }
}

/** The same idempotency key again: the original when the content matches, else IDEMPOTENCY_KEY_REUSED. */
function replay(earlier: Referral, conversion: Conversion, program: Program): TrackOutcome {
  const same =
    earlier.code === conversion.code &&
    earlier.referredUserId === conversion.referredUserId &&
    earlier.transactionAmountMinor === conversion.transactionAmountMinor &&
    earlier.currency === (conversion.currency ?? program.rewardCurrency);
  if (!same) {
    throw new DomainError("IDEMPOTENCY_KEY_REUSED", "transaction_id was already used for a different conversion", {
      field: "transaction_id",
      program_key: program.programKey,
    });
  }
  return { referral: earlier, replayed: true };
}
