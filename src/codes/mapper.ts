import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Reward, RewardSchema } from "../gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus, type ReferralCode as ReferralCodeMessage, ReferralCodeSchema, RewardKind } from "../gen/referral/v1/resources_pb.js";
import type { RewardRule } from "../programs/reward.ts";
import { type CodeStatus as DomainCodeStatus, derivedStatus, type ReferralCode } from "./model.ts";

const statuses: Record<DomainCodeStatus, CodeStatus> = {
  ACTIVE: CodeStatus.ACTIVE,
  INACTIVE: CodeStatus.INACTIVE,
  SUSPENDED: CodeStatus.SUSPENDED,
  EXPIRED: CodeStatus.EXPIRED,
  EXHAUSTED: CodeStatus.EXHAUSTED,
};

/** The code as callers see it, with its status derived at `now`. */
export function toCodeMessage(code: ReferralCode, now: Date): ReferralCodeMessage {
  return create(ReferralCodeSchema, {
    code: code.code,
    programKey: code.programKey,
    userId: code.userId,
    status: statuses[derivedStatus(code, now)],
    usesCount: code.usesCount,
    maxUses: code.maxUses ?? undefined,
    expiresAt: code.expiresAt === null ? undefined : timestampFromDate(code.expiresAt),
    metadata: code.metadata,
    vanity: code.vanity,
    createdAt: timestampFromDate(code.createdAt),
    updatedAt: timestampFromDate(code.updatedAt),
  });
}

export function toRewardMessage(rule: RewardRule): Reward {
  return create(RewardSchema, {
    rewardKind: rule.kind === "FIXED" ? RewardKind.FIXED : RewardKind.PERCENTAGE,
    amountMinor: rule.kind === "FIXED" ? rule.amountMinor : 0n,
    basisPoints: rule.kind === "PERCENTAGE" ? rule.basisPoints : 0,
    currency: rule.currency,
  });
}
