import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EarningsSchema, PayoutStatus, type Referral as ReferralMessage, ReferralSchema } from "../gen/referral/v1/resources_pb.js";
import type { Earnings } from "./repository.ts";
import type { PayoutStatus as DomainPayoutStatus, Referral } from "./model.ts";

const payoutStatuses: Record<DomainPayoutStatus, PayoutStatus> = {
  PENDING: PayoutStatus.PENDING,
  PAID: PayoutStatus.PAID,
  FAILED: PayoutStatus.FAILED,
  REVERSED: PayoutStatus.REVERSED,
};

const time = (date: Date | null) => (date === null ? undefined : timestampFromDate(date));

export function toReferralMessage(referral: Referral): ReferralMessage {
  return create(ReferralSchema, {
    id: referral.id,
    programKey: referral.programKey,
    code: referral.code,
    referrerUserId: referral.referrerUserId,
    referredUserId: referral.referredUserId,
    transactionId: referral.transactionId ?? "",
    transactionAmountMinor: referral.transactionAmountMinor ?? undefined,
    amountEarnedMinor: referral.amountEarnedMinor,
    refereeRewardMinor: referral.refereeRewardMinor,
    currency: referral.currency,
    convertedAt: time(referral.convertedAt),
    payoutStatus: payoutStatuses[referral.payoutStatus],
    payoutReference: referral.payoutReference ?? "",
    paidAt: time(referral.paidAt),
    failedAt: time(referral.failedAt),
    failureReason: referral.failureReason ?? "",
    reversedAt: time(referral.reversedAt),
    reversalReason: referral.reversalReason ?? "",
    clawback: referral.clawback,
    payoutId: referral.payoutId ?? "",
    payableAt: time(referral.payableAt),
    metadata: referral.metadata,
    createdAt: time(referral.createdAt),
    updatedAt: time(referral.updatedAt),
  });
}

export function toEarningsMessage(earnings: Earnings) {
  return create(EarningsSchema, earnings);
}
