import type { Program, RefereeReward, RewardKind } from "./model.ts";

/** The reward rule that applies to a referrer's next conversion. */
export type RewardRule = {
  kind: RewardKind;
  /** FIXED: the amount in minor units. */
  amountMinor: bigint;
  /** PERCENTAGE: basis points of the transaction amount. */
  basisPoints: number;
  currency: string;
};

/** What a program's reward rule is made of. */
export type RewardRuleProgram = Pick<Program, "rewardKind" | "rewardAmountMinor" | "rewardBasisPoints" | "tiers" | "rewardCurrency">;

/**
 * The program's base reward, or the tier with the highest `min_prior_rewards`
 * the referrer has reached with `priorRewards` rewarded conversions.
 */
export function rewardRuleFor(program: RewardRuleProgram, priorRewards: number): RewardRule {
  let amountMinor = program.rewardAmountMinor;
  let basisPoints = program.rewardBasisPoints;
  for (const tier of program.tiers) {
    if (tier.minPriorRewards > priorRewards) continue;
    if (program.rewardKind === "FIXED") amountMinor = tier.rewardAmountMinor;
    else basisPoints = tier.rewardBasisPoints;
  }
  return { kind: program.rewardKind, amountMinor, basisPoints, currency: program.rewardCurrency };
}

/**
 * The reward for one conversion, in minor units. PERCENTAGE pays
 * `transaction × basis_points / 10000` rounded half-to-even, in integers only.
 */
export function rewardAmount(rule: RewardRule, transactionAmountMinor: bigint | null): bigint {
  if (rule.kind === "FIXED") return rule.amountMinor;
  if (transactionAmountMinor === null) throw new TypeError("a PERCENTAGE reward needs the transaction amount");
  return divideHalfToEven(transactionAmountMinor * BigInt(rule.basisPoints), 10_000n);
}

/**
 * What the referred user gets for one conversion, in minor units: FIXED its
 * amount; PERCENTAGE `transaction × basis_points / 10000` rounded as the
 * referrer's reward is, capped by `maxAmountMinor`. 0 without a referee reward.
 */
export function refereeRewardAmount(reward: RefereeReward | null, transactionAmountMinor: bigint | null): bigint {
  if (reward === null) return 0n;
  if (reward.kind === "FIXED") return reward.amountMinor;
  if (transactionAmountMinor === null) throw new TypeError("a PERCENTAGE referee reward needs the transaction amount");
  const amount = divideHalfToEven(transactionAmountMinor * BigInt(reward.basisPoints), 10_000n);
  return reward.maxAmountMinor !== null && amount > reward.maxAmountMinor ? reward.maxAmountMinor : amount;
}

/** `numerator / denominator` for non-negative integers, ties to the even neighbour. */
function divideHalfToEven(numerator: bigint, denominator: bigint): bigint {
  const quotient = numerator / denominator;
  const twiceRemainder = (numerator % denominator) * 2n;
  if (twiceRemainder > denominator) return quotient + 1n;
  if (twiceRemainder === denominator && quotient % 2n === 1n) return quotient + 1n;
  return quotient;
}
