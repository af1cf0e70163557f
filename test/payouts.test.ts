import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PayoutStatus, Recurrence } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const setStatus = (ids: string[], payoutStatus: PayoutStatus, extra: { payoutReference?: string; failureReason?: string } = {}) =>
  t.grpc.updatePayoutStatus({ referralIds: ids, payoutStatus, ...extra });

async function referralIn(status: PayoutStatus, programOverrides = {}): Promise<string> {
  const { code } = await programWithCode(t, programOverrides);
  const id = (await track(t, code.code)).referral!.id;
  if (status === PayoutStatus.PAID || status === PayoutStatus.FAILED) await setStatus([id], status);
  if (status === PayoutStatus.REVERSED) await t.grpc.reverseReferral({ id, reason: "refund" });
  return id;
}

describe("UpdatePayoutStatus", () => {
  it.each([
    [PayoutStatus.PENDING, PayoutStatus.PAID],
    [PayoutStatus.PENDING, PayoutStatus.FAILED],
    [PayoutStatus.FAILED, PayoutStatus.PENDING],
    [PayoutStatus.FAILED, PayoutStatus.PAID],
  ])("moves %s to %s", async (from, to) => {
    const id = await referralIn(from);
    const { referrals } = await setStatus([id], to, { payoutReference: "tr_1", failureReason: "bank rejected" });
    expect(referrals[0]?.payoutStatus).toBe(to);
    if (to === PayoutStatus.PAID) expect(referrals[0]).toMatchObject({ payoutReference: "tr_1", paidAt: expect.anything() });
    if (to === PayoutStatus.FAILED) expect(referrals[0]).toMatchObject({ failureReason: "bank rejected", failedAt: expect.anything() });
  });

  it.each([
    [PayoutStatus.PENDING, PayoutStatus.PENDING],
    [PayoutStatus.PAID, PayoutStatus.PENDING],
    [PayoutStatus.PAID, PayoutStatus.FAILED],
    [PayoutStatus.PAID, PayoutStatus.PAID],
    [PayoutStatus.FAILED, PayoutStatus.FAILED],
    [PayoutStatus.REVERSED, PayoutStatus.PENDING],
    [PayoutStatus.REVERSED, PayoutStatus.PAID],
    [PayoutStatus.REVERSED, PayoutStatus.FAILED],
  ])("refuses %s to %s with INVALID_PAYOUT_TRANSITION", async (from, to) => {
    const id = await referralIn(from);
    const error = await callError(setStatus([id], to));
    expect(error).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "INVALID_PAYOUT_TRANSITION", metadata: { referralId: id } } });
    expect((await t.grpc.getReferral({ id })).referral?.payoutStatus).toBe(from);
  });

  it("REVERSED is not a target: use ReverseReferral", async () => {
    const id = await referralIn(PayoutStatus.PENDING);
    const error = await callError(setStatus([id], PayoutStatus.REVERSED));
    expect(error).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "payout_status" } } });
  });

  it("a reward inside its hold is NOT_YET_PAYABLE, and payable once the hold has passed", async () => {
    const id = await referralIn(PayoutStatus.PENDING, { holdDays: 30 });
    expect(await callError(setStatus([id], PayoutStatus.PAID))).toMatchObject({ info: { reason: "NOT_YET_PAYABLE", metadata: { referralId: id } } });
    clock.advance(30 * TestClock.DAY);
    expect((await setStatus([id], PayoutStatus.PAID)).referrals[0]?.payoutStatus).toBe(PayoutStatus.PAID);
  });

  it("a batch is all or nothing: one bad referral leaves every one unchanged", async () => {
    const good = [await referralIn(PayoutStatus.PENDING), await referralIn(PayoutStatus.PENDING)];
    const paid = await referralIn(PayoutStatus.PAID);
    const error = await callError(setStatus([...good, paid], PayoutStatus.PAID));
    expect(error.info).toMatchObject({ reason: "INVALID_PAYOUT_TRANSITION", metadata: { referralId: paid } });
    for (const id of good) expect((await t.grpc.getReferral({ id })).referral?.payoutStatus).toBe(PayoutStatus.PENDING);
    const missing = "00000000-0000-4000-8000-000000000000";
    expect((await callError(setStatus([good[0]!, missing], PayoutStatus.PAID))).info).toMatchObject({
      reason: "REFERRAL_NOT_FOUND",
      metadata: { referralId: missing },
    });
    const { referrals } = await setStatus(good, PayoutStatus.PAID);
    expect(referrals.map((r) => r.id)).toEqual(good);
  });

  it("refuses bad input: no ids, more than 1000, duplicates, malformed ids", async () => {
    expect((await callError(setStatus([], PayoutStatus.PAID))).info?.metadata.field).toBe("referral_ids");
    const many = Array.from({ length: 1001 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
    expect((await callError(setStatus(many, PayoutStatus.PAID))).info?.metadata.field).toBe("referral_ids");
    const id = await referralIn(PayoutStatus.PENDING);
    expect((await callError(setStatus([id, id], PayoutStatus.PAID))).info?.metadata.field).toBe("referral_ids[1]");
    expect((await callError(setStatus(["nope"], PayoutStatus.PAID))).info?.metadata.field).toBe("referral_ids[0]");
  });
});

describe("ReverseReferral", () => {
  it.each([PayoutStatus.PENDING, PayoutStatus.FAILED, PayoutStatus.PAID])("reverses a %s referral; only a PAID one is a clawback", async (from) => {
    const id = await referralIn(from);
    const { referral } = await t.grpc.reverseReferral({ id, reason: "chargeback" });
    expect(referral).toMatchObject({ payoutStatus: PayoutStatus.REVERSED, reversalReason: "chargeback", clawback: from === PayoutStatus.PAID });
    expect(referral?.reversedAt).toBeDefined();
  });

  it("a reversed referral cannot be reversed again; an unknown one is REFERRAL_NOT_FOUND", async () => {
    const id = await referralIn(PayoutStatus.REVERSED);
    expect((await callError(t.grpc.reverseReferral({ id, reason: "again" }))).info?.reason).toBe("INVALID_PAYOUT_TRANSITION");
    const missing = await callError(t.grpc.reverseReferral({ id: "00000000-0000-4000-8000-000000000001", reason: "x" }));
    expect(missing).toMatchObject({ code: Code.NotFound, info: { reason: "REFERRAL_NOT_FOUND" } });
    expect((await callError(t.grpc.reverseReferral({ id, reason: "" }))).info?.metadata.field).toBe("reason");
  });

  it("returns the reward to the budget and, with reversal_frees_use, the use to the code", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 3000n, defaultCodeMaxUses: 2 });
    const first = (await track(t, code.code)).referral!;
    await track(t, code.code);
    expect((await callError(track(t, code.code))).info?.reason).toBe("CODE_EXHAUSTED");
    await t.grpc.reverseReferral({ id: first.id, reason: "refund" });
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(1500n);
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
    await track(t, code.code);
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(2);
  });

  it("without reversal_frees_use the code keeps the use", async () => {
    const { code } = await programWithCode(t, { reversalFreesUse: false });
    const { referral } = await track(t, code.code);
    await t.grpc.reverseReferral({ id: referral!.id, reason: "refund" });
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
  });

  it("in a RECURRING program the use comes back only when the user's last standing conversion is reversed", async () => {
    const { code } = await programWithCode(t, { recurrence: Recurrence.RECURRING });
    const user = nextId("subscriber");
    const a = (await track(t, code.code, { referredUserId: user })).referral!;
    const b = (await track(t, code.code, { referredUserId: user })).referral!;
    await t.grpc.reverseReferral({ id: a.id, reason: "refund" });
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(1);
    await t.grpc.reverseReferral({ id: b.id, reason: "refund" });
    expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(0);
  });

  it("a reversal frees a place under max_rewards_per_referrer", async () => {
    const { code } = await programWithCode(t, { maxRewardsPerReferrer: 1 });
    const { referral } = await track(t, code.code);
    expect((await callError(track(t, code.code))).info?.reason).toBe("REWARD_LIMIT_REACHED");
    await t.grpc.reverseReferral({ id: referral!.id, reason: "refund" });
    expect((await track(t, code.code)).referral?.amountEarnedMinor).toBe(1500n);
  });
});

describe("GetUserEarnings", () => {
  it("sums every bucket per currency, in SQL", async () => {
    const referrer = unique("earner");
    const usd = await programWithCode(t, { holdDays: 10, rewardAmountMinor: 1000n }, referrer);
    const eur = await programWithCode(t, { rewardCurrency: "EUR", rewardAmountMinor: 700n }, referrer);
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await track(t, usd.code.code)).referral!.id);
    await track(t, eur.code.code);
    // USD: ids[0..1] stay pending (in hold); after the hold: ids[2] payable, ids[3] paid, ids[4] failed, ids[5] paid then reversed.
    clock.advance(10 * TestClock.DAY);
    const later = (await track(t, usd.code.code)).referral!.id; // new one, in hold
    await setStatus([ids[3]!, ids[5]!], PayoutStatus.PAID);
    await setStatus([ids[4]!], PayoutStatus.FAILED);
    await t.grpc.reverseReferral({ id: ids[5]!, reason: "chargeback" });
    expect(later).toBeDefined();

    const { earnings } = await t.grpc.getUserEarnings({ userId: referrer });
    expect(earnings.map((e) => e.currency)).toEqual(["EUR", "USD"]);
    expect(earnings[1]).toMatchObject({
      totalMinor: 6000n,
      pendingMinor: 1000n,
      payableMinor: 3000n,
      paidMinor: 1000n,
      failedMinor: 1000n,
      reversedMinor: 1000n,
      clawbackMinor: 1000n,
      referralCount: 7n,
    });
    expect(earnings[0]).toMatchObject({ totalMinor: 700n, payableMinor: 700n, referralCount: 1n });
    const only = await t.grpc.getUserEarnings({ userId: referrer, programKey: eur.program.programKey });
    expect(only.earnings.map((e) => e.currency)).toEqual(["EUR"]);
    expect((await t.grpc.getUserEarnings({ userId: unique("nobody") })).earnings).toEqual([]);
  });
});

describe("ListReferrals", () => {
  it("pages newest first, stable while conversions are added, with filters", async () => {
    const referrer = unique("lister");
    const { program, code } = await programWithCode(t, { recurrence: Recurrence.RECURRING }, referrer);
    const base = clock.now().getTime() - 100_000;
    const user = nextId("buyer");
    for (let i = 0; i < 9; i++) await track(t, code.code, { referredUserId: user, occurredAt: timestampFromDate(new Date(base + (i % 3) * 1000)) });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const response = await t.grpc.listReferrals({ referrerUserId: referrer, pageSize: 4, pageToken });
      seen.push(...response.referrals.map((r) => r.id));
      pageToken = response.nextPageToken;
      if (pages++ === 0) {
        await track(t, code.code, { referredUserId: user, occurredAt: timestampFromDate(new Date(base + 5000)) }); // newer: before the cursor
        await track(t, code.code, { referredUserId: user, occurredAt: timestampFromDate(new Date(base - 5000)) }); // older: still ahead
      }
    } while (pageToken !== "");
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toHaveLength(10);
    const all = (await t.grpc.listReferrals({ referrerUserId: referrer, pageSize: 100 })).referrals;
    const times = all.map((r) => r.convertedAt!.seconds * 1000n + BigInt(r.convertedAt!.nanos / 1e6));
    expect([...times].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0))).toEqual(times);

    const window = await t.grpc.listReferrals({
      programKey: program.programKey,
      convertedAfter: timestampFromDate(new Date(base + 1000)),
      convertedBefore: timestampFromDate(new Date(base + 2000)),
    });
    expect(window.referrals).toHaveLength(3);
    const byUser = await t.grpc.listReferrals({ referredUserId: user, payoutStatus: PayoutStatus.PENDING, pageSize: 100 });
    expect(byUser.referrals).toHaveLength(11);
    const bad = await callError(t.grpc.listReferrals({ referrerUserId: referrer, pageToken: "garbage" }));
    expect(bad.info?.metadata.field).toBe("page_token");
  });
});
