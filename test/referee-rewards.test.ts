import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventType, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { logSettled } from "./support/events.ts";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

const fixed = (amountMinor: bigint, externalCouponId = "") => ({ kind: RewardKind.FIXED, amountMinor, externalCouponId });
const percentage = (basisPoints: number, maxAmountMinor?: bigint) => ({ kind: RewardKind.PERCENTAGE, basisPoints, maxAmountMinor });

describe("referee rewards (double-sided)", () => {
  it("a FIXED referee reward is recorded with the conversion, shown to the referred user, and kept out of the referrer's earnings", async () => {
    const { program, code } = await programWithCode(t, { refereeReward: fixed(1000n, "coupon_10off") });
    expect(program.refereeReward).toMatchObject({ kind: RewardKind.FIXED, amountMinor: 1000n, externalCouponId: "coupon_10off" });
    const friend = nextId("friend");
    const validation = await t.grpc.validateCode({ code: code.code, referredUserId: friend });
    expect(validation).toMatchObject({ valid: true, refereeReward: { kind: RewardKind.FIXED, amountMinor: 1000n }, refereeRewardMinor: 1000n });
    const { referral } = await track(t, code.code, { referredUserId: friend });
    expect(referral).toMatchObject({ amountEarnedMinor: 1500n, refereeRewardMinor: 1000n });
    const { referrals } = await t.grpc.listReferrals({ referredUserId: friend });
    expect(referrals.map((r) => r.refereeRewardMinor)).toEqual([1000n]);
    const { earnings } = await t.grpc.getUserEarnings({ userId: "referrer", programKey: program.programKey });
    expect(earnings).toMatchObject([{ totalMinor: 1500n }]);
    await logSettled(t.grpc);
    const { events } = await t.grpc.listEvents({ programKey: program.programKey, types: [EventType.REFERRAL_CREATED] });
    expect(events[0]?.subject.value).toEqual(referral);
  });

  it("a PERCENTAGE referee reward is a share of the purchase, rounded half to even, capped by max_amount_minor", async () => {
    const { code } = await programWithCode(t, { refereeReward: percentage(1250) });
    // 12.5 % of 4999 = 624.875 → 625; of 20 = 2.5 → 2 (half to even); of 60 = 7.5 → 8.
    for (const [amount, expected] of [[4999n, 625n], [20n, 2n], [60n, 8n]] as const) {
      expect((await track(t, code.code, { transactionAmountMinor: amount })).referral?.refereeRewardMinor).toBe(expected);
    }
    const capped = await programWithCode(t, { refereeReward: percentage(1250, 500n) });
    expect((await track(t, capped.code.code, { transactionAmountMinor: 100_000n })).referral?.refereeRewardMinor).toBe(500n);
    // ValidateCode gives the rule, and the amount when it knows the purchase's.
    const rule = await t.grpc.validateCode({ code: capped.code.code });
    expect(rule.refereeReward).toMatchObject({ kind: RewardKind.PERCENTAGE, basisPoints: 1250, maxAmountMinor: 500n });
    expect(rule.refereeRewardMinor).toBeUndefined();
    expect((await t.grpc.validateCode({ code: capped.code.code, transactionAmountMinor: 2000n })).refereeRewardMinor).toBe(250n);
    expect((await t.grpc.validateCode({ code: capped.code.code, transactionAmountMinor: 9000n })).refereeRewardMinor).toBe(500n);
    // Without the purchase amount a conversion cannot be priced.
    const refused = await callError(track(t, capped.code.code));
    expect(refused).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "transaction_amount_minor" } } });
  });

  it("a replay returns what was given, even after the program's referee reward changed", async () => {
    const { program, code } = await programWithCode(t, { refereeReward: fixed(700n) });
    const request = { referredUserId: nextId("friend"), transactionId: nextId("txn") };
    const first = await track(t, code.code, request);
    await t.grpc.updateProgram({ program: { programKey: program.programKey, refereeReward: fixed(900n) }, updateMask: { paths: ["referee_reward"] } });
    const again = await track(t, code.code, request);
    expect(again).toMatchObject({ replayed: true, referral: { id: first.referral!.id, refereeRewardMinor: 700n } });
    expect((await track(t, code.code)).referral?.refereeRewardMinor).toBe(900n);
    // Cleared: nothing for the next referred user.
    const { program: cleared } = await t.grpc.updateProgram({ program: { programKey: program.programKey }, updateMask: { paths: ["referee_reward"] } });
    expect(cleared?.refereeReward).toBeUndefined();
    expect((await track(t, code.code)).referral?.refereeRewardMinor).toBe(0n);
  });

  it("the budget covers both sides, and a reversal gives both back", async () => {
    // 1500 + 1000 = 2500 a conversion; a budget of 4000 takes one.
    const { program, code } = await programWithCode(t, { budgetMinor: 4000n, refereeReward: fixed(1000n) });
    const { referral } = await track(t, code.code);
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(2500n);
    expect(await callError(track(t, code.code))).toMatchObject({ info: { reason: "BUDGET_EXHAUSTED" } });
    const { referral: reversed } = await t.grpc.reverseReferral({ id: referral!.id, reason: "refund" });
    expect(reversed).toMatchObject({ refereeRewardMinor: 1000n });
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(0n);
    expect((await track(t, code.code)).referral?.refereeRewardMinor).toBe(1000n);
    // A budget set later counts both sides of what stands.
    const { program: rebudgeted } = await t.grpc.updateProgram({ program: { programKey: program.programKey }, updateMask: { paths: ["budget_minor"] } });
    expect(rebudgeted?.budgetMinor).toBeUndefined();
    const { program: counted } = await t.grpc.updateProgram({ program: { programKey: program.programKey, budgetMinor: 10_000n }, updateMask: { paths: ["budget_minor"] } });
    expect(counted?.rewardsGrantedMinor).toBe(2500n);
  });

  it("refuses a malformed referee reward with INVALID_ARGUMENT naming the field, writing nothing", async () => {
    const cases = [
      [{ kind: RewardKind.FIXED, amountMinor: -1n }, "program.referee_reward.amount_minor"],
      [{ kind: RewardKind.FIXED, amountMinor: 0n }, "program.referee_reward.amount_minor"],
      [{ kind: RewardKind.PERCENTAGE, basisPoints: 10_001 }, "program.referee_reward.basis_points"],
      [{ kind: RewardKind.PERCENTAGE, basisPoints: 0 }, "program.referee_reward.basis_points"],
      [{ kind: RewardKind.FIXED, amountMinor: 100n, maxAmountMinor: 50n }, "program.referee_reward.max_amount_minor"],
      [{ kind: RewardKind.PERCENTAGE, basisPoints: 100, maxAmountMinor: 0n }, "program.referee_reward.max_amount_minor"],
      [{ kind: RewardKind.UNSPECIFIED, amountMinor: 100n }, "program.referee_reward.kind"],
      [{ kind: RewardKind.FIXED, amountMinor: 100n, externalCouponId: "x".repeat(201) }, "program.referee_reward.external_coupon_id"],
    ] as const;
    for (const [refereeReward, field] of cases) {
      const error = await callError(programWithCode(t, { refereeReward }));
      expect(error, field).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field } } });
      const { program } = await programWithCode(t);
      const update = await callError(t.grpc.updateProgram({ program: { programKey: program.programKey, refereeReward }, updateMask: { paths: ["referee_reward"] } }));
      expect(update, field).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field } } });
    }
    expect((await callError(t.grpc.validateCode({ code: "ANYCODE", transactionAmountMinor: -5n }))).info?.metadata).toEqual({ field: "transaction_amount_minor" });
  });
});
