/** Payouts as the domain sees them: no protobuf, no SQL. */
export const PAYOUT_PROVIDERS = ["STRIPE_CONNECT", "WISE", "MANUAL"] as const;
export type PayoutProviderName = (typeof PAYOUT_PROVIDERS)[number];

export const PAYOUT_STATES = ["REQUIRES_REVIEW", "PENDING", "PROCESSING", "PAID", "FAILED", "CANCELED"] as const;
export type PayoutState = (typeof PAYOUT_STATES)[number];

/** Where a user's rewards are paid: the provider's reference only. */
export type PayoutAccount = {
  userId: string;
  provider: PayoutProviderName;
  accountRef: string;
  /** When the provider last confirmed it can be paid; null for manual accounts. */
  verifiedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
};

/** One payment to one referrer in one currency. */
export type Payout = {
  /** Also the provider's idempotency key. */
  id: string;
  requestId: string;
  referrerUserId: string;
  currency: string;
  /** The program the run named; null: every program. */
  programKey: string | null;
  provider: PayoutProviderName;
  accountRef: string;
  /** rewardsMinor less clawbacksMinor. */
  amountMinor: bigint;
  rewardsMinor: bigint;
  clawbacksMinor: bigint;
  referralCount: number;
  state: PayoutState;
  providerReference: string | null;
  failureReason: string | null;
  attemptCount: number;
  createdAt: Date;
  updatedAt: Date;
  paidAt: Date | null;
  failedAt: Date | null;
  canceledAt: Date | null;
};

/** What a CreatePayouts run made and skipped. */
export type PayoutRun = {
  payouts: Payout[];
  skippedWithoutAccount: number;
  skippedBelowMinimum: number;
};
