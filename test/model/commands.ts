/**
 * Commands of the model-based test: what fast-check generates (plain data
 * with indices into what exists when the command runs), how a command is
 * resolved into a concrete call, what the model predicts for it, and the
 * serial runner that compares the two after every command.
 */
import fc from "fast-check";
import {
  type Actual,
  type Api,
  call,
  type Concrete,
  difference,
  earningsViewOf,
  type ModelClock,
  PAYOUT_FAILURE,
  PAYOUT_REFERENCE,
  payoutViewOf,
  programViewOf,
  codeViewOf,
  show,
} from "./system.ts";
import {
  DAY_MS,
  type Prediction,
  type ProgramChanges,
  type ProgramInput,
  type Recurrence,
  type RefereeRewardInput,
  ReferenceModel,
  type RewardKind,
  type StoredCodeStatus,
  type Tier,
  type TrackRequest,
} from "./reference-model.ts";

// ---------------------------------------------------------------- generated data

type TierGen = { min: number; amount: bigint; bp: number };
type ProgramGen = {
  kind: RewardKind;
  amount: bigint;
  bp: number;
  tiers: TierGen[];
  currency: "USD" | "EUR";
  recurrence: Recurrence;
  window: number | null;
  maxRewards: number | null;
  maxCodes: number;
  prefix: string;
  codeLength: number;
  defaultMaxUses: number | null;
  allowSelf: boolean;
  budget: bigint | null;
  holdDays: number;
  reversalFreesUse: boolean | null;
  referee: RefereeGen | null;
  minPayout: bigint;
  /** Below minPayout: INVALID_ARGUMENT. */
  maxPayout: bigint | null;
};
/** A referee reward; `max` on a FIXED one is invalid (INVALID_ARGUMENT). */
type RefereeGen = { kind: RewardKind; amount: bigint; bp: number; max: bigint | null; coupon: string };
type ProgramChangeGen =
  | { active: boolean }
  | { budget: null | { absolute: bigint } | { aboveStanding: bigint } }
  | { tiers: TierGen[] }
  | { holdDays: number }
  | { maxRewards: number | null }
  | { reversalFreesUse: boolean }
  | { referee: RefereeGen | null };
/** How a code is spelled in a request: as stored, lower-case, or padded with spaces. */
type Spelling = 0 | 1 | 2;
type Occurred =
  | { base: "unset" }
  | { base: "now"; offset: number }
  | { base: "created"; offset: number }
  | { base: "expires"; offset: number };
type TxnGen = "none" | "fresh" | { replay: number; change: null | "amount" | "user" | "currency" | "code" | "spelling" };

export type Cmd =
  | { kind: "createProgram"; program: ProgramGen; duplicateOf: number | null }
  | { kind: "updateProgram"; program: number; change: ProgramChangeGen }
  | {
      kind: "createCode";
      program: number | "unknown";
      user: number;
      vanity: "none" | "fresh" | { reuse: number };
      maxUses: number | null;
      /** Offset from now; null: no expiry. */
      expires: number | null;
      requestId: "none" | "fresh" | { replay: number };
    }
  | { kind: "updateCode"; code: number; status: StoredCodeStatus | null; maxUses: null | { unlimited: true } | { relative: number } }
  | { kind: "validateCode"; code: number | "unknown"; user: number | null; spelling: Spelling; amount: bigint | null }
  | {
      kind: "track";
      code: number | "unknown";
      user: number;
      txn: TxnGen;
      amount: bigint | null;
      currency: "" | "program" | "other";
      occurred: Occurred;
      validateOnly: boolean;
      spelling: Spelling;
    }
  | { kind: "reverse"; referral: number | "unknown" }
  | { kind: "payout"; referrals: number[]; unknown: boolean; to: "PENDING" | "PAID" | "FAILED" }
  | { kind: "advance"; ms: number }
  | { kind: "payoutAccount"; user: number }
  /** `replay`: the request_id of an earlier run (same program: its answer again; another: IDEMPOTENCY_KEY_REUSED). */
  | { kind: "createPayouts"; program: number; replay: number | null }
  | { kind: "settlePayout"; payout: number; action: "approve" | "cancel" | "paid" | "failed" };

const USERS = 4;

/** `arbitrary`, or null once in `1 + valueWeight / nullWeight` draws. */
const maybe = <T>(arbitrary: fc.Arbitrary<T>, nullWeight: number, valueWeight: number): fc.Arbitrary<T | null> =>
  fc.oneof({ arbitrary: fc.constant(null), weight: nullWeight }, { arbitrary, weight: valueWeight });

const tierGen = fc.record({ min: fc.integer({ min: 1, max: 3 }), amount: fc.bigInt({ min: 0n, max: 3000n }), bp: fc.integer({ min: 1, max: 10_000 }) });
const tiersGen = fc.uniqueArray(tierGen, { selector: (t) => t.min, maxLength: 3 });
const basisPoints = fc.oneof(fc.constantFrom(1, 125, 2500, 3333, 5000, 7500, 10_000), fc.integer({ min: 1, max: 10_000 }));

const refereeGen: fc.Arbitrary<RefereeGen> = fc.record({
  kind: fc.constantFrom<RewardKind>("FIXED", "PERCENTAGE"),
  amount: fc.oneof(fc.constantFrom(1n, 500n), fc.bigInt({ min: 1n, max: 2000n })),
  bp: basisPoints,
  max: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.constantFrom(1n, 50n, 300n, 1000n), weight: 2 }),
  coupon: fc.constantFrom("", "", "coupon_10off", "STRIPE-COUPON-1"),
});

const programGen: fc.Arbitrary<ProgramGen> = fc.record({
  kind: fc.constantFrom<RewardKind>("FIXED", "PERCENTAGE"),
  amount: fc.oneof(fc.constantFrom(1n, 100n, 1500n), fc.bigInt({ min: 1n, max: 3000n })),
  bp: basisPoints,
  tiers: fc.oneof({ arbitrary: fc.constant<TierGen[]>([]), weight: 1 }, { arbitrary: tiersGen, weight: 1 }),
  currency: fc.constantFrom("USD", "EUR"),
  recurrence: fc.constantFrom<Recurrence>("ONE_TIME", "RECURRING"),
  window: maybe(fc.integer({ min: 1, max: 5 }), 1, 2),
  maxRewards: maybe(fc.integer({ min: 1, max: 3 }), 1, 1),
  maxCodes: fc.constantFrom(0, 1, 2, 3),
  prefix: fc.constantFrom("", "", "mx", "AB12"),
  codeLength: fc.constantFrom(0, 6, 8),
  defaultMaxUses: maybe(fc.integer({ min: 1, max: 3 }), 2, 1),
  allowSelf: fc.boolean(),
  budget: maybe(fc.oneof({ arbitrary: fc.constant(0n), weight: 1 }, { arbitrary: fc.bigInt({ min: 1n, max: 8000n }), weight: 4 }), 2, 1),
  holdDays: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.integer({ min: 1, max: 14 }), weight: 1 }),
  reversalFreesUse: fc.constantFrom(null, true, false),
  referee: maybe(refereeGen, 1, 1),
  minPayout: fc.constantFrom(0n, 0n, 0n, 150n, 1000n),
  maxPayout: maybe(fc.constantFrom(100n, 500n, 3000n), 2, 1),
});

const programChangeGen: fc.Arbitrary<ProgramChangeGen> = fc.oneof(
  { arbitrary: fc.record({ active: fc.boolean() }), weight: 3 },
  {
    arbitrary: fc.record({
      budget: fc.oneof(
        fc.constant(null),
        fc.record({ absolute: fc.bigInt({ min: 0n, max: 6000n }) }),
        fc.record({ aboveStanding: fc.constantFrom(-1n, 0n, 1n, 100n, 2000n) }),
      ),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ tiers: tiersGen }), weight: 2 },
  { arbitrary: fc.record({ holdDays: fc.integer({ min: 0, max: 10 }) }), weight: 1 },
  { arbitrary: fc.record({ maxRewards: maybe(fc.integer({ min: 1, max: 4 }), 1, 2) }), weight: 1 },
  { arbitrary: fc.record({ reversalFreesUse: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ referee: maybe(refereeGen, 1, 2) }), weight: 1 },
);

const index = fc.nat({ max: 1000 });
const spelling = fc.constantFrom<Spelling>(0, 0, 1, 2);
const amountGen = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 3n, 5n, 6n, 10n, 50n, 150n, 250n, 4900n, 12_345n),
  fc.bigInt({ min: 0n, max: 200_000n }),
);
const occurredGen: fc.Arbitrary<Occurred> = fc.oneof(
  { arbitrary: fc.constant({ base: "unset" as const }), weight: 10 },
  {
    arbitrary: fc.record({
      base: fc.constant("now" as const),
      offset: fc.constantFrom(0, -60_000, -DAY_MS, -5 * DAY_MS, -29 * DAY_MS, -30 * DAY_MS, -30 * DAY_MS - 1, -31 * DAY_MS, 30_000, 60_000, 60_001, 120_000),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ base: fc.constant("created" as const), offset: fc.constantFrom(-1, 0, 1, 1000) }), weight: 1 },
  { arbitrary: fc.record({ base: fc.constant("expires" as const), offset: fc.constantFrom(-1, 0, 1) }), weight: 1 },
);
const txnGen: fc.Arbitrary<TxnGen> = fc.oneof(
  { arbitrary: fc.constant("fresh" as const), weight: 6 },
  { arbitrary: fc.constant("none" as const), weight: 1 },
  {
    arbitrary: fc.record({ replay: index, change: fc.constantFrom(null, null, "amount" as const, "user" as const, "currency" as const, "code" as const, "spelling" as const) }),
    weight: 3,
  },
);

export const programCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("createProgram" as const),
  program: programGen,
  duplicateOf: fc.oneof({ arbitrary: fc.constant(null), weight: 12 }, { arbitrary: index, weight: 1 }),
});

export const codeCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("createCode" as const),
  program: fc.oneof({ arbitrary: index, weight: 20 }, { arbitrary: fc.constant("unknown" as const), weight: 1 }),
  user: fc.nat({ max: USERS - 1 }),
  vanity: fc.oneof({ arbitrary: fc.constant("none" as const), weight: 4 }, { arbitrary: fc.constant("fresh" as const), weight: 2 }, { arbitrary: fc.record({ reuse: index }), weight: 1 }),
  maxUses: maybe(fc.integer({ min: 1, max: 3 }), 2, 1),
  expires: fc.oneof(
    { arbitrary: fc.constant(null), weight: 6 },
    { arbitrary: fc.constantFrom(3600_000, DAY_MS, 3 * DAY_MS, 10 * DAY_MS, 40 * DAY_MS), weight: 5 },
    { arbitrary: fc.constantFrom(0, -1000), weight: 1 },
  ),
  requestId: fc.oneof({ arbitrary: fc.constant("none" as const), weight: 4 }, { arbitrary: fc.constant("fresh" as const), weight: 2 }, { arbitrary: fc.record({ replay: index }), weight: 1 }),
});

export const trackCmdGen = (options: { validateOnly: boolean; occurred: boolean }): fc.Arbitrary<Cmd> =>
  fc.record({
    kind: fc.constant("track" as const),
    code: fc.oneof({ arbitrary: index, weight: 30 }, { arbitrary: fc.constant("unknown" as const), weight: 1 }),
    user: fc.nat({ max: USERS - 1 }),
    txn: txnGen,
    amount: maybe(amountGen, 1, 10),
    currency: fc.constantFrom("" as const, "" as const, "" as const, "" as const, "" as const, "program" as const, "program" as const, "other" as const),
    // Without random times: the call's own time, sent explicitly (the concurrent variant must know converted_at).
    occurred: options.occurred ? occurredGen : fc.constant({ base: "now" as const, offset: 0 }),
    validateOnly: options.validateOnly ? fc.constantFrom(false, false, false, false, true) : fc.constant(false),
    spelling,
  });

export const validateCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("validateCode" as const),
  code: fc.oneof({ arbitrary: index, weight: 20 }, { arbitrary: fc.constant("unknown" as const), weight: 1 }),
  user: maybe(fc.nat({ max: USERS - 1 }), 1, 3),
  spelling,
  amount: maybe(amountGen, 1, 1),
});

export const updateCodeCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("updateCode" as const),
  code: index,
  status: maybe(fc.constantFrom<StoredCodeStatus>("ACTIVE", "ACTIVE", "INACTIVE", "SUSPENDED"), 1, 2),
  maxUses: fc.oneof(fc.constant(null), fc.constant({ unlimited: true as const }), fc.record({ relative: fc.integer({ min: -2, max: 2 }) })),
});

export const updateProgramCmdGen: fc.Arbitrary<Cmd> = fc.record({ kind: fc.constant("updateProgram" as const), program: index, change: programChangeGen });

export const reverseCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("reverse" as const),
  referral: fc.oneof({ arbitrary: index, weight: 20 }, { arbitrary: fc.constant("unknown" as const), weight: 1 }),
});

export const payoutCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("payout" as const),
  referrals: fc.array(index, { minLength: 1, maxLength: 2 }),
  unknown: fc.constantFrom(false, false, false, false, false, false, false, true),
  to: fc.constantFrom("PENDING" as const, "PAID" as const, "PAID" as const, "FAILED" as const),
});

export const payoutAccountCmdGen: fc.Arbitrary<Cmd> = fc.record({ kind: fc.constant("payoutAccount" as const), user: fc.nat({ max: USERS - 1 }) });

export const createPayoutsCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("createPayouts" as const),
  program: index,
  replay: maybe(index, 4, 1),
});

export const settlePayoutCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("settlePayout" as const),
  payout: index,
  action: fc.constantFrom("approve" as const, "cancel" as const, "paid" as const, "paid" as const, "failed" as const),
});

export const advanceCmdGen: fc.Arbitrary<Cmd> = fc.record({
  kind: fc.constant("advance" as const),
  ms: fc.constantFrom(1000, 60_000, 3600_000, DAY_MS, 2 * DAY_MS, 7 * DAY_MS, 15 * DAY_MS, 31 * DAY_MS),
});

// ---------------------------------------------------------------- one sequence's context

let sequences = 0;
const runTag = Math.random().toString(36).slice(2, 6);

/** What one sequence owns on the real side: its unique names, its users, what it sent. */
export class SequenceContext {
  readonly tag: string;
  readonly users: string[];
  private programs = 0;
  private vanities = 0;
  private transactions = 0;
  private requests = 0;
  /** Every TrackReferral request sent, for replays. */
  readonly tracks: TrackRequest[] = [];
  /** Every CreatePayouts request_id, for replays. */
  readonly payoutRuns: string[] = [];
  /** Every CreateCode request that carried a request_id, for replays. */
  readonly codeRequests: Extract<Concrete, { rpc: "CreateCode" }>["request"][] = [];
  /** What ran so far, concrete, for failure reports. */
  readonly log: string[] = [];
  commandsRun = 0;

  readonly api: Api;
  readonly clock: ModelClock | null;

  constructor(api: Api, clock: ModelClock | null) {
    this.api = api;
    this.clock = clock;
    sequences += 1;
    this.tag = `${runTag}${sequences.toString(36)}`;
    this.users = Array.from({ length: USERS }, (_, i) => `${this.tag}-u${i}`);
  }

  now(): number {
    return this.clock === null ? Date.now() : this.clock.now().getTime();
  }
  nextProgramKey(): string {
    return `m-${this.tag}-p${++this.programs}`;
  }
  nextVanity(): string {
    return `v${this.tag}-${++this.vanities}`;
  }
  nextTransaction(): string {
    return `txn-${++this.transactions}`;
  }
  nextRequestId(): string {
    return `req-${this.tag}-${++this.requests}`;
  }
}

// ---------------------------------------------------------------- resolution: generated data -> a concrete call

const pick = <T>(items: readonly T[], i: number): T | undefined => (items.length === 0 ? undefined : items[i % items.length]);

function spell(code: string, s: Spelling): string {
  return s === 0 ? code : s === 1 ? code.toLowerCase() : `  ${code.toLowerCase()} `;
}

/** FIXED carries an amount, PERCENTAGE basis points; a cap stays as generated (invalid on FIXED). */
function refereeOf(g: RefereeGen | null): RefereeRewardInput | null {
  if (g === null) return null;
  return {
    kind: g.kind,
    amountMinor: g.kind === "FIXED" ? g.amount : 0n,
    basisPoints: g.kind === "FIXED" ? 0 : g.bp,
    maxAmountMinor: g.max,
    externalCouponId: g.coupon,
  };
}

function tiersOf(kind: RewardKind, tiers: TierGen[]): Tier[] {
  return tiers.map((t) => ({
    minPriorRewards: t.min,
    rewardAmountMinor: kind === "FIXED" ? t.amount : 0n,
    rewardBasisPoints: kind === "FIXED" ? 0 : t.bp,
  }));
}

/** Whether the command has what it refers to (else fast-check skips it). */
export function canRun(cmd: Cmd, m: ReferenceModel, hasClock: boolean): boolean {
  switch (cmd.kind) {
    case "createProgram":
      return true;
    case "updateProgram":
      return m.programKeys().length > 0;
    case "createCode":
      return cmd.program === "unknown" || m.programKeys().length > 0;
    case "updateCode":
      return m.codeTexts().length > 0;
    case "validateCode":
    case "track":
      return cmd.code === "unknown" || m.codeTexts().length > 0;
    case "reverse":
      return cmd.referral === "unknown" || m.referralIds().length > 0;
    case "payout":
      return m.referralIds().length > 0;
    case "advance":
      return hasClock;
    case "payoutAccount":
      return true;
    case "createPayouts":
      return m.programKeys().length > 0;
    case "settlePayout":
      return m.payoutIds().length > 0;
  }
}

const UNKNOWN_REFERRAL = "00000000-0000-4000-8000-000000000000";

export function resolve(cmd: Cmd, m: ReferenceModel, ctx: SequenceContext, now: number): Concrete {
  switch (cmd.kind) {
    case "createProgram": {
      const g = cmd.program;
      const duplicate = cmd.duplicateOf === null ? undefined : pick(m.programKeys(), cmd.duplicateOf);
      const key = duplicate ?? ctx.nextProgramKey();
      const input: ProgramInput = {
        key,
        name: `Model ${key}${duplicate === undefined ? "" : " again"}`,
        rewardKind: g.kind,
        rewardAmountMinor: g.kind === "FIXED" ? g.amount : 0n,
        rewardBasisPoints: g.kind === "FIXED" ? 0 : g.bp,
        tiers: tiersOf(g.kind, g.tiers),
        currency: g.currency,
        recurrence: g.recurrence,
        conversionWindowDays: g.recurrence === "RECURRING" ? g.window : null,
        maxRewardsPerReferrer: g.maxRewards,
        maxCodesPerUser: g.maxCodes,
        codePrefix: g.prefix,
        codeLength: g.codeLength,
        defaultCodeMaxUses: g.defaultMaxUses,
        allowSelfReferral: g.allowSelf,
        budgetMinor: g.budget,
        holdDays: g.holdDays,
        reversalFreesUse: g.reversalFreesUse,
        refereeReward: refereeOf(g.referee),
        minPayoutMinor: g.minPayout,
        maxPayoutMinor: g.maxPayout,
      };
      return { rpc: "CreateProgram", input };
    }
    case "updateProgram": {
      const key = pick(m.programKeys(), cmd.program)!;
      const ch = cmd.change;
      const changes: ProgramChanges = {};
      if ("active" in ch) changes.active = ch.active;
      if ("budget" in ch) {
        const b = ch.budget;
        changes.budgetMinor = b === null ? null : "absolute" in b ? b.absolute : m.standingRewards(key) + b.aboveStanding;
        if (changes.budgetMinor !== null && changes.budgetMinor < 0n) changes.budgetMinor = 0n;
      }
      if ("tiers" in ch) changes.tiers = tiersOf(m.programRule(key)!.rewardKind, ch.tiers);
      if ("holdDays" in ch) changes.holdDays = ch.holdDays;
      if ("maxRewards" in ch) changes.maxRewardsPerReferrer = ch.maxRewards;
      if ("reversalFreesUse" in ch) changes.reversalFreesUse = ch.reversalFreesUse;
      if ("referee" in ch) changes.refereeReward = refereeOf(ch.referee);
      return { rpc: "UpdateProgram", key, changes };
    }
    case "createCode": {
      if (typeof cmd.requestId === "object" && ctx.codeRequests.length > 0) {
        return { rpc: "CreateCode", request: pick(ctx.codeRequests, cmd.requestId.replay)! };
      }
      // An unknown program, or none yet (every program of the sequence was refused).
      const programKey = (cmd.program === "unknown" ? undefined : pick(m.programKeys(), cmd.program)) ?? `m-${ctx.tag}-missing`;
      let vanity: string | null = null;
      if (cmd.vanity === "fresh") vanity = ctx.nextVanity();
      else if (typeof cmd.vanity === "object") {
        const vanities = m.codeTexts().filter((c) => m.codeInfo(c)!.vanity);
        vanity = pick(vanities, cmd.vanity.reuse)?.toLowerCase() ?? ctx.nextVanity();
      }
      const request = {
        programKey,
        userId: ctx.users[cmd.user]!,
        vanity,
        maxUses: cmd.maxUses,
        expiresAt: cmd.expires === null ? null : now + cmd.expires,
        requestId: cmd.requestId === "none" ? null : ctx.nextRequestId(),
      };
      if (request.requestId !== null) ctx.codeRequests.push(request);
      return { rpc: "CreateCode", request };
    }
    case "updateCode": {
      const code = pick(m.codeTexts(), cmd.code)!;
      const changes: { status?: StoredCodeStatus; maxUses?: number | null } = {};
      if (cmd.status !== null) changes.status = cmd.status;
      if (cmd.maxUses !== null) {
        changes.maxUses = "unlimited" in cmd.maxUses ? null : Math.max(1, m.codeView(code, now)!.usesCount + cmd.maxUses.relative);
      }
      if (cmd.status === null && cmd.maxUses === null) changes.status = "ACTIVE";
      return { rpc: "UpdateCode", code, changes };
    }
    case "validateCode": {
      const code = cmd.code === "unknown" ? `NOPE${ctx.tag.toUpperCase()}` : spell(pick(m.codeTexts(), cmd.code)!, cmd.spelling);
      return { rpc: "ValidateCode", code, referredUserId: cmd.user === null ? null : ctx.users[cmd.user]!, transactionAmountMinor: cmd.amount };
    }
    case "track": {
      const request = resolveTrack(cmd, m, ctx, now);
      ctx.tracks.push(request);
      return { rpc: "TrackReferral", request };
    }
    case "reverse":
      return { rpc: "ReverseReferral", id: cmd.referral === "unknown" ? UNKNOWN_REFERRAL : pick(m.referralIds(), cmd.referral)! };
    case "payout": {
      const ids = [...new Set(cmd.referrals.map((i) => pick(m.referralIds(), i)!))];
      if (cmd.unknown) ids.push(UNKNOWN_REFERRAL);
      return { rpc: "UpdatePayoutStatus", ids, to: cmd.to };
    }
    case "advance":
      return { rpc: "AdvanceClock", ms: cmd.ms };
    case "payoutAccount":
      return { rpc: "SetPayoutAccount", userId: ctx.users[cmd.user]! };
    case "createPayouts": {
      const programKey = pick(m.programKeys(), cmd.program)!;
      const requestId = (cmd.replay === null ? undefined : pick(ctx.payoutRuns, cmd.replay)) ?? ctx.nextRequestId();
      if (!ctx.payoutRuns.includes(requestId)) ctx.payoutRuns.push(requestId);
      return { rpc: "CreatePayouts", currency: m.programRule(programKey)!.currency, programKey, requestId };
    }
    case "settlePayout": {
      const id = pick(m.payoutIds(), cmd.payout)!;
      const rpc = ({ approve: "ApprovePayout", cancel: "CancelPayout", paid: "MarkPayoutPaid", failed: "MarkPayoutFailed" } as const)[cmd.action];
      return { rpc, id };
    }
  }
}

function resolveTrack(cmd: Extract<Cmd, { kind: "track" }>, m: ReferenceModel, ctx: SequenceContext, now: number): TrackRequest {
  if (typeof cmd.txn === "object" && ctx.tracks.length > 0) {
    const earlier = pick(ctx.tracks, cmd.txn.replay)!;
    const again = { ...earlier };
    switch (cmd.txn.change) {
      case "amount":
        again.transactionAmountMinor = (earlier.transactionAmountMinor ?? 0n) + 1n;
        break;
      case "user":
        again.referredUserId = ctx.users[(ctx.users.indexOf(earlier.referredUserId) + 1) % USERS]!;
        break;
      case "currency": {
        const own = m.codeInfo(earlier.code);
        const programCurrency = own === null ? "USD" : m.programRule(own.programKey)!.currency;
        // "" and the program's own currency are the same content; another one is not.
        again.currency = earlier.currency === "" ? programCurrency : "";
        if (cmd.amount !== null && cmd.amount % 2n === 1n) again.currency = programCurrency === "USD" ? "EUR" : "USD";
        break;
      }
      case "code":
        again.code = pick(m.codeTexts(), cmd.code === "unknown" ? 0 : cmd.code) ?? earlier.code;
        break;
      case "spelling":
        again.code = spell(earlier.code.trim().toUpperCase(), ((cmd.spelling % 2) + 1) as Spelling);
        break;
      case null:
        break;
    }
    return again;
  }
  const codeText = cmd.code === "unknown" ? undefined : pick(m.codeTexts(), cmd.code);
  const info = codeText === undefined ? null : m.codeInfo(codeText);
  const programCurrency = info === null ? "USD" : m.programRule(info.programKey)!.currency;
  let occurredAt: number | null = null;
  const o = cmd.occurred;
  if (o.base === "now") occurredAt = now + o.offset;
  else if (o.base === "created") occurredAt = (info?.createdAt ?? now) + o.offset;
  else if (o.base === "expires") occurredAt = (info?.expiresAt ?? now) + o.offset;
  return {
    code: codeText === undefined ? `NOPE${ctx.tag.toUpperCase()}` : spell(codeText, cmd.spelling),
    referredUserId: ctx.users[cmd.user]!,
    transactionId: cmd.txn === "none" ? null : ctx.nextTransaction(),
    transactionAmountMinor: cmd.amount,
    currency: cmd.currency === "" ? "" : cmd.currency === "program" ? programCurrency : programCurrency === "USD" ? "EUR" : "USD",
    occurredAt,
    validateOnly: cmd.validateOnly,
  };
}

// ---------------------------------------------------------------- prediction

export function predict(m: ReferenceModel, c: Concrete, now: number): Prediction<unknown, never> {
  switch (c.rpc) {
    case "CreateProgram":
      return m.createProgram(c.input);
    case "UpdateProgram":
      return m.updateProgram(c.key, c.changes);
    case "CreateCode":
      return m.createCode(c.request, now) as Prediction<unknown, never>;
    case "UpdateCode":
      return m.updateCode(c.code, c.changes, now);
    case "ValidateCode":
      return { ok: true, value: m.validateCode(c.code, c.referredUserId, now, c.transactionAmountMinor), apply: () => {} };
    case "TrackReferral":
      return m.trackReferral(c.request, now) as Prediction<unknown, never>;
    case "ReverseReferral":
      return m.reverseReferral(c.id, now);
    case "UpdatePayoutStatus":
      return m.updatePayoutStatus(c.ids, c.to, now);
    case "AdvanceClock":
      return { ok: true, value: null, apply: () => {} };
    case "SetPayoutAccount":
      return m.setPayoutAccount(c.userId);
    case "CreatePayouts":
      return m.createPayouts(c.currency, c.programKey, c.requestId, now) as Prediction<unknown, never>;
    case "ApprovePayout":
      return m.approvePayout(c.id);
    case "CancelPayout":
      return m.cancelPayout(c.id);
    case "MarkPayoutPaid":
      return m.markPayoutPaid(c.id, PAYOUT_REFERENCE);
    case "MarkPayoutFailed":
      return m.markPayoutFailed(c.id, PAYOUT_FAILURE);
  }
}

/** Why the service's answer is not the model's, or null when it is. */
export function mismatch(expected: Prediction<unknown, never>, actual: Actual): string | null {
  if (!expected.ok && !actual.ok) {
    return expected.error.code === actual.error.code && expected.error.reason === actual.error.reason
      ? null
      : `expected ${expected.error.code}/${expected.error.reason}, got ${actual.error.code}/${actual.error.reason} (${actual.error.message})`;
  }
  if (!expected.ok && actual.ok) return `expected ${expected.error.code}/${expected.error.reason}, got success ${show(actual.value)}`;
  if (expected.ok && !actual.ok) return `expected success ${show(expected.value)}, got ${actual.error.code}/${actual.error.reason} (${actual.error.message})`;
  if (expected.ok && actual.ok) return difference(expected.value, actual.value);
  return null;
}

// ---------------------------------------------------------------- the serial runner

/** Full-state check after every N commands (and at the end of every sequence). */
const CHECK_EVERY = Number(process.env.MODEL_CHECK_EVERY ?? "3");

class ModelFailure extends Error {
  override name = "ModelFailure";
}

function fail(ctx: SequenceContext, what: string): never {
  throw new ModelFailure(`${what}\n  sequence ${ctx.tag}, concrete calls so far:\n    ${ctx.log.slice(-40).join("\n    ")}`);
}

/** How often each call ended how, over the whole run: shows what the random sequences reached. */
const outcomeCounts = new Map<string, number>();

/** Starts a new count (one per property). */
export function resetOutcomes(): void {
  outcomeCounts.clear();
}

export function outcomeReport(): string {
  return [...outcomeCounts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, n]) => `${k}=${n}`)
    .join(" ");
}

export function countOutcome(concrete: Concrete, actual: Actual): void {
  let key = `${concrete.rpc}:${actual.ok ? "ok" : actual.error.reason}`;
  if (!actual.ok && actual.error.reason === "INVALID_ARGUMENT") key += `(${actual.error.message.slice(0, 40)})`;
  if (concrete.rpc === "TrackReferral" && actual.ok) {
    const { replayed } = actual.value as { replayed: boolean };
    key += replayed ? ":replayed" : concrete.request.validateOnly ? ":dry" : "";
  }
  if (concrete.rpc === "ValidateCode" && actual.ok) key += `:${(actual.value as { reason: string }).reason}`;
  if (concrete.rpc === "CreatePayouts" && actual.ok) key += (actual.value as { payouts: unknown[] }).payouts.length > 0 ? ":paid" : ":none";
  outcomeCounts.set(key, (outcomeCounts.get(key) ?? 0) + 1);
}

/** Runs one command against the model and the service, and compares. */
export async function runCommand(cmd: Cmd, m: ReferenceModel, ctx: SequenceContext): Promise<void> {
  ctx.clock?.catchUp();
  const now = ctx.now();
  const concrete = resolve(cmd, m, ctx, now);
  const line = `${show(concrete)} @${new Date(now).toISOString()}`;
  if (concrete.rpc === "AdvanceClock") {
    ctx.clock!.advance(concrete.ms);
    ctx.log.push(`${line} -> ok`);
    return;
  }
  const expected = predict(m, concrete, now);
  const actual = await call(ctx.api, concrete);
  countOutcome(concrete, actual);
  ctx.log.push(`${line} -> ${actual.ok ? `ok ${show(actual.value)}` : `${actual.error.code}/${actual.error.reason}`}`);
  const why = mismatch(expected, actual);
  if (why !== null) fail(ctx, `${concrete.rpc} answered differently from the model: ${why}`);
  if (expected.ok && actual.ok) {
    try {
      expected.apply(actual.observed as never);
    } catch (error) {
      fail(ctx, `${concrete.rpc}: ${(error as Error).message}`);
    }
  }
  ctx.commandsRun += 1;
  if (ctx.commandsRun % CHECK_EVERY === 0) await checkState(m, ctx);
}

/**
 * Every program (rewards_granted_minor, budget, active...), every code
 * (uses_count, derived status) and every user's earnings, read through the
 * API, must equal the model's.
 */
export async function checkState(m: ReferenceModel, ctx: SequenceContext, api: Api = ctx.api): Promise<void> {
  const diff = compareState(m, ctx, await observeState(m, ctx, api), ctx.now());
  if (diff !== null) fail(ctx, `state differs from the model: ${diff}`);
}

export type ObservedState = { programs: Map<string, unknown>; codes: Map<string, unknown[]>; earnings: Map<string, unknown>; payouts: Map<string, unknown> };

export async function observeState(m: ReferenceModel, ctx: SequenceContext, api: Api): Promise<ObservedState> {
  const keys = m.programKeys();
  const [programs, codes, earnings, payouts] = await Promise.all([
    Promise.all(keys.map(async (key) => programViewOf((await api.getProgram({ programKey: key })).program))),
    Promise.all(keys.map(async (key) => (await api.listCodes({ programKey: key, pageSize: 1000 })).codes.map(codeViewOf))),
    Promise.all(ctx.users.map(async (userId) => (await api.getUserEarnings({ userId })).earnings.map(earningsViewOf))),
    // Every payout of the sequence's users, whether or not the model (taken before a concurrent batch) knows it yet.
    Promise.all(ctx.users.map(async (referrerUserId) => (await api.listPayouts({ referrerUserId, pageSize: 1000 })).payouts.map(payoutViewOf))),
  ]);
  return {
    programs: new Map(keys.map((k, i) => [k, programs[i]])),
    codes: new Map(keys.map((k, i) => [k, codes[i]!])),
    earnings: new Map(ctx.users.map((u, i) => [u, earnings[i]])),
    payouts: new Map(payouts.flat().map((payout) => [payout.id, payout])),
  };
}

export function compareState(m: ReferenceModel, ctx: SequenceContext, observed: ObservedState, now: number): string | null {
  for (const key of m.programKeys()) {
    const d = difference(m.programView(key), observed.programs.get(key), `program ${key}`);
    if (d !== null) return d;
    const expectedCodes = m
      .codeTexts()
      .map((c) => m.codeView(c, now)!)
      .filter((c) => c.programKey === key);
    const byCode = new Map((observed.codes.get(key) as { code: string }[]).map((c) => [c.code, c]));
    if (byCode.size !== expectedCodes.length) return `program ${key}: expected ${expectedCodes.length} codes, ListCodes has ${byCode.size}`;
    for (const c of expectedCodes) {
      const d2 = difference(c, byCode.get(c.code), `code ${c.code}`);
      if (d2 !== null) return d2;
    }
  }
  for (const user of ctx.users) {
    const d = difference(m.earnings(user, now), observed.earnings.get(user), `earnings of ${user}`);
    if (d !== null) return d;
  }
  if (observed.payouts.size !== m.payoutIds().length) return `expected ${m.payoutIds().length} payouts, ListPayouts has ${observed.payouts.size}`;
  for (const id of m.payoutIds()) {
    const d = difference(m.payoutView(id), observed.payouts.get(id), `payout ${id}`);
    if (d !== null) return d;
  }
  return null;
}

// ---------------------------------------------------------------- fast-check glue

export class ModelCommand implements fc.AsyncCommand<ReferenceModel, SequenceContext> {
  readonly cmd: Cmd;
  constructor(cmd: Cmd) {
    this.cmd = cmd;
  }
  check(m: Readonly<ReferenceModel>): boolean {
    return canRun(this.cmd, m as ReferenceModel, true);
  }
  async run(m: ReferenceModel, ctx: SequenceContext): Promise<void> {
    await runCommand(this.cmd, m, ctx);
  }
  toString(): string {
    const { kind, ...rest } = this.cmd;
    return `${kind}(${show(rest)})`;
  }
}
