import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  PayoutMethod,
  type Program as ProgramMessage,
  ProgramSchema,
  Recurrence,
  RefereeRewardSchema,
  RewardKind,
  RewardTierSchema,
} from "../gen/referral/v1/resources_pb.js";
import type { Program, RefereeReward } from "./model.ts";

const rewardKinds = { FIXED: RewardKind.FIXED, PERCENTAGE: RewardKind.PERCENTAGE } as const;
const recurrences = { ONE_TIME: Recurrence.ONE_TIME, RECURRING: Recurrence.RECURRING } as const;
const payoutMethods = {
  manual: PayoutMethod.MANUAL,
  stripe_connect: PayoutMethod.STRIPE_CONNECT,
  wise: PayoutMethod.WISE,
  paypal: PayoutMethod.PAYPAL,
} as const;

export function toRefereeRewardMessage(reward: RefereeReward) {
  return create(RefereeRewardSchema, {
    kind: rewardKinds[reward.kind],
    amountMinor: reward.amountMinor,
    basisPoints: reward.basisPoints,
    maxAmountMinor: reward.maxAmountMinor ?? undefined,
    externalCouponId: reward.externalCouponId ?? "",
  });
}

export function toProgramMessage(program: Program): ProgramMessage {
  return create(ProgramSchema, {
    programKey: program.programKey,
    name: program.name,
    rewardKind: rewardKinds[program.rewardKind],
    rewardAmountMinor: program.rewardAmountMinor,
    rewardBasisPoints: program.rewardBasisPoints,
    tiers: program.tiers.map((tier) => create(RewardTierSchema, tier)),
    refereeReward: program.refereeReward === null ? undefined : toRefereeRewardMessage(program.refereeReward),
    rewardCurrency: program.rewardCurrency,
    recurrence: recurrences[program.recurrence],
    active: program.active,
    maxRewardsPerReferrer: program.maxRewardsPerReferrer ?? undefined,
    conversionWindowDays: program.conversionWindowDays ?? undefined,
    maxCodesPerUser: program.maxCodesPerUser,
    codePrefix: program.codePrefix,
    codeLength: program.codeLength,
    defaultCodeMaxUses: program.defaultCodeMaxUses ?? undefined,
    defaultCodeTtl:
      program.defaultCodeTtlSeconds === null
        ? undefined
        : create(DurationSchema, { seconds: BigInt(program.defaultCodeTtlSeconds) }),
    allowSelfReferral: program.allowSelfReferral,
    budgetMinor: program.budgetMinor ?? undefined,
    rewardsGrantedMinor: program.rewardsGrantedMinor,
    holdDays: program.holdDays,
    reversalFreesUse: program.reversalFreesUse,
    minPayoutMinor: program.minPayoutMinor,
    maxPayoutMinor: program.maxPayoutMinor ?? undefined,
    payoutMethod: payoutMethods[program.payoutMethod],
    metadata: program.metadata,
    createdAt: timestampFromDate(program.createdAt),
    updatedAt: timestampFromDate(program.updatedAt),
  });
}
