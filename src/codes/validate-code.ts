import type { DatabasePool } from "slonik";
import { createBatcher } from "../db/batcher.ts";
import { outsideCallDeadline } from "../db/call-deadline.ts";
import type { RefereeReward } from "../programs/model.ts";
import { refereeRewardAmount, type RewardRule, rewardRuleFor } from "../programs/reward.ts";
import type { ReferralCode } from "./model.ts";
import { findCodesForValidation } from "./repository.ts";
import { type UnusableReason, unusableReason } from "./usability.ts";

/** ValidateCode's answer for a code that exists. */
type CodeValidation = {
  code: ReferralCode;
  /** Null: usable. */
  reason: UnusableReason | null;
  /** What the code's owner would earn for the next conversion. */
  reward: RewardRule;
  /** What the referred user would get (null: nothing). */
  refereeReward: RefereeReward | null;
  /** That as an amount: FIXED always, PERCENTAGE when the purchase amount is known (null: not known, or nothing). */
  refereeRewardMinor: bigint | null;
};

/** Whether the code is usable at `now`. */
export type ValidateCode = (lookup: { code: string; referredUserId: string | null; transactionAmountMinor: bigint | null }, now: Date) => Promise<CodeValidation | null>;

/** Concurrent ValidateCode calls share queries, each of up to this many lookups. */
const VALIDATION_BATCH = 64;

/**
 * ValidateCode: whether the code is usable now (for the referred user, when
 * named) by the rule TrackReferral applies, and the reward its owner would
 * earn; null when there is no such code. Concurrent calls share reads: the
 * lookups read in one turn of the event loop go out together, up to three
 * queries at a time, and identical lookups share one row. A shared read runs
 * outside any one caller's deadline (each caller still gives up at its own).
 * Nothing is written.
 */
export function createCodeValidator(db: DatabasePool): ValidateCode {
  const find = createBatcher(
    (lookups: readonly { code: string; referredUserId: string | null }[]) => outsideCallDeadline(() => findCodesForValidation(db, lookups)),
    { maxBatch: VALIDATION_BATCH, maxInFlight: 3, identity: ({ code, referredUserId }) => JSON.stringify([code, referredUserId]) },
  );
  return async ({ transactionAmountMinor, ...lookup }, now) => {
    const found = await find(lookup);
    if (found === null) return null;
    const referee = found.program.refereeReward;
    const priced = referee !== null && (referee.kind === "FIXED" || transactionAmountMinor !== null);
    return {
      code: found.code,
      reason: unusableReason(found.code, found.program, found.referredUser, now),
      reward: rewardRuleFor(found.program, found.referrerRewards),
      refereeReward: referee,
      refereeRewardMinor: priced ? refereeRewardAmount(referee, transactionAmountMinor) : null,
    };
  };
}
