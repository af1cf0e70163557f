/**
 * The real side of the model-based test: concrete requests, sent to the
 * service over gRPC, and its answers turned into the model's plain views so
 * the two can be compared field by field.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { type ReferralCodeService, ValidateCodeResponse_Reason } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import {
  CodeStatus,
  type Earnings,
  type Payout,
  PayoutProvider,
  PayoutState,
  type Program,
  PayoutStatus,
  Recurrence,
  type RefereeReward,
  type Referral,
  type ReferralCode,
  RewardKind,
} from "../../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "../support/clock.ts";
import {
  type CodeRequest,
  type CodeView,
  type EarningsView,
  MADE_BY_SERVICE,
  type ProgramChanges,
  type ProgramInput,
  type PayoutRunView,
  type PayoutView,
  type ProgramView,
  type RefereeRewardInput,
  type ReferralView,
  type StoredCodeStatus,
  type TrackRequest,
} from "./reference-model.ts";

export type Api = Client<typeof ReferralCodeService>;

/**
 * The service's clock in the serial variant: a TestClock, fresh for every
 * sequence, frozen during a command, caught up with real time between
 * commands (codes' `created_at` is PostgreSQL's time, so the test clock must
 * never lag it), and moved forward by the AdvanceClock command.
 */
export class ModelClock {
  #current = new TestClock();

  now(): Date {
    return this.#current.now();
  }

  reset(): void {
    this.#current = new TestClock(new Date());
  }

  catchUp(): void {
    const lag = Date.now() - this.#current.now().getTime();
    if (lag > 0) this.#current.advance(lag);
  }

  advance(ms: number): void {
    this.#current.advance(ms);
  }
}

/** One call, as sent: everything resolved (keys, codes, ids, times). */
export type Concrete =
  | { rpc: "CreateProgram"; input: ProgramInput }
  | { rpc: "UpdateProgram"; key: string; changes: ProgramChanges }
  | { rpc: "CreateCode"; request: CodeRequest }
  | { rpc: "UpdateCode"; code: string; changes: { status?: StoredCodeStatus; maxUses?: number | null } }
  | { rpc: "ValidateCode"; code: string; referredUserId: string | null; transactionAmountMinor: bigint | null }
  | { rpc: "TrackReferral"; request: TrackRequest }
  | { rpc: "ReverseReferral"; id: string }
  | { rpc: "UpdatePayoutStatus"; ids: string[]; to: "PENDING" | "PAID" | "FAILED" }
  | { rpc: "SetPayoutAccount"; userId: string }
  | { rpc: "CreatePayouts"; currency: string; programKey: string; requestId: string }
  | { rpc: "ApprovePayout" | "CancelPayout" | "MarkPayoutPaid" | "MarkPayoutFailed"; id: string }
  | { rpc: "AdvanceClock"; ms: number };

type ActualError = { code: string; reason: string; message: string };
export type Actual = { ok: true; value: unknown; observed: unknown } | { ok: false; error: ActualError };

const grpcCodeNames: Partial<Record<Code, string>> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

function errorOf(error: unknown): ActualError {
  const e = ConnectError.from(error);
  return { code: grpcCodeNames[e.code] ?? String(e.code), reason: e.findDetails(ErrorInfoSchema)[0]?.reason ?? "(no ErrorInfo)", message: e.rawMessage };
}

// ---------------------------------------------------------------- views of the service's messages

const ms = (t: Parameters<typeof timestampMs>[0] | undefined) => (t === undefined ? null : timestampMs(t));

export function programViewOf(p: Program | undefined): ProgramView {
  if (p === undefined) throw new Error("no program in the response");
  return {
    programKey: p.programKey,
    rewardKind: RewardKind[p.rewardKind] as ProgramView["rewardKind"],
    rewardAmountMinor: p.rewardAmountMinor.toString(),
    rewardBasisPoints: p.rewardBasisPoints,
    tiers: [...p.tiers]
      .sort((a, b) => a.minPriorRewards - b.minPriorRewards)
      .map((t) => ({ minPriorRewards: t.minPriorRewards, rewardAmountMinor: t.rewardAmountMinor.toString(), rewardBasisPoints: t.rewardBasisPoints })),
    rewardCurrency: p.rewardCurrency,
    recurrence: Recurrence[p.recurrence] as ProgramView["recurrence"],
    active: p.active ?? true,
    maxRewardsPerReferrer: p.maxRewardsPerReferrer ?? null,
    conversionWindowDays: p.conversionWindowDays ?? null,
    maxCodesPerUser: p.maxCodesPerUser,
    defaultCodeMaxUses: p.defaultCodeMaxUses ?? null,
    allowSelfReferral: p.allowSelfReferral,
    budgetMinor: p.budgetMinor?.toString() ?? null,
    rewardsGrantedMinor: p.rewardsGrantedMinor.toString(),
    holdDays: p.holdDays,
    reversalFreesUse: p.reversalFreesUse ?? true,
    refereeReward: refereeRewardViewOf(p.refereeReward),
    minPayoutMinor: p.minPayoutMinor.toString(),
    maxPayoutMinor: p.maxPayoutMinor?.toString() ?? null,
  };
}

export function payoutViewOf(p: Payout | undefined): PayoutView {
  if (p === undefined) throw new Error("no payout in the response");
  return {
    id: p.id,
    referrerUserId: p.referrerUserId,
    currency: p.currency,
    programKey: p.programKey,
    provider: PayoutProvider[p.provider] as "MANUAL",
    amountMinor: p.amountMinor.toString(),
    rewardsMinor: p.rewardsMinor.toString(),
    clawbacksMinor: p.clawbacksMinor.toString(),
    referralCount: p.referralCount,
    state: PayoutState[p.state] as PayoutView["state"],
    providerReference: p.providerReference,
    failureReason: p.failureReason,
  };
}

function refereeRewardViewOf(r: RefereeReward | undefined): ProgramView["refereeReward"] {
  if (r === undefined) return null;
  return {
    kind: RewardKind[r.kind] as RefereeRewardInput["kind"],
    amountMinor: r.amountMinor.toString(),
    basisPoints: r.basisPoints,
    maxAmountMinor: r.maxAmountMinor?.toString() ?? null,
    externalCouponId: r.externalCouponId,
  };
}

function refereeRewardOf(r: RefereeRewardInput | null) {
  if (r === null) return undefined;
  return {
    kind: r.kind === "FIXED" ? RewardKind.FIXED : RewardKind.PERCENTAGE,
    amountMinor: r.amountMinor,
    basisPoints: r.basisPoints,
    maxAmountMinor: r.maxAmountMinor ?? undefined,
    externalCouponId: r.externalCouponId,
  };
}

export function codeViewOf(c: ReferralCode | undefined): CodeView {
  if (c === undefined) throw new Error("no code in the response");
  return {
    code: c.code,
    programKey: c.programKey,
    userId: c.userId,
    status: CodeStatus[c.status] as CodeView["status"],
    usesCount: c.usesCount,
    maxUses: c.maxUses ?? null,
    expiresAt: ms(c.expiresAt),
    vanity: c.vanity,
  };
}

function referralViewOf(r: Referral | undefined): ReferralView {
  if (r === undefined) throw new Error("no referral in the response");
  return {
    id: r.id,
    programKey: r.programKey,
    code: r.code,
    referrerUserId: r.referrerUserId,
    referredUserId: r.referredUserId,
    transactionId: r.transactionId,
    transactionAmountMinor: r.transactionAmountMinor?.toString() ?? null,
    amountEarnedMinor: r.amountEarnedMinor.toString(),
    refereeRewardMinor: r.refereeRewardMinor.toString(),
    currency: r.currency,
    convertedAt: ms(r.convertedAt) ?? -1,
    payableAt: ms(r.payableAt) ?? -1,
    payoutStatus: PayoutStatus[r.payoutStatus] as ReferralView["payoutStatus"],
    clawback: r.clawback,
    payoutId: r.payoutId,
  };
}

export function earningsViewOf(e: Earnings): EarningsView {
  return {
    currency: e.currency,
    totalMinor: e.totalMinor.toString(),
    pendingMinor: e.pendingMinor.toString(),
    payableMinor: e.payableMinor.toString(),
    paidMinor: e.paidMinor.toString(),
    failedMinor: e.failedMinor.toString(),
    reversedMinor: e.reversedMinor.toString(),
    clawbackMinor: e.clawbackMinor.toString(),
    referralCount: e.referralCount.toString(),
  };
}

// ---------------------------------------------------------------- calls

const updateProgramPaths: Record<keyof ProgramChanges, string> = {
  active: "active",
  budgetMinor: "budget_minor",
  tiers: "tiers",
  holdDays: "hold_days",
  maxRewardsPerReferrer: "max_rewards_per_referrer",
  reversalFreesUse: "reversal_frees_use",
  refereeReward: "referee_reward",
};

async function send(api: Api, c: Concrete): Promise<{ value: unknown; observed: unknown }> {
  switch (c.rpc) {
    case "CreateProgram": {
      const p = c.input;
      const { program } = await api.createProgram({
        program: {
          programKey: p.key,
          name: p.name,
          rewardKind: p.rewardKind === "FIXED" ? RewardKind.FIXED : RewardKind.PERCENTAGE,
          rewardAmountMinor: p.rewardAmountMinor,
          rewardBasisPoints: p.rewardBasisPoints,
          tiers: p.tiers,
          rewardCurrency: p.currency,
          recurrence: p.recurrence === "ONE_TIME" ? Recurrence.ONE_TIME : Recurrence.RECURRING,
          conversionWindowDays: p.conversionWindowDays ?? undefined,
          maxRewardsPerReferrer: p.maxRewardsPerReferrer ?? undefined,
          maxCodesPerUser: p.maxCodesPerUser,
          codePrefix: p.codePrefix,
          codeLength: p.codeLength,
          defaultCodeMaxUses: p.defaultCodeMaxUses ?? undefined,
          allowSelfReferral: p.allowSelfReferral,
          budgetMinor: p.budgetMinor ?? undefined,
          holdDays: p.holdDays,
          reversalFreesUse: p.reversalFreesUse ?? undefined,
          refereeReward: refereeRewardOf(p.refereeReward),
          minPayoutMinor: p.minPayoutMinor,
          maxPayoutMinor: p.maxPayoutMinor ?? undefined,
        },
      });
      return { value: programViewOf(program), observed: undefined };
    }
    case "UpdateProgram": {
      const ch = c.changes;
      const paths = (Object.keys(ch) as (keyof ProgramChanges)[]).map((k) => updateProgramPaths[k]);
      const { program } = await api.updateProgram({
        program: {
          programKey: c.key,
          active: ch.active,
          budgetMinor: ch.budgetMinor ?? undefined,
          tiers: ch.tiers ?? [],
          holdDays: ch.holdDays ?? 0,
          maxRewardsPerReferrer: ch.maxRewardsPerReferrer ?? undefined,
          reversalFreesUse: ch.reversalFreesUse,
          refereeReward: ch.refereeReward === undefined ? undefined : refereeRewardOf(ch.refereeReward),
        },
        updateMask: { paths },
      });
      return { value: programViewOf(program), observed: undefined };
    }
    case "CreateCode": {
      const r = c.request;
      const { code, existing } = await api.createCode({
        programKey: r.programKey,
        userId: r.userId,
        code: r.vanity ?? "",
        maxUses: r.maxUses ?? undefined,
        expiresAt: r.expiresAt === null ? undefined : timestampFromMs(r.expiresAt),
        requestId: r.requestId ?? "",
      });
      const view = codeViewOf(code);
      return { value: { code: view, existing }, observed: { code: view.code, createdAt: ms(code!.createdAt) ?? -1 } };
    }
    case "UpdateCode": {
      const paths = [...(c.changes.status !== undefined ? ["status"] : []), ...(c.changes.maxUses !== undefined ? ["max_uses"] : [])];
      const { code } = await api.updateCode({
        code: {
          code: c.code,
          status: c.changes.status === undefined ? CodeStatus.UNSPECIFIED : CodeStatus[c.changes.status],
          maxUses: c.changes.maxUses ?? undefined,
        },
        updateMask: { paths },
      });
      return { value: codeViewOf(code), observed: undefined };
    }
    case "ValidateCode": {
      const v = await api.validateCode({ code: c.code, referredUserId: c.referredUserId ?? "", transactionAmountMinor: c.transactionAmountMinor ?? undefined });
      return {
        value: {
          valid: v.valid,
          reason: ValidateCodeResponse_Reason[v.reason],
          code: v.code === undefined ? null : codeViewOf(v.code),
          reward:
            v.reward === undefined
              ? null
              : {
                  rewardKind: RewardKind[v.reward.rewardKind],
                  amountMinor: v.reward.amountMinor.toString(),
                  basisPoints: v.reward.basisPoints,
                  currency: v.reward.currency,
                },
          refereeReward: refereeRewardViewOf(v.refereeReward),
          refereeRewardMinor: v.refereeRewardMinor?.toString() ?? null,
        },
        observed: undefined,
      };
    }
    case "TrackReferral": {
      const r = c.request;
      const { referral, replayed } = await api.trackReferral({
        code: r.code,
        referredUserId: r.referredUserId,
        transactionId: r.transactionId ?? "",
        transactionAmountMinor: r.transactionAmountMinor ?? undefined,
        currency: r.currency,
        occurredAt: r.occurredAt === null ? undefined : timestampFromMs(r.occurredAt),
        validateOnly: r.validateOnly,
      });
      const view = referralViewOf(referral);
      return { value: { referral: view, replayed }, observed: { id: view.id } };
    }
    case "ReverseReferral": {
      const { referral } = await api.reverseReferral({ id: c.id, reason: "refund" });
      return { value: referralViewOf(referral), observed: undefined };
    }
    case "UpdatePayoutStatus": {
      const { referrals } = await api.updatePayoutStatus({
        referralIds: c.ids,
        payoutStatus: PayoutStatus[c.to],
        payoutReference: c.to === "PAID" ? "payout-1" : "",
        failureReason: c.to === "FAILED" ? "bank refused" : "",
      });
      return { value: referrals.map(referralViewOf), observed: undefined };
    }
    case "SetPayoutAccount": {
      const { account } = await api.setPayoutAccount({ account: { userId: c.userId, provider: PayoutProvider.MANUAL, accountRef: "manual transfer" } });
      return { value: { userId: account!.userId, provider: PayoutProvider[account!.provider], accountRef: account!.accountRef }, observed: undefined };
    }
    case "CreatePayouts": {
      const run = await api.createPayouts({ currency: c.currency, programKey: c.programKey, requestId: c.requestId });
      const value: PayoutRunView = { payouts: run.payouts.map(payoutViewOf), skippedWithoutAccount: run.skippedWithoutAccount, skippedBelowMinimum: run.skippedBelowMinimum };
      return { value, observed: { payoutIds: run.payouts.map((p) => p.id) } };
    }
    case "ApprovePayout":
      return { value: payoutViewOf((await api.approvePayout({ id: c.id })).payout), observed: undefined };
    case "CancelPayout":
      return { value: payoutViewOf((await api.cancelPayout({ id: c.id })).payout), observed: undefined };
    case "MarkPayoutPaid":
      return { value: payoutViewOf((await api.markPayoutPaid({ id: c.id, providerReference: PAYOUT_REFERENCE })).payout), observed: undefined };
    case "MarkPayoutFailed":
      return { value: payoutViewOf((await api.markPayoutFailed({ id: c.id, failureReason: PAYOUT_FAILURE })).payout), observed: undefined };
    case "AdvanceClock":
      throw new TypeError("AdvanceClock is not a call");
  }
}

/** What an operator gives MarkPayoutPaid / MarkPayoutFailed in the model's sequences. */
export const PAYOUT_REFERENCE = "bank-ref-1";
export const PAYOUT_FAILURE = "account closed";

/** Sends one call; any failure becomes its gRPC code and ErrorInfo reason. */
export async function call(api: Api, c: Concrete): Promise<Actual> {
  try {
    return { ok: true, ...(await send(api, c)) };
  } catch (error) {
    return { ok: false, error: errorOf(error) };
  }
}

// ---------------------------------------------------------------- comparing

/** JSON with bigints, for messages. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
}

/**
 * The first difference between what the model expects and what the service
 * answered, or null. MADE_BY_SERVICE in the expectation matches any non-empty
 * string.
 */
export function difference(expected: unknown, actual: unknown, path = "$"): string | null {
  if (expected === MADE_BY_SERVICE) return typeof actual === "string" && actual !== "" ? null : `${path}: expected a value made by the service, got ${show(actual)}`;
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${path}: expected an array, got ${show(actual)}`;
    if (expected.length !== actual.length) return `${path}: expected ${expected.length} items ${show(expected)}, got ${actual.length} ${show(actual)}`;
    for (let i = 0; i < expected.length; i++) {
      const d = difference(expected[i], actual[i], `${path}[${i}]`);
      if (d !== null) return d;
    }
    return null;
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object") return `${path}: expected ${show(expected)}, got ${show(actual)}`;
    const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
    for (const key of keys) {
      const d = difference((expected as Record<string, unknown>)[key], (actual as Record<string, unknown>)[key], `${path}.${key}`);
      if (d !== null) return d;
    }
    return null;
  }
  return Object.is(expected, actual) ? null : `${path}: expected ${show(expected)}, got ${show(actual)}`;
}
