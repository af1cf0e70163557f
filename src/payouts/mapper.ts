import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Payout as PayoutMessage,
  type PayoutAccount as PayoutAccountMessage,
  PayoutAccountSchema,
  PayoutProvider as ProviderEnum,
  PayoutSchema,
  PayoutState as StateEnum,
} from "../gen/referral/v1/resources_pb.js";
import type { Payout, PayoutAccount, PayoutProviderName, PayoutState } from "./model.ts";

const providers: Record<PayoutProviderName, ProviderEnum> = {
  STRIPE_CONNECT: ProviderEnum.STRIPE_CONNECT,
  WISE: ProviderEnum.WISE,
  MANUAL: ProviderEnum.MANUAL,
};

const states: Record<PayoutState, StateEnum> = {
  REQUIRES_REVIEW: StateEnum.REQUIRES_REVIEW,
  PENDING: StateEnum.PENDING,
  PROCESSING: StateEnum.PROCESSING,
  PAID: StateEnum.PAID,
  FAILED: StateEnum.FAILED,
  CANCELED: StateEnum.CANCELED,
};

const time = (date: Date | null) => (date === null ? undefined : timestampFromDate(date));

export function toPayoutAccountMessage(account: PayoutAccount): PayoutAccountMessage {
  return create(PayoutAccountSchema, {
    userId: account.userId,
    provider: providers[account.provider],
    accountRef: account.accountRef,
    verifiedAt: time(account.verifiedAt),
    createdAt: timestampFromDate(account.createdAt),
    updatedAt: timestampFromDate(account.updatedAt),
  });
}

export function toPayoutMessage(payout: Payout): PayoutMessage {
  return create(PayoutSchema, {
    id: payout.id,
    referrerUserId: payout.referrerUserId,
    currency: payout.currency,
    programKey: payout.programKey ?? "",
    provider: providers[payout.provider],
    accountRef: payout.accountRef,
    amountMinor: payout.amountMinor,
    rewardsMinor: payout.rewardsMinor,
    clawbacksMinor: payout.clawbacksMinor,
    referralCount: payout.referralCount,
    state: states[payout.state],
    providerReference: payout.providerReference ?? "",
    failureReason: payout.failureReason ?? "",
    attemptCount: payout.attemptCount,
    requestId: payout.requestId,
    createdAt: timestampFromDate(payout.createdAt),
    updatedAt: timestampFromDate(payout.updatedAt),
    paidAt: time(payout.paidAt),
    failedAt: time(payout.failedAt),
    canceledAt: time(payout.canceledAt),
  });
}
