import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodeStatus, PayoutStatus, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });
const reasonOf = async (call: Promise<unknown>) => (await callError(call)).info?.reason;

async function trackingCount(programKey: string): Promise<number> {
  return t.db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT count(*)::int AS count FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
    WHERE p.program_key = ${programKey}
  `);
}

describe("TrackReferral", () => {
  it("records a conversion with the referrer's reward, and counts one use", async () => {
    const { program, code } = await programWithCode(t, { holdDays: 14 });
    const { referral, replayed } = await track(t, code.code, { referredUserId: "new-user", transactionAmountMinor: 9900n, metadata: { order: "o-1" } });
    expect(replayed).toBe(false);
    expect(referral).toMatchObject({
      programKey: program.programKey,
      code: code.code,
      referrerUserId: "referrer",
      referredUserId: "new-user",
      transactionAmountMinor: 9900n,
      amountEarnedMinor: 1500n,
      currency: "USD",
      payoutStatus: PayoutStatus.PENDING,
      metadata: { order: "o-1" },
    });
    expect(referral?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(timestampDate(referral!.payableAt!).getTime() - timestampDate(referral!.convertedAt!).getTime()).toBe(14 * TestClock.DAY);
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
    expect((await t.grpc.getReferral({ id: referral!.id })).referral).toEqual(referral);
  });

  it("looks the code up ignoring case and spaces", async () => {
    const { code } = await programWithCode(t);
    const { referral } = await track(t, `  ${code.code.toLowerCase()} `);
    expect(referral?.code).toBe(code.code);
  });

  it("an unknown code is NOT_FOUND with CODE_NOT_FOUND", async () => {
    expect(await callError(track(t, "NO-SUCH-CODE-X"))).toMatchObject({ code: Code.NotFound, info: { reason: "CODE_NOT_FOUND" } });
  });

  it.each([
    ["PROGRAM_INACTIVE", async (programKey: string, _code: string) => t.grpc.updateProgram({ program: { programKey, active: false }, updateMask: mask("active") })],
    ["CODE_INACTIVE", async (_p: string, code: string) => t.grpc.updateCode({ code: { code, status: CodeStatus.INACTIVE }, updateMask: mask("status") })],
    ["CODE_SUSPENDED", async (_p: string, code: string) => t.grpc.updateCode({ code: { code, status: CodeStatus.SUSPENDED }, updateMask: mask("status") })],
    [
      "CODE_EXPIRED",
      async (_p: string, code: string) =>
        t.grpc.updateCode({ code: { code, expiresAt: timestampFromDate(new Date(clock.now().getTime() - 1000)) }, updateMask: mask("expires_at") }),
    ],
  ])("fails FAILED_PRECONDITION %s and writes nothing", async (reason, makeUnusable) => {
    const { program, code } = await programWithCode(t);
    await makeUnusable(program.programKey, code.code);
    expect(await callError(track(t, code.code))).toMatchObject({ code: Code.FailedPrecondition, info: { reason } });
    expect(await trackingCount(program.programKey)).toBe(0);
  });

  it("a code at max_uses is CODE_EXHAUSTED for a new referred user", async () => {
    const { code } = await programWithCode(t, { defaultCodeMaxUses: 1 });
    await track(t, code.code);
    expect(await reasonOf(track(t, code.code))).toBe("CODE_EXHAUSTED");
  });

  it("self-referral fails SELF_REFERRAL unless the program allows it", async () => {
    const { code } = await programWithCode(t, {}, "selfish");
    expect(await reasonOf(track(t, code.code, { referredUserId: "selfish" }))).toBe("SELF_REFERRAL");
    const allowed = await programWithCode(t, { allowSelfReferral: true }, "selfish");
    expect((await track(t, allowed.code.code, { referredUserId: "selfish" })).referral?.amountEarnedMinor).toBe(1500n);
  });

  it("the first referrer wins: another referrer's code fails ALREADY_REFERRED", async () => {
    const { program, code } = await programWithCode(t, { recurrence: Recurrence.RECURRING }, "first-referrer");
    const { code: other } = await t.grpc.createCode({ programKey: program.programKey, userId: "second-referrer" });
    await track(t, code.code, { referredUserId: "contested" });
    expect(await reasonOf(track(t, other!.code, { referredUserId: "contested" }))).toBe("ALREADY_REFERRED");
    // The same referrer's other code is fine in a RECURRING program.
    const { code: sameReferrer } = await t.grpc.createCode({ programKey: program.programKey, userId: "first-referrer" });
    expect((await track(t, sameReferrer!.code, { referredUserId: "contested" })).referral?.referrerUserId).toBe("first-referrer");
  });

  it("ONE_TIME rewards one conversion per referred user: a second fails ALREADY_CONVERTED", async () => {
    const { code } = await programWithCode(t);
    await track(t, code.code, { referredUserId: "once-buyer" });
    expect(await reasonOf(track(t, code.code, { referredUserId: "once-buyer" }))).toBe("ALREADY_CONVERTED");
  });

  it("RECURRING rewards every conversion inside the window, then CONVERSION_WINDOW_CLOSED; uses count users, not conversions", async () => {
    const { code } = await programWithCode(t, { recurrence: Recurrence.RECURRING, conversionWindowDays: 30 });
    await track(t, code.code, { referredUserId: "subscriber" });
    clock.advance(20 * TestClock.DAY);
    await track(t, code.code, { referredUserId: "subscriber" });
    clock.advance(10 * TestClock.DAY);
    await track(t, code.code, { referredUserId: "subscriber" });
    clock.advance(1);
    expect(await reasonOf(track(t, code.code, { referredUserId: "subscriber" }))).toBe("CONVERSION_WINDOW_CLOSED");
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
  });

  it("RECURRING requires a transaction_id; PERCENTAGE requires the amount", async () => {
    const recurring = await programWithCode(t, { recurrence: Recurrence.RECURRING });
    expect(await callError(track(t, recurring.code.code, { transactionId: "" }))).toMatchObject({
      code: Code.InvalidArgument,
      info: { metadata: { field: "transaction_id" } },
    });
    const percentage = await programWithCode(t, { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 1000 });
    expect(await callError(track(t, percentage.code.code))).toMatchObject({
      code: Code.InvalidArgument,
      info: { metadata: { field: "transaction_amount_minor" } },
    });
  });

  it("a currency other than the program's fails CURRENCY_MISMATCH", async () => {
    const { code } = await programWithCode(t);
    expect(await callError(track(t, code.code, { currency: "EUR" }))).toMatchObject({
      code: Code.FailedPrecondition,
      info: { reason: "CURRENCY_MISMATCH", metadata: { field: "currency" } },
    });
    expect((await track(t, code.code, { currency: "USD" })).referral?.currency).toBe("USD");
  });

  it("max_rewards_per_referrer caps rewarded conversions across the referrer's codes: REWARD_LIMIT_REACHED", async () => {
    const { program, code } = await programWithCode(t, { maxRewardsPerReferrer: 2 });
    const { code: second } = await t.grpc.createCode({ programKey: program.programKey, userId: "referrer" });
    await track(t, code.code);
    await track(t, second!.code);
    expect(await reasonOf(track(t, code.code))).toBe("REWARD_LIMIT_REACHED");
    // The use taken for the refused conversion was rolled back.
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
  });

  it("a budget is never exceeded: BUDGET_EXHAUSTED, and the counter shows what was granted", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 4000n });
    await track(t, code.code);
    await track(t, code.code);
    expect(await reasonOf(track(t, code.code))).toBe("BUDGET_EXHAUSTED");
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(3000n);
  });

  it("occurred_at in the future is INVALID_ARGUMENT; in the past it is the conversion time", async () => {
    const { code } = await programWithCode(t);
    const future = await callError(track(t, code.code, { occurredAt: timestampFromDate(new Date(clock.now().getTime() + 3600_000)) }));
    expect(future).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "occurred_at" } } });
    clock.advance(6 * TestClock.DAY); // the code existed 5 days ago
    const past = new Date(clock.now().getTime() - 5 * TestClock.DAY);
    const { referral } = await track(t, code.code, { occurredAt: timestampFromDate(past) });
    expect(timestampDate(referral!.convertedAt!).getTime()).toBe(past.getTime());
  });

  it("validate_only runs every rule and computes the reward, but writes nothing", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 1500n, maxRewardsPerReferrer: 1 });
    const dry = await track(t, code.code, { validateOnly: true, referredUserId: "dry-run" });
    expect(dry.referral).toMatchObject({ id: "", amountEarnedMinor: 1500n, referredUserId: "dry-run" });
    expect(await trackingCount(program.programKey)).toBe(0);
    const { program: after } = await t.grpc.getProgram({ programKey: program.programKey });
    expect(after?.rewardsGrantedMinor).toBe(0n);
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(0);
    expect(await reasonOf(track(t, code.code, { validateOnly: true, referredUserId: "referrer" }))).toBe("SELF_REFERRAL");
  });
});

describe("rewards", () => {
  it.each([
    [10_000n, 1250, 1250n],
    [1n, 5000, 0n], // 0.5 rounds to even 0
    [3n, 5000, 2n], // 1.5 rounds to even 2
    [5n, 5000, 2n], // 2.5 rounds to even 2
    [7n, 5000, 4n], // 3.5 rounds to even 4
    [12_345n, 333, 411n], // 411.0885
    [999_999_999_999_999n, 10000, 999_999_999_999_999n],
  ])("PERCENTAGE of %s at %s bp pays %s, rounded half to even", async (amount, bp, expected) => {
    const { code } = await programWithCode(t, { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: bp });
    expect((await track(t, code.code, { transactionAmountMinor: amount })).referral?.amountEarnedMinor).toBe(expected);
  });

  it("tiers pay by the referrer's prior rewarded conversions", async () => {
    const { code } = await programWithCode(t, {
      rewardAmountMinor: 100n,
      tiers: [
        { minPriorRewards: 2, rewardAmountMinor: 200n },
        { minPriorRewards: 4, rewardAmountMinor: 400n },
      ],
    });
    const earned = [];
    for (let i = 0; i < 5; i++) earned.push((await track(t, code.code)).referral?.amountEarnedMinor);
    expect(earned).toEqual([100n, 100n, 200n, 200n, 400n]);
  });
});

describe("idempotency", () => {
  it("the same transaction_id returns the original referral; nothing is counted twice", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 100_000n });
    const request = { referredUserId: nextId("friend"), transactionId: nextId("txn"), transactionAmountMinor: 500n };
    const first = await track(t, code.code, request);
    const again = await track(t, code.code.toLowerCase(), request);
    expect(again).toMatchObject({ replayed: true, referral: first.referral });
    expect(await trackingCount(program.programKey)).toBe(1);
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(1500n);
  });

  it("the same transaction_id with other content fails IDEMPOTENCY_KEY_REUSED", async () => {
    const { code } = await programWithCode(t);
    const request = { referredUserId: nextId("friend"), transactionId: nextId("txn"), transactionAmountMinor: 500n };
    await track(t, code.code, request);
    expect(await callError(track(t, code.code, { ...request, transactionAmountMinor: 501n }))).toMatchObject({
      code: Code.AlreadyExists,
      info: { reason: "IDEMPOTENCY_KEY_REUSED", metadata: { field: "transaction_id" } },
    });
    expect(await reasonOf(track(t, code.code, { ...request, referredUserId: "someone-else" }))).toBe("IDEMPOTENCY_KEY_REUSED");
  });

  it("without a transaction_id, ONE_TIME replays are recognised by program, referred user and code", async () => {
    const { program, code } = await programWithCode(t);
    const first = await track(t, code.code, { referredUserId: "no-txn-user", transactionId: "" });
    const again = await track(t, code.code, { referredUserId: "no-txn-user", transactionId: "" });
    expect(again).toMatchObject({ replayed: true, referral: { id: first.referral!.id } });
    expect(await trackingCount(program.programKey)).toBe(1);
  });
});
