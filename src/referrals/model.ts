/** Referrals (conversions) as the domain sees them. */
export type PayoutStatus = "PENDING" | "PAID" | "FAILED" | "REVERSED";

export type Referral = {
  id: string;
  programId: bigint;
  programKey: string;
  codeId: bigint;
  code: string;
  referrerUserId: string;
  referredUserId: string;
  transactionId: string | null;
  transactionAmountMinor: bigint | null;
  amountEarnedMinor: bigint;
  /** What the referred user was given (0: nothing). */
  refereeRewardMinor: bigint;
  currency: string;
  convertedAt: Date;
  payableAt: Date;
  firstConversion: boolean;
  payoutStatus: PayoutStatus;
  payoutReference: string | null;
  paidAt: Date | null;
  failedAt: Date | null;
  failureReason: string | null;
  reversedAt: Date | null;
  reversalReason: string | null;
  clawback: boolean;
  /** The payout that pays (or paid) the reward; null: none open or paid. */
  payoutId: string | null;
  metadata: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
};

/**
 * Payout transitions UpdatePayoutStatus may make: PENDING -> PAID | FAILED,
 * FAILED -> PENDING | PAID. Reversal (PENDING | FAILED | PAID -> REVERSED) is
 * ReverseReferral's.
 */
const payoutTransitions: Record<PayoutStatus, readonly PayoutStatus[]> = {
  PENDING: ["PAID", "FAILED"],
  FAILED: ["PENDING", "PAID"],
  PAID: [],
  REVERSED: [],
};

export function canMovePayout(from: PayoutStatus, to: PayoutStatus): boolean {
  return payoutTransitions[from].includes(to);
}

