/**
 * The reference model of issue 15: the service's money rules as
 * proto/referral/v1/*.proto and README.md state them, written from the
 * documentation alone, in plain TypeScript, with no I/O and nothing imported
 * from the service. It is a pure state machine: every method takes the
 * request and the time the call happens at, and answers what the service must
 * answer. Values only the service can make (referral ids, generated codes, the
 * instant a code was created) come back through `apply(observed)` once the
 * real call has answered.
 *
 * Where the documentation leaves an order open, the choice is written down
 * next to it (look for "Assumed:").
 */

export const DAY_MS = 24 * 3600 * 1000;
/** README: MAX_BACKDATE_DAYS, default 30. */
const MAX_BACKDATE_DAYS = 30;
/** proto TrackReferralRequest.occurred_at: "not in the future (beyond a minute of clock skew)". */
const CLOCK_SKEW_MS = 60_000;
/** proto Program.max_codes_per_user: "0 on creation means the default, 5". */
const DEFAULT_MAX_CODES_PER_USER = 5;
/** proto Program.code_length: "0 on creation means the default, 10". */
const DEFAULT_CODE_LENGTH = 10;
/** README, Codes: Crockford base32 without I L O U. */
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export type RewardKind = "FIXED" | "PERCENTAGE";
export type Recurrence = "ONE_TIME" | "RECURRING";
export type StoredCodeStatus = "ACTIVE" | "INACTIVE" | "SUSPENDED";
type PayoutStatus = "PENDING" | "PAID" | "FAILED" | "REVERSED";
export type Tier = { minPriorRewards: number; rewardAmountMinor: bigint; rewardBasisPoints: number };

/** gRPC code names, as README's error table maps reasons to them. */
type GrpcCode = "INVALID_ARGUMENT" | "NOT_FOUND" | "ALREADY_EXISTS" | "FAILED_PRECONDITION";
type ModelError = { code: GrpcCode; reason: string };

const NOT_FOUND = new Set(["PROGRAM_NOT_FOUND", "CODE_NOT_FOUND", "REFERRAL_NOT_FOUND", "PAYOUT_NOT_FOUND"]);
const ALREADY_EXISTS = new Set(["PROGRAM_KEY_TAKEN", "CODE_TAKEN", "IDEMPOTENCY_KEY_REUSED"]);

function fail(reason: string): { ok: false; error: ModelError } {
  const code: GrpcCode =
    reason === "INVALID_ARGUMENT" ? "INVALID_ARGUMENT" : NOT_FOUND.has(reason) ? "NOT_FOUND" : ALREADY_EXISTS.has(reason) ? "ALREADY_EXISTS" : "FAILED_PRECONDITION";
  return { ok: false, error: { code, reason } };
}

/** What a call must answer; on success, `apply` records what only the service could make. */
export type Prediction<T, Observed = void> = { ok: false; error: ModelError } | { ok: true; value: T; apply(observed: Observed): void };

// ---------------------------------------------------------------- state

/** proto RefereeReward: what the referred user gets (double-sided rewards). */
export type RefereeRewardInput = { kind: RewardKind; amountMinor: bigint; basisPoints: number; maxAmountMinor: bigint | null; externalCouponId: string };

export type ProgramInput = {
  key: string;
  name: string;
  rewardKind: RewardKind;
  rewardAmountMinor: bigint;
  rewardBasisPoints: number;
  tiers: Tier[];
  currency: string;
  recurrence: Recurrence;
  conversionWindowDays: number | null;
  maxRewardsPerReferrer: number | null;
  /** 0: the default. */
  maxCodesPerUser: number;
  codePrefix: string;
  /** 0: the default. */
  codeLength: number;
  defaultCodeMaxUses: number | null;
  allowSelfReferral: boolean;
  budgetMinor: bigint | null;
  holdDays: number;
  /** null: not set (the default, true). */
  reversalFreesUse: boolean | null;
  /** null: none. */
  refereeReward: RefereeRewardInput | null;
  /** proto Program.min_payout_minor: the smallest payout CreatePayouts makes. */
  minPayoutMinor: bigint;
  /** proto Program.max_payout_minor: larger payouts wait in REQUIRES_REVIEW; null: none. */
  maxPayoutMinor: bigint | null;
};

type ProgramState = Omit<ProgramInput, "reversalFreesUse"> & { active: boolean; reversalFreesUse: boolean };

type CodeState = {
  code: string;
  programKey: string;
  userId: string;
  status: StoredCodeStatus;
  maxUses: number | null;
  expiresAt: number | null;
  createdAt: number;
  vanity: boolean;
  requestId: string | null;
};

type ReferralState = {
  id: string;
  programKey: string;
  code: string;
  referrerUserId: string;
  referredUserId: string;
  transactionId: string | null;
  transactionAmountMinor: bigint | null;
  amountEarnedMinor: bigint;
  refereeRewardMinor: bigint;
  currency: string;
  convertedAt: number;
  payableAt: number;
  payoutStatus: PayoutStatus;
  clawback: boolean;
  /** proto Referral.payout_id: the payout paying it (set by CreatePayouts, cleared when that payout fails or is canceled). */
  payoutId: string | null;
  /** The payout that recovered it, for a clawback (proto CreatePayouts: "clawbacks not yet recovered"). */
  recoveredBy: string | null;
};

export type PayoutState = "REQUIRES_REVIEW" | "PENDING" | "PROCESSING" | "PAID" | "FAILED" | "CANCELED";

/** A payout of CreatePayouts. The model's accounts are all manual (the providers are tested against their local servers). */
type PayoutRecord = {
  id: string;
  referrerUserId: string;
  currency: string;
  programKey: string;
  rewardsMinor: bigint;
  clawbacksMinor: bigint;
  referralCount: number;
  state: PayoutState;
  providerReference: string;
  failureReason: string;
};

type PayoutRun = { currency: string; programKey: string; payoutIds: string[]; skippedWithoutAccount: number; skippedBelowMinimum: number };

/** All of it plain data (Maps, arrays, bigints), so `structuredClone` copies a model. */
type State = {
  programs: Map<string, ProgramState>;
  programOrder: string[];
  codes: Map<string, CodeState>;
  codeOrder: string[];
  referrals: Map<string, ReferralState>;
  referralOrder: string[];
  /** Per code: the referred users holding one of its uses. uses_count is its size. */
  useHolders: Map<string, Set<string>>;
  /** Per program and referred user: their first conversion in the program (it stays first when reversed). */
  firstConversion: Map<string, string>;
  /** Users with a (manual) payout account. */
  accounts: Set<string>;
  payouts: Map<string, PayoutRecord>;
  payoutOrder: string[];
  /** CreatePayouts calls by request_id. */
  runs: Map<string, PayoutRun>;
};

// ---------------------------------------------------------------- views (what the API shows)

export type ProgramView = {
  programKey: string;
  rewardKind: RewardKind;
  rewardAmountMinor: string;
  rewardBasisPoints: number;
  tiers: { minPriorRewards: number; rewardAmountMinor: string; rewardBasisPoints: number }[];
  rewardCurrency: string;
  recurrence: Recurrence;
  active: boolean;
  maxRewardsPerReferrer: number | null;
  conversionWindowDays: number | null;
  maxCodesPerUser: number;
  defaultCodeMaxUses: number | null;
  allowSelfReferral: boolean;
  budgetMinor: string | null;
  rewardsGrantedMinor: string;
  holdDays: number;
  reversalFreesUse: boolean;
  refereeReward: RefereeRewardView | null;
  minPayoutMinor: string;
  maxPayoutMinor: string | null;
};

export type PayoutView = {
  id: string;
  referrerUserId: string;
  currency: string;
  programKey: string;
  provider: "MANUAL";
  amountMinor: string;
  rewardsMinor: string;
  clawbacksMinor: string;
  referralCount: number;
  state: PayoutState;
  providerReference: string;
  failureReason: string;
};

export type PayoutRunView = { payouts: PayoutView[]; skippedWithoutAccount: number; skippedBelowMinimum: number };

type RefereeRewardView = { kind: RewardKind; amountMinor: string; basisPoints: number; maxAmountMinor: string | null; externalCouponId: string };

export type CodeView = {
  code: string;
  programKey: string;
  userId: string;
  status: StoredCodeStatus | "EXPIRED" | "EXHAUSTED";
  usesCount: number;
  maxUses: number | null;
  expiresAt: number | null;
  vanity: boolean;
};

export type ReferralView = {
  id: string;
  programKey: string;
  code: string;
  referrerUserId: string;
  referredUserId: string;
  transactionId: string;
  transactionAmountMinor: string | null;
  amountEarnedMinor: string;
  refereeRewardMinor: string;
  currency: string;
  convertedAt: number;
  payableAt: number;
  payoutStatus: PayoutStatus;
  clawback: boolean;
  payoutId: string;
};

export type EarningsView = {
  currency: string;
  totalMinor: string;
  pendingMinor: string;
  payableMinor: string;
  paidMinor: string;
  failedMinor: string;
  reversedMinor: string;
  clawbackMinor: string;
  referralCount: string;
};

type RewardView = { rewardKind: RewardKind; amountMinor: string; basisPoints: number; currency: string };
export type ValidateView = {
  valid: boolean;
  reason: string;
  code: CodeView | null;
  reward: RewardView | null;
  refereeReward: RefereeRewardView | null;
  /** FIXED; PERCENTAGE only when the request carries the purchase amount. */
  refereeRewardMinor: string | null;
};
export type TrackView = { referral: ReferralView; replayed: boolean };

/** A placeholder in predicted views for what the service makes (ids, generated codes). */
export const MADE_BY_SERVICE = "<made by the service>";

// ---------------------------------------------------------------- requests

export type ProgramChanges = {
  active?: boolean;
  /** null: clear the budget. */
  budgetMinor?: bigint | null;
  tiers?: Tier[];
  holdDays?: number;
  maxRewardsPerReferrer?: number | null;
  /** Only to check that UpdateProgram refuses it. */
  reversalFreesUse?: boolean;
  /** null: clear it. */
  refereeReward?: RefereeRewardInput | null;
};

export type CodeRequest = {
  programKey: string;
  userId: string;
  /** Vanity code as sent (normalized by the service); null: generated. */
  vanity: string | null;
  maxUses: number | null;
  expiresAt: number | null;
  requestId: string | null;
};

export type TrackRequest = {
  /** As typed: the service trims and upper-cases. */
  code: string;
  referredUserId: string;
  transactionId: string | null;
  transactionAmountMinor: bigint | null;
  /** "": the program's currency. */
  currency: string;
  occurredAt: number | null;
  validateOnly: boolean;
};

const normalizeCode = (text: string) => text.trim().toUpperCase();
const pairKey = (a: string, b: string) => `${a}\u0000${b}`;

/**
 * PERCENTAGE: amount × basis_points / 10000, rounded half to even to the
 * minor unit (proto RewardKind, README Rules), in integers.
 */
function percentageReward(amount: bigint, basisPoints: number): bigint {
  const numerator = amount * BigInt(basisPoints);
  const quotient = numerator / 10_000n;
  const remainder = numerator - quotient * 10_000n;
  if (remainder * 2n > 10_000n) return quotient + 1n;
  if (remainder * 2n === 10_000n) return quotient % 2n === 0n ? quotient : quotient + 1n;
  return quotient;
}

/** proto RefereeReward: FIXED gives its amount; PERCENTAGE the rounded share of the purchase, capped by max_amount_minor. */
function refereeAmount(r: RefereeRewardInput | null, transactionAmountMinor: bigint | null): bigint {
  if (r === null) return 0n;
  if (r.kind === "FIXED") return r.amountMinor;
  const amount = percentageReward(transactionAmountMinor!, r.basisPoints);
  return r.maxAmountMinor !== null && amount > r.maxAmountMinor ? r.maxAmountMinor : amount;
}

function refereeRewardView(r: RefereeRewardInput | null): RefereeRewardView | null {
  if (r === null) return null;
  return { kind: r.kind, amountMinor: r.amountMinor.toString(), basisPoints: r.basisPoints, maxAmountMinor: r.maxAmountMinor?.toString() ?? null, externalCouponId: r.externalCouponId };
}

export class ReferenceModel {
  private s: State;

  constructor(state?: State) {
    this.s = state ?? {
      programs: new Map(),
      programOrder: [],
      codes: new Map(),
      codeOrder: [],
      referrals: new Map(),
      referralOrder: [],
      useHolders: new Map(),
      firstConversion: new Map(),
      accounts: new Set(),
      payouts: new Map(),
      payoutOrder: [],
      runs: new Map(),
    };
  }

  clone(): ReferenceModel {
    return new ReferenceModel(structuredClone(this.s));
  }

  // ---------------------------------------------------------------- lookups for the command runner

  programKeys(): readonly string[] {
    return this.s.programOrder;
  }
  codeTexts(): readonly string[] {
    return this.s.codeOrder;
  }
  referralIds(): readonly string[] {
    return this.s.referralOrder;
  }
  payoutIds(): readonly string[] {
    return this.s.payoutOrder;
  }
  /** A CreatePayouts request_id used before, with what it asked. */
  payoutRun(requestId: string): { currency: string; programKey: string } | null {
    const run = this.s.runs.get(requestId);
    return run === undefined ? null : { currency: run.currency, programKey: run.programKey };
  }
  referralProgram(id: string): string | null {
    return this.s.referrals.get(id)?.programKey ?? null;
  }
  codeInfo(code: string): { createdAt: number; expiresAt: number | null; programKey: string; userId: string; vanity: boolean } | null {
    const found = this.s.codes.get(normalizeCode(code));
    return found === undefined ? null : { ...found };
  }
  programRule(key: string): { rewardKind: RewardKind; currency: string; recurrence: Recurrence } | null {
    const p = this.s.programs.get(key);
    return p === undefined ? null : { rewardKind: p.rewardKind, currency: p.currency, recurrence: p.recurrence };
  }
  /** The program's standing rewards, both sides (what rewards_granted_minor counts while it has a budget). */
  standingRewards(key: string): bigint {
    let sum = 0n;
    for (const r of this.s.referrals.values()) if (r.programKey === key && r.payoutStatus !== "REVERSED") sum += r.amountEarnedMinor + r.refereeRewardMinor;
    return sum;
  }

  // ---------------------------------------------------------------- views

  programView(key: string): ProgramView | null {
    const p = this.s.programs.get(key);
    if (p === undefined) return null;
    return {
      programKey: p.key,
      rewardKind: p.rewardKind,
      rewardAmountMinor: p.rewardAmountMinor.toString(),
      rewardBasisPoints: p.rewardBasisPoints,
      tiers: [...p.tiers]
        .sort((a, b) => a.minPriorRewards - b.minPriorRewards)
        .map((t) => ({ minPriorRewards: t.minPriorRewards, rewardAmountMinor: t.rewardAmountMinor.toString(), rewardBasisPoints: t.rewardBasisPoints })),
      rewardCurrency: p.currency,
      recurrence: p.recurrence,
      active: p.active,
      maxRewardsPerReferrer: p.maxRewardsPerReferrer,
      conversionWindowDays: p.conversionWindowDays,
      maxCodesPerUser: p.maxCodesPerUser,
      defaultCodeMaxUses: p.defaultCodeMaxUses,
      allowSelfReferral: p.allowSelfReferral,
      budgetMinor: p.budgetMinor?.toString() ?? null,
      // proto Program.rewards_granted_minor: net of reversals while budgeted, else 0.
      rewardsGrantedMinor: (p.budgetMinor === null ? 0n : this.standingRewards(key)).toString(),
      holdDays: p.holdDays,
      reversalFreesUse: p.reversalFreesUse,
      refereeReward: refereeRewardView(p.refereeReward),
      minPayoutMinor: p.minPayoutMinor.toString(),
      maxPayoutMinor: p.maxPayoutMinor?.toString() ?? null,
    };
  }

  private usesCount(code: string): number {
    return this.s.useHolders.get(code)?.size ?? 0;
  }

  /** proto CodeStatus: EXPIRED (past expires_at) and EXHAUSTED (uses_count = max_uses) derived for a stored ACTIVE code. */
  codeView(code: string, now: number): CodeView | null {
    const c = this.s.codes.get(code);
    if (c === undefined) return null;
    const uses = this.usesCount(code);
    let status: CodeView["status"] = c.status;
    if (c.status === "ACTIVE" && c.expiresAt !== null && c.expiresAt <= now) status = "EXPIRED";
    else if (c.status === "ACTIVE" && c.maxUses !== null && uses >= c.maxUses) status = "EXHAUSTED";
    return { code: c.code, programKey: c.programKey, userId: c.userId, status, usesCount: uses, maxUses: c.maxUses, expiresAt: c.expiresAt, vanity: c.vanity };
  }

  private referralView(r: ReferralState): ReferralView {
    return {
      id: r.id,
      programKey: r.programKey,
      code: r.code,
      referrerUserId: r.referrerUserId,
      referredUserId: r.referredUserId,
      transactionId: r.transactionId ?? "",
      transactionAmountMinor: r.transactionAmountMinor?.toString() ?? null,
      amountEarnedMinor: r.amountEarnedMinor.toString(),
      refereeRewardMinor: r.refereeRewardMinor.toString(),
      currency: r.currency,
      convertedAt: r.convertedAt,
      payableAt: r.payableAt,
      payoutStatus: r.payoutStatus,
      clawback: r.clawback,
      payoutId: r.payoutId ?? "",
    };
  }

  payoutView(id: string): PayoutView | null {
    const p = this.s.payouts.get(id);
    if (p === undefined) return null;
    return {
      id: p.id,
      referrerUserId: p.referrerUserId,
      currency: p.currency,
      programKey: p.programKey,
      provider: "MANUAL",
      amountMinor: (p.rewardsMinor - p.clawbacksMinor).toString(),
      rewardsMinor: p.rewardsMinor.toString(),
      clawbacksMinor: p.clawbacksMinor.toString(),
      referralCount: p.referralCount,
      state: p.state,
      providerReference: p.providerReference,
      failureReason: p.failureReason,
    };
  }

  /** README Earnings: per currency, pending (in hold), payable, paid, failed, reversed, clawback, total (all but reversed). */
  earnings(userId: string, now: number): EarningsView[] {
    const byCurrency = new Map<string, { total: bigint; pending: bigint; payable: bigint; paid: bigint; failed: bigint; reversed: bigint; clawback: bigint; count: bigint }>();
    for (const r of this.s.referrals.values()) {
      if (r.referrerUserId !== userId) continue;
      let e = byCurrency.get(r.currency);
      if (e === undefined) {
        e = { total: 0n, pending: 0n, payable: 0n, paid: 0n, failed: 0n, reversed: 0n, clawback: 0n, count: 0n };
        byCurrency.set(r.currency, e);
      }
      const amount = r.amountEarnedMinor;
      e.count += 1n;
      if (r.payoutStatus !== "REVERSED") e.total += amount;
      if (r.payoutStatus === "PENDING" && r.payableAt > now) e.pending += amount;
      if (r.payoutStatus === "PENDING" && r.payableAt <= now) e.payable += amount;
      if (r.payoutStatus === "PAID") e.paid += amount;
      if (r.payoutStatus === "FAILED") e.failed += amount;
      if (r.payoutStatus === "REVERSED") e.reversed += amount;
      if (r.payoutStatus === "REVERSED" && r.clawback) e.clawback += amount;
    }
    return [...byCurrency.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([currency, e]) => ({
        currency,
        totalMinor: e.total.toString(),
        pendingMinor: e.pending.toString(),
        payableMinor: e.payable.toString(),
        paidMinor: e.paid.toString(),
        failedMinor: e.failed.toString(),
        reversedMinor: e.reversed.toString(),
        clawbackMinor: e.clawback.toString(),
        referralCount: e.count.toString(),
      }));
  }

  // ---------------------------------------------------------------- programs

  private rewardRuleError(p: Pick<ProgramInput, "rewardKind" | "rewardAmountMinor" | "rewardBasisPoints" | "tiers">): boolean {
    if (p.rewardKind === "FIXED" && (p.rewardAmountMinor < 1n || p.rewardBasisPoints !== 0)) return true;
    if (p.rewardKind === "PERCENTAGE" && (p.rewardBasisPoints < 1 || p.rewardAmountMinor !== 0n)) return true;
    const seen = new Set<number>();
    for (const t of p.tiers) {
      if (seen.has(t.minPriorRewards)) return true;
      seen.add(t.minPriorRewards);
      if (p.rewardKind === "FIXED" && t.rewardBasisPoints !== 0) return true;
      if (p.rewardKind === "PERCENTAGE" && (t.rewardAmountMinor !== 0n || t.rewardBasisPoints < 1)) return true;
    }
    return false;
  }

  /** proto RefereeReward: FIXED an amount (no basis points, no cap), PERCENTAGE basis points (no amount). */
  private refereeRuleError(r: RefereeRewardInput | null): boolean {
    if (r === null) return false;
    if (r.kind === "FIXED") return r.amountMinor < 1n || r.basisPoints !== 0 || r.maxAmountMinor !== null;
    return r.basisPoints < 1 || r.amountMinor !== 0n;
  }

  createProgram(input: ProgramInput): Prediction<ProgramView> {
    if (this.rewardRuleError(input) || this.refereeRuleError(input.refereeReward)) return fail("INVALID_ARGUMENT");
    // proto Program.max_payout_minor may not be below min_payout_minor.
    if (input.maxPayoutMinor !== null && input.maxPayoutMinor < input.minPayoutMinor) return fail("INVALID_ARGUMENT");
    if (this.s.programs.has(input.key)) return fail("PROGRAM_KEY_TAKEN");
    for (const p of this.s.programs.values()) if (p.name === input.name) return fail("PROGRAM_KEY_TAKEN");
    const program: ProgramState = {
      ...input,
      tiers: input.tiers.map((t) => ({ ...t })),
      codePrefix: input.codePrefix.toUpperCase(),
      maxCodesPerUser: input.maxCodesPerUser === 0 ? DEFAULT_MAX_CODES_PER_USER : input.maxCodesPerUser,
      codeLength: input.codeLength === 0 ? DEFAULT_CODE_LENGTH : input.codeLength,
      active: true,
      reversalFreesUse: input.reversalFreesUse ?? true,
    };
    const preview = new ReferenceModel({ ...this.s, programs: new Map([[program.key, program]]) }).programView(program.key)!;
    return {
      ok: true,
      value: preview,
      apply: () => {
        this.s.programs.set(program.key, program);
        this.s.programOrder.push(program.key);
      },
    };
  }

  updateProgram(key: string, changes: ProgramChanges): Prediction<ProgramView> {
    // proto UpdateProgramRequest.update_mask: reversal_frees_use is set on creation only.
    if (changes.reversalFreesUse !== undefined) return fail("INVALID_ARGUMENT");
    const current = this.s.programs.get(key);
    if (current === undefined) return fail("PROGRAM_NOT_FOUND");
    const next: ProgramState = { ...current, tiers: current.tiers.map((t) => ({ ...t })) };
    if (changes.active !== undefined) next.active = changes.active;
    if (changes.budgetMinor !== undefined) next.budgetMinor = changes.budgetMinor;
    if (changes.tiers !== undefined) next.tiers = changes.tiers.map((t) => ({ ...t }));
    if (changes.holdDays !== undefined) next.holdDays = changes.holdDays;
    if (changes.maxRewardsPerReferrer !== undefined) next.maxRewardsPerReferrer = changes.maxRewardsPerReferrer;
    if (changes.refereeReward !== undefined) next.refereeReward = changes.refereeReward;
    if (this.rewardRuleError(next) || this.refereeRuleError(next.refereeReward)) return fail("INVALID_ARGUMENT");
    // README Errors: BUDGET_BELOW_GRANTED; proto: setting a budget counts the standing rewards.
    if (changes.budgetMinor !== undefined && changes.budgetMinor !== null && changes.budgetMinor < this.standingRewards(key)) {
      return fail("BUDGET_BELOW_GRANTED");
    }
    const preview = new ReferenceModel({ ...this.s, programs: new Map(this.s.programs).set(key, next) }).programView(key)!;
    return { ok: true, value: preview, apply: () => void this.s.programs.set(key, next) };
  }

  // ---------------------------------------------------------------- codes

  createCode(request: CodeRequest, now: number): Prediction<{ code: CodeView; existing: boolean }, { code: string; createdAt: number }> {
    // proto CreateCodeRequest.expires_at: "in the future".
    if (request.expiresAt !== null && request.expiresAt <= now) return fail("INVALID_ARGUMENT");
    const program = this.s.programs.get(request.programKey);
    if (program === undefined) return fail("PROGRAM_NOT_FOUND");
    if (!program.active) return fail("PROGRAM_INACTIVE");
    const vanity = request.vanity === null ? null : normalizeCode(request.vanity);
    // A retry with the same request_id for the same program returns the code the first call created.
    if (request.requestId !== null) {
      const earlier = [...this.s.codes.values()].find((c) => c.programKey === program.key && c.requestId === request.requestId);
      if (earlier !== undefined) {
        // Assumed: a request_id reused for another user or another vanity code is IDEMPOTENCY_KEY_REUSED
        // (the generator only replays identical requests).
        if (earlier.userId !== request.userId || (vanity !== null && vanity !== earlier.code)) return fail("IDEMPOTENCY_KEY_REUSED");
        return { ok: true, value: { code: this.codeView(earlier.code, now)!, existing: true }, apply: () => {} };
      }
    }
    // Assumed: the user's code limit is checked before a vanity code's uniqueness.
    const held = [...this.s.codes.values()].filter((c) => c.programKey === program.key && c.userId === request.userId).length;
    if (held >= program.maxCodesPerUser) return fail("CODE_LIMIT_REACHED");
    if (vanity !== null && this.s.codes.has(vanity)) return fail("CODE_TAKEN");
    const maxUses = request.maxUses ?? program.defaultCodeMaxUses;
    const view: CodeView = {
      code: vanity ?? MADE_BY_SERVICE,
      programKey: program.key,
      userId: request.userId,
      status: maxUses !== null && maxUses <= 0 ? "EXHAUSTED" : "ACTIVE",
      usesCount: 0,
      maxUses,
      expiresAt: request.expiresAt,
      vanity: vanity !== null,
    };
    return {
      ok: true,
      value: { code: view, existing: false },
      apply: ({ code, createdAt }) => {
        if (vanity === null && !this.isGeneratedCode(program, code)) throw new Error(`generated code ${code} does not follow the program's format`);
        this.s.codes.set(code, {
          code,
          programKey: program.key,
          userId: request.userId,
          status: "ACTIVE",
          maxUses,
          expiresAt: request.expiresAt,
          createdAt,
          vanity: vanity !== null,
          requestId: request.requestId,
        });
        this.s.codeOrder.push(code);
      },
    };
  }

  /** README, Codes: `code_length` Crockford characters after `code_prefix` and a `-` when there is a prefix. */
  private isGeneratedCode(program: ProgramState, code: string): boolean {
    const head = program.codePrefix === "" ? "" : `${program.codePrefix}-`;
    if (!code.startsWith(head)) return false;
    const body = code.slice(head.length);
    return body.length === program.codeLength && [...body].every((ch) => CROCKFORD.includes(ch));
  }

  updateCode(codeText: string, changes: { status?: StoredCodeStatus; maxUses?: number | null }, now: number): Prediction<CodeView> {
    const code = normalizeCode(codeText);
    const current = this.s.codes.get(code);
    if (current === undefined) return fail("CODE_NOT_FOUND");
    // proto UpdateCode: lowering max_uses below uses_count fails MAX_USES_BELOW_USES_COUNT.
    if (changes.maxUses !== undefined && changes.maxUses !== null && changes.maxUses < this.usesCount(code)) return fail("MAX_USES_BELOW_USES_COUNT");
    const next = { ...current };
    if (changes.status !== undefined) next.status = changes.status;
    if (changes.maxUses !== undefined) next.maxUses = changes.maxUses;
    const preview = new ReferenceModel({ ...this.s, codes: new Map(this.s.codes).set(code, next) }).codeView(code, now)!;
    return { ok: true, value: preview, apply: () => void this.s.codes.set(code, next) };
  }

  // ---------------------------------------------------------------- usability (proto ValidateCodeResponse.Reason)

  /** The referrer's rewarded (not reversed) conversions in the program. */
  private priorRewards(programKey: string, referrer: string): number {
    let n = 0;
    for (const r of this.s.referrals.values()) if (r.programKey === programKey && r.referrerUserId === referrer && r.payoutStatus !== "REVERSED") n++;
    return n;
  }

  /** proto RewardTier: the tier with the highest min_prior_rewards not above the count; below the lowest, the base reward. */
  private rewardRule(p: ProgramState, prior: number): { amountMinor: bigint; basisPoints: number } {
    let amountMinor = p.rewardAmountMinor;
    let basisPoints = p.rewardBasisPoints;
    let best = -1;
    for (const t of p.tiers) {
      if (t.minPriorRewards <= prior && t.minPriorRewards > best) {
        best = t.minPriorRewards;
        amountMinor = t.rewardAmountMinor;
        basisPoints = t.rewardBasisPoints;
      }
    }
    return p.rewardKind === "FIXED" ? { amountMinor, basisPoints: 0 } : { amountMinor: 0n, basisPoints };
  }

  private holdsUse(code: string, user: string): boolean {
    return this.s.useHolders.get(code)?.has(user) ?? false;
  }

  /**
   * The one order of "can this user use this code now": the code and its
   * program, the referred user's own standing, then CODE_EXHAUSTED for a user
   * who would need a new use (without a user: when no use is left).
   */
  private unusable(c: CodeState, p: ProgramState, user: string | null, at: number): string | null {
    if (!p.active) return "PROGRAM_INACTIVE";
    if (c.status === "INACTIVE") return "CODE_INACTIVE";
    if (c.status === "SUSPENDED") return "CODE_SUSPENDED";
    // "When the code stops being usable": from expires_at on.
    if (c.expiresAt !== null && at >= c.expiresAt) return "CODE_EXPIRED";
    if (user !== null) {
      if (user === c.userId && !p.allowSelfReferral) return "SELF_REFERRAL";
      const firstId = this.s.firstConversion.get(pairKey(p.key, user));
      const first = firstId === undefined ? undefined : this.s.referrals.get(firstId);
      if (first !== undefined) {
        if (first.referrerUserId !== c.userId) return "ALREADY_REFERRED";
        if (p.recurrence === "ONE_TIME") return "ALREADY_CONVERTED";
        if (p.conversionWindowDays !== null && at > first.convertedAt + p.conversionWindowDays * DAY_MS) return "CONVERSION_WINDOW_CLOSED";
      }
    }
    const needsUse = user === null || !this.holdsUse(c.code, user);
    if (needsUse && c.maxUses !== null && this.usesCount(c.code) >= c.maxUses) return "CODE_EXHAUSTED";
    return null;
  }

  validateCode(codeText: string, referredUserId: string | null, now: number, transactionAmountMinor: bigint | null = null): ValidateView {
    const c = this.s.codes.get(normalizeCode(codeText));
    if (c === undefined) return { valid: false, reason: "CODE_NOT_FOUND", code: null, reward: null, refereeReward: null, refereeRewardMinor: null };
    const p = this.s.programs.get(c.programKey)!;
    const reason = this.unusable(c, p, referredUserId, now);
    const rule = this.rewardRule(p, this.priorRewards(p.key, c.userId));
    return {
      valid: reason === null,
      reason: reason ?? "UNSPECIFIED",
      code: this.codeView(c.code, now),
      reward: { rewardKind: p.rewardKind, amountMinor: rule.amountMinor.toString(), basisPoints: rule.basisPoints, currency: p.currency },
      refereeReward: refereeRewardView(p.refereeReward),
      refereeRewardMinor:
        p.refereeReward === null || (p.refereeReward.kind === "PERCENTAGE" && transactionAmountMinor === null)
          ? null
          : refereeAmount(p.refereeReward, transactionAmountMinor).toString(),
    };
  }

  // ---------------------------------------------------------------- conversions

  trackReferral(request: TrackRequest, now: number): Prediction<TrackView, { id: string }> {
    // occurred_at: not in the future beyond the skew, not more than MAX_BACKDATE_DAYS before now.
    if (request.occurredAt !== null && (request.occurredAt > now + CLOCK_SKEW_MS || request.occurredAt < now - MAX_BACKDATE_DAYS * DAY_MS)) {
      return fail("INVALID_ARGUMENT");
    }
    const c = this.s.codes.get(normalizeCode(request.code));
    if (c === undefined) return fail("CODE_NOT_FOUND");
    const p = this.s.programs.get(c.programKey)!;
    const currency = request.currency === "" ? p.currency : request.currency;

    // Retries. Assumed: a retry is recognised before the rules are applied
    // again (the original must come back even if the code was suspended since).
    let earlier: ReferralState | undefined;
    if (request.transactionId !== null) {
      earlier = [...this.s.referrals.values()].find((r) => r.programKey === p.key && r.transactionId === request.transactionId);
    } else if (p.recurrence === "ONE_TIME") {
      // README Retries: without a transaction_id (one-time programs) a retry is recognised by program, referred user and code.
      const firstId = this.s.firstConversion.get(pairKey(p.key, request.referredUserId));
      const first = firstId === undefined ? undefined : this.s.referrals.get(firstId);
      if (first !== undefined && first.code === c.code) earlier = first;
    }
    if (earlier !== undefined) {
      const same =
        earlier.code === c.code &&
        earlier.referredUserId === request.referredUserId &&
        earlier.transactionAmountMinor === request.transactionAmountMinor &&
        earlier.currency === currency;
      if (!same) return fail("IDEMPOTENCY_KEY_REUSED");
      return { ok: true, value: { referral: this.referralView(earlier), replayed: true }, apply: () => {} };
    }

    // Input that depends on the code.
    if (request.occurredAt !== null && request.occurredAt < c.createdAt) return fail("INVALID_ARGUMENT");
    if (p.rewardKind === "PERCENTAGE" && request.transactionAmountMinor === null) return fail("INVALID_ARGUMENT");
    if (p.refereeReward?.kind === "PERCENTAGE" && request.transactionAmountMinor === null) return fail("INVALID_ARGUMENT");
    if (p.recurrence === "RECURRING" && request.transactionId === null) return fail("INVALID_ARGUMENT");

    const at = request.occurredAt ?? now;
    const unusable = this.unusable(c, p, request.referredUserId, at);
    if (unusable !== null) return fail(unusable);
    if (currency !== p.currency) return fail("CURRENCY_MISMATCH");
    const prior = this.priorRewards(p.key, c.userId);
    if (p.maxRewardsPerReferrer !== null && prior >= p.maxRewardsPerReferrer) return fail("REWARD_LIMIT_REACHED");
    const rule = this.rewardRule(p, prior);
    const amount = p.rewardKind === "FIXED" ? rule.amountMinor : percentageReward(request.transactionAmountMinor!, rule.basisPoints);
    // The budget covers both sides.
    const referee = refereeAmount(p.refereeReward, request.transactionAmountMinor);
    if (p.budgetMinor !== null && this.standingRewards(p.key) + amount + referee > p.budgetMinor) return fail("BUDGET_EXHAUSTED");

    const referral: ReferralState = {
      id: MADE_BY_SERVICE,
      programKey: p.key,
      code: c.code,
      referrerUserId: c.userId,
      referredUserId: request.referredUserId,
      transactionId: request.transactionId,
      transactionAmountMinor: request.transactionAmountMinor,
      amountEarnedMinor: amount,
      refereeRewardMinor: referee,
      currency,
      convertedAt: at,
      payableAt: at + p.holdDays * DAY_MS,
      payoutStatus: "PENDING",
      clawback: false,
      payoutId: null,
      recoveredBy: null,
    };
    if (request.validateOnly) {
      return { ok: true, value: { referral: { ...this.referralView(referral), id: "" }, replayed: false }, apply: () => {} };
    }
    return {
      ok: true,
      value: { referral: this.referralView(referral), replayed: false },
      apply: ({ id }) => {
        const recorded = { ...referral, id };
        this.s.referrals.set(id, recorded);
        this.s.referralOrder.push(id);
        const first = pairKey(p.key, request.referredUserId);
        if (!this.s.firstConversion.has(first)) this.s.firstConversion.set(first, id);
        // A conversion takes a use when its referred user holds none of the code's uses.
        let holders = this.s.useHolders.get(c.code);
        if (holders === undefined) {
          holders = new Set();
          this.s.useHolders.set(c.code, holders);
        }
        holders.add(request.referredUserId);
      },
    };
  }

  reverseReferral(id: string, _now: number): Prediction<ReferralView> {
    const r = this.s.referrals.get(id);
    if (r === undefined) return fail("REFERRAL_NOT_FOUND");
    // PayoutStatus: PENDING | FAILED | PAID -> REVERSED; anything else INVALID_PAYOUT_TRANSITION.
    if (r.payoutStatus === "REVERSED") return fail("INVALID_PAYOUT_TRANSITION");
    const next: ReferralState = { ...r, payoutStatus: "REVERSED", clawback: r.payoutStatus === "PAID" };
    return {
      ok: true,
      value: this.referralView(next),
      apply: () => {
        this.s.referrals.set(id, next);
        const p = this.s.programs.get(r.programKey)!;
        // With reversal_frees_use the code gets its use back once none of
        // that user's conversions through it stands.
        if (p.reversalFreesUse) {
          const stands = [...this.s.referrals.values()].some(
            (o) => o.code === r.code && o.referredUserId === r.referredUserId && o.payoutStatus !== "REVERSED",
          );
          if (!stands) this.s.useHolders.get(r.code)?.delete(r.referredUserId);
        }
        // Budget and reward slot: both are derived from the standing referrals.
      },
    };
  }

  updatePayoutStatus(ids: readonly string[], to: "PENDING" | "PAID" | "FAILED", now: number): Prediction<ReferralView[]> {
    const allowed: Record<PayoutStatus, PayoutStatus[]> = { PENDING: ["PAID", "FAILED"], FAILED: ["PENDING", "PAID"], PAID: [], REVERSED: [] };
    for (const id of ids) {
      const r = this.s.referrals.get(id);
      if (r === undefined) return fail("REFERRAL_NOT_FOUND");
      // proto UpdatePayoutStatus: a reward in a payout of CreatePayouts is moved by that payout only.
      if (r.payoutId !== null) return fail("REFERRAL_IN_PAYOUT");
      if (!allowed[r.payoutStatus].includes(to)) return fail("INVALID_PAYOUT_TRANSITION");
      // A payout attempt (PAID or FAILED) before payable_at fails NOT_YET_PAYABLE.
      if (to !== "PENDING" && r.payableAt > now) return fail("NOT_YET_PAYABLE");
    }
    const next = ids.map((id) => ({ ...this.s.referrals.get(id)!, payoutStatus: to }));
    return {
      ok: true,
      value: next.map((r) => this.referralView(r)),
      apply: () => {
        for (const r of next) this.s.referrals.set(r.id, r);
      },
    };
  }

  // ---------------------------------------------------------------- payouts (proto: SetPayoutAccount ... MarkPayoutFailed)

  setPayoutAccount(userId: string): Prediction<{ userId: string; provider: "MANUAL"; accountRef: string }> {
    return { ok: true, value: { userId, provider: "MANUAL", accountRef: "manual transfer" }, apply: () => void this.s.accounts.add(userId) };
  }

  /**
   * proto CreatePayouts: per referrer, every payable reward of the currency
   * (hold passed, PENDING or FAILED, in no open payout) less the clawbacks not
   * yet recovered; skipped without an account or below the minimum (or not
   * positive); REQUIRES_REVIEW above the maximum; a manual payout waits in
   * PROCESSING. Payouts come back by referrer.
   */
  createPayouts(currency: string, programKey: string, requestId: string, now: number): Prediction<PayoutRunView, { payoutIds: string[] }> {
    const program = this.s.programs.get(programKey);
    if (program === undefined) return fail("PROGRAM_NOT_FOUND");
    const earlier = this.s.runs.get(requestId);
    if (earlier !== undefined) {
      if (earlier.currency !== currency || earlier.programKey !== programKey) return fail("IDEMPOTENCY_KEY_REUSED");
      const value = { payouts: earlier.payoutIds.map((id) => this.payoutView(id)!), skippedWithoutAccount: earlier.skippedWithoutAccount, skippedBelowMinimum: earlier.skippedBelowMinimum };
      return { ok: true, value, apply: () => {} };
    }
    const byReferrer = new Map<string, { rewards: bigint; clawbacks: bigint; ids: string[]; recovered: string[] }>();
    for (const id of this.s.referralOrder) {
      const r = this.s.referrals.get(id)!;
      if (r.programKey !== programKey || r.currency !== currency || r.amountEarnedMinor <= 0n) continue;
      const payable = (r.payoutStatus === "PENDING" || r.payoutStatus === "FAILED") && r.payoutId === null && r.payableAt <= now;
      const recoverable = r.clawback && r.recoveredBy === null;
      if (!payable && !recoverable) continue;
      const group = byReferrer.get(r.referrerUserId) ?? { rewards: 0n, clawbacks: 0n, ids: [], recovered: [] };
      if (payable) {
        group.rewards += r.amountEarnedMinor;
        group.ids.push(id);
      } else {
        group.clawbacks += r.amountEarnedMinor;
        group.recovered.push(id);
      }
      byReferrer.set(r.referrerUserId, group);
    }
    let skippedWithoutAccount = 0;
    let skippedBelowMinimum = 0;
    const made: { record: PayoutRecord; ids: string[]; recovered: string[] }[] = [];
    for (const referrer of [...byReferrer.keys()].sort()) {
      const g = byReferrer.get(referrer)!;
      const net = g.rewards - g.clawbacks;
      if (!this.s.accounts.has(referrer)) skippedWithoutAccount += 1;
      else if (net <= 0n || net < program.minPayoutMinor) skippedBelowMinimum += 1;
      else {
        made.push({
          record: {
            id: MADE_BY_SERVICE,
            referrerUserId: referrer,
            currency,
            programKey,
            rewardsMinor: g.rewards,
            clawbacksMinor: g.clawbacks,
            referralCount: g.ids.length + g.recovered.length,
            state: program.maxPayoutMinor !== null && net > program.maxPayoutMinor ? "REQUIRES_REVIEW" : "PROCESSING",
            providerReference: "",
            failureReason: "",
          },
          ids: g.ids,
          recovered: g.recovered,
        });
      }
    }
    const preview = (record: PayoutRecord) => new ReferenceModel({ ...this.s, payouts: new Map([[record.id, record]]) }).payoutView(record.id)!;
    return {
      ok: true,
      value: { payouts: made.map((m) => preview(m.record)), skippedWithoutAccount, skippedBelowMinimum },
      apply: ({ payoutIds }) => {
        if (payoutIds.length !== made.length) throw new Error(`expected ${made.length} payout ids, got ${payoutIds.length}`);
        made.forEach((m, i) => {
          const id = payoutIds[i]!;
          this.s.payouts.set(id, { ...m.record, id });
          this.s.payoutOrder.push(id);
          for (const r of m.ids) this.s.referrals.set(r, { ...this.s.referrals.get(r)!, payoutId: id });
          for (const r of m.recovered) this.s.referrals.set(r, { ...this.s.referrals.get(r)!, recoveredBy: id });
        });
        this.s.runs.set(requestId, { currency, programKey, payoutIds, skippedWithoutAccount, skippedBelowMinimum });
      },
    };
  }

  /** A payout moved from one of `from` to `to`, with what happens to its rewards; INVALID_PAYOUT_STATE from any other state. */
  private movePayout(id: string, from: PayoutState[], to: PayoutState, change: { reference?: string; reason?: string }): Prediction<PayoutView> {
    const p = this.s.payouts.get(id);
    if (p === undefined) return fail("PAYOUT_NOT_FOUND");
    if (!from.includes(p.state)) return fail("INVALID_PAYOUT_STATE");
    const next: PayoutRecord = { ...p, state: to, providerReference: change.reference ?? p.providerReference, failureReason: change.reason ?? p.failureReason };
    const preview = new ReferenceModel({ ...this.s, payouts: new Map([[id, next]]) }).payoutView(id)!;
    return {
      ok: true,
      value: preview,
      apply: () => {
        this.s.payouts.set(id, next);
        for (const [rid, r] of this.s.referrals) {
          if (to === "PAID" && r.payoutId === id) {
            // Paid with the payout; one reversed meanwhile was paid all the same: a clawback.
            this.s.referrals.set(rid, r.payoutStatus === "REVERSED" ? { ...r, clawback: true } : { ...r, payoutStatus: "PAID" });
          }
          if (to === "FAILED" || to === "CANCELED") {
            let n = r;
            if (r.payoutId === id) n = { ...n, payoutId: null, payoutStatus: to === "FAILED" && r.payoutStatus !== "REVERSED" ? "FAILED" : r.payoutStatus };
            if (r.recoveredBy === id) n = { ...n, recoveredBy: null };
            if (n !== r) this.s.referrals.set(rid, n);
          }
        }
      },
    };
  }

  approvePayout(id: string): Prediction<PayoutView> {
    return this.movePayout(id, ["REQUIRES_REVIEW"], "PROCESSING", {});
  }

  cancelPayout(id: string): Prediction<PayoutView> {
    return this.movePayout(id, ["REQUIRES_REVIEW", "PENDING"], "CANCELED", {});
  }

  markPayoutPaid(id: string, reference: string): Prediction<PayoutView> {
    return this.movePayout(id, ["PROCESSING"], "PAID", { reference });
  }

  markPayoutFailed(id: string, reason: string): Prediction<PayoutView> {
    return this.movePayout(id, ["PROCESSING"], "FAILED", { reason });
  }
}
