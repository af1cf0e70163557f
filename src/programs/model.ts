/** Programs as the domain sees them: no protobuf, no SQL. */
export type RewardKind = "FIXED" | "PERCENTAGE";
export type Recurrence = "ONE_TIME" | "RECURRING";
export type PayoutMethod = "manual" | "stripe_connect" | "wise" | "paypal";

export type RewardTier = {
  minPriorRewards: number;
  rewardAmountMinor: bigint;
  rewardBasisPoints: number;
};

/** What the referred user gets for converting (double-sided rewards). */
export type RefereeReward = {
  kind: RewardKind;
  /** FIXED: the amount in minor units. */
  amountMinor: bigint;
  /** PERCENTAGE: basis points of the transaction amount. */
  basisPoints: number;
  /** PERCENTAGE: the most it gives; null: no cap. */
  maxAmountMinor: bigint | null;
  /** Opaque to this service: the caller's billing maps it to its own coupon. */
  externalCouponId: string | null;
};

/** Everything a caller sets on a program. */
export type ProgramSettings = {
  name: string;
  rewardKind: RewardKind;
  rewardAmountMinor: bigint;
  rewardBasisPoints: number;
  tiers: RewardTier[];
  /** null: the referred user gets nothing. */
  refereeReward: RefereeReward | null;
  recurrence: Recurrence;
  active: boolean;
  maxRewardsPerReferrer: number | null;
  conversionWindowDays: number | null;
  maxCodesPerUser: number;
  codePrefix: string;
  codeLength: number;
  defaultCodeMaxUses: number | null;
  defaultCodeTtlSeconds: number | null;
  allowSelfReferral: boolean;
  budgetMinor: bigint | null;
  holdDays: number;
  reversalFreesUse: boolean;
  /** The smallest payout CreatePayouts makes of the program's rewards. */
  minPayoutMinor: bigint;
  /** The largest payout sent without review; null: no review. */
  maxPayoutMinor: bigint | null;
  payoutMethod: PayoutMethod;
  metadata: Record<string, string>;
};

export type NewProgram = ProgramSettings & {
  programKey: string;
  rewardCurrency: string;
};

export type Program = NewProgram & {
  id: bigint;
  rewardsGrantedMinor: bigint;
  createdAt: Date;
  updatedAt: Date;
};

export const PROGRAM_DEFAULTS = {
  maxCodesPerUser: 5,
  codeLength: 10,
} as const;
