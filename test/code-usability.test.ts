import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidateCodeResponse_Reason as Reason } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { createProgram } from "./support/fixtures.ts";
import { nextId } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

/**
 * ValidateCode and TrackReferral decide "can this user use this code now" by
 * one rule. Differential test: random states (programs of both recurrences,
 * with and without self-referral, a conversion window, a cap, an inactive
 * program; codes with small max_uses, suspended, inactive and expired ones;
 * real conversions and refunds), then every (code, user) pair asked both ways.
 */
const USABILITY_REASONS = new Set([
  "PROGRAM_INACTIVE",
  "CODE_INACTIVE",
  "CODE_SUSPENDED",
  "CODE_EXPIRED",
  "SELF_REFERRAL",
  "ALREADY_REFERRED",
  "ALREADY_CONVERTED",
  "CONVERSION_WINDOW_CLOSED",
  "CODE_EXHAUSTED",
]);
const DAY = TestClock.DAY;
const SEEDS = [1, 2, 3];

const clock = new TestClock(new Date(Date.now() + 3600_000));
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

/** mulberry32: a small seeded generator, so a failing state can be rebuilt from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });

type Setup = { codes: string[]; users: string[] };

/** One random state; returns its codes and the users (referred users and the referrers themselves). */
async function buildState(seed: number): Promise<Setup> {
  const rand = random(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)]!;
  const referrers = [nextId("ref"), nextId("ref")];
  const users = [...Array.from({ length: 6 }, () => nextId("user")), ...referrers];
  const programs = [
    { recurrence: Recurrence.ONE_TIME },
    { recurrence: Recurrence.ONE_TIME, allowSelfReferral: true },
    { recurrence: Recurrence.RECURRING },
    { recurrence: Recurrence.RECURRING, allowSelfReferral: true, conversionWindowDays: 1 },
    { recurrence: Recurrence.RECURRING, maxRewardsPerReferrer: 2, reversalFreesUse: false },
    { recurrence: Recurrence.RECURRING, rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 1000 },
  ];
  const codes: string[] = [];
  const inactiveProgram = pick(programs.map((_, i) => i));
  const created: { key: string; index: number }[] = [];
  for (const [index, settings] of programs.entries()) {
    const program = await createProgram(t, { ...settings, maxCodesPerUser: 10 });
    created.push({ key: program.programKey, index });
    for (const referrer of referrers) {
      for (let i = 0; i < 2; i++) {
        const maxUses = pick([1, 1, 2, 2, 3, undefined]);
        const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: referrer, maxUses });
        codes.push(code!.code);
      }
    }
  }
  // Real conversions and refunds; many are refused, which is part of the state.
  const recorded: string[] = [];
  for (let i = 0; i < 60; i++) {
    const code = pick(codes);
    try {
      const { referral } = await t.grpc.trackReferral({ code, referredUserId: pick(users), transactionId: nextId("t"), transactionAmountMinor: 5000n });
      recorded.push(referral!.id);
    } catch {
      // refused: CODE_EXHAUSTED, ALREADY_REFERRED, ...
    }
    if (recorded.length > 0 && rand() < 0.25) {
      const id = recorded.splice(Math.floor(rand() * recorded.length), 1)[0]!;
      await t.grpc.reverseReferral({ id, reason: "refund" });
    }
  }
  // Codes made unusable, and an inactive program.
  const [suspended, inactive, expired] = [pick(codes), pick(codes), pick(codes)];
  await t.grpc.updateCode({ code: { code: suspended, status: CodeStatus.SUSPENDED }, updateMask: mask("status") });
  await t.grpc.updateCode({ code: { code: inactive, status: CodeStatus.INACTIVE }, updateMask: mask("status") });
  await t.grpc.updateCode({ code: { code: expired, expiresAt: timestampFromDate(new Date(clock.now().getTime() + DAY)) }, updateMask: mask("expires_at") });
  await t.grpc.updateProgram({ program: { programKey: created[inactiveProgram]!.key, active: false }, updateMask: mask("active") });
  // Two days on: the expiring code has expired and the one-day window closed.
  clock.advance(2 * DAY);
  return { codes, users };
}

describe("ValidateCode and TrackReferral(validate_only) agree", () => {
  it.each(SEEDS)("on every (code, user) pair of random state %i", async (seed) => {
    const { codes, users } = await buildState(seed);
    const disagreements: string[] = [];
    const seen = new Map<string, number>();
    for (const code of codes) {
      const plain = await t.grpc.validateCode({ code });
      for (const user of users) {
        const validated = await t.grpc.validateCode({ code, referredUserId: user });
        const request = { code, referredUserId: user, transactionId: nextId("t"), transactionAmountMinor: 5000n, validateOnly: true };
        const dryRun = await t.grpc.trackReferral(request).then(
          () => "ok",
          async (error: unknown) => (await callError(Promise.reject(error))).info?.reason ?? "unknown",
        );
        const validateVerdict = validated.valid ? "ok" : Reason[validated.reason];
        // TrackReferral's own later rules (cap, budget) are not ValidateCode's: there ValidateCode says valid.
        const expected = USABILITY_REASONS.has(dryRun) ? dryRun : dryRun === "REWARD_LIMIT_REACHED" ? "ok" : dryRun;
        seen.set(dryRun, (seen.get(dryRun) ?? 0) + 1);
        if (validateVerdict !== expected) disagreements.push(`${code} / ${user}: ValidateCode ${validateVerdict}, TrackReferral ${dryRun}`);
        // Asking about a user never makes a code more usable than asking about anyone,
        // except for a user who holds one of its uses.
        if (!plain.valid && plain.reason !== Reason.CODE_EXHAUSTED && validated.valid) disagreements.push(`${code} / ${user}: valid for the user only`);
      }
    }
    expect(disagreements).toEqual([]);
    // The states reach the rules this test is about.
    for (const reason of ["ok", "CODE_EXHAUSTED", "ALREADY_REFERRED", "ALREADY_CONVERTED", "SELF_REFERRAL", "PROGRAM_INACTIVE"]) {
      expect(seen.get(reason) ?? 0, `pairs answered ${reason}`).toBeGreaterThan(0);
    }
  });
});
