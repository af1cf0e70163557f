import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { checkInvariants } from "../faults/invariants.ts";
import { EventType, PayoutProvider, PayoutState, PayoutStatus, type Referral } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { logSettled } from "./support/events.ts";
import { createProgram } from "./support/fixtures.ts";
import { nextId, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

let currencies = 0;
/**
 * A currency no other test pays in: CreatePayouts without a program takes
 * every payable reward of its currency in the suite's shared database.
 */
function freshCurrency(): string {
  currencies += 1;
  const n = (process.pid * 31 + currencies) % (26 * 26);
  return `Q${String.fromCharCode(65 + Math.floor(n / 26))}${String.fromCharCode(65 + (n % 26))}`;
}

/** A program paying `amount` per conversion in a fresh currency, a referrer with a manual account, and `conversions` rewards. */
async function referrerWith(conversions: number, program: Parameters<typeof createProgram>[1] = {}, amount = 100n) {
  const currency = freshCurrency();
  const created = await createProgram(t, { rewardAmountMinor: amount, rewardCurrency: currency, ...program });
  const referrer = unique("payee");
  const { code } = await t.grpc.createCode({ programKey: created.programKey, userId: referrer });
  const referrals: Referral[] = [];
  for (let i = 0; i < conversions; i++) referrals.push((await track(t, code!.code, { currency })).referral!);
  return { currency, program: created, referrer, code: code!.code, referrals };
}

const manualAccount = (userId: string) => t.grpc.setPayoutAccount({ account: { userId, provider: PayoutProvider.MANUAL, accountRef: "SEPA, details on file" } });
const run = (currency: string, extra: { programKey?: string; requestId?: string } = {}) =>
  t.grpc.createPayouts({ currency, requestId: extra.requestId ?? unique("run"), programKey: extra.programKey ?? "" });
const referral = async (id: string) => (await t.grpc.getReferral({ id })).referral!;

describe("CreatePayouts with manual payouts", () => {
  it("pays each referrer's payable rewards in one payout, then marks its rewards PAID", async () => {
    const { currency, referrer, referrals } = await referrerWith(3);
    await manualAccount(referrer);
    const { payouts, skippedWithoutAccount, skippedBelowMinimum } = await run(currency);
    expect({ skippedWithoutAccount, skippedBelowMinimum }).toEqual({ skippedWithoutAccount: 0, skippedBelowMinimum: 0 });
    expect(payouts).toHaveLength(1);
    const [payout] = payouts;
    expect(payout).toMatchObject({
      referrerUserId: referrer,
      currency,
      provider: PayoutProvider.MANUAL,
      accountRef: "SEPA, details on file",
      amountMinor: 300n,
      rewardsMinor: 300n,
      clawbacksMinor: 0n,
      referralCount: 3,
      // Nothing to send: it waits for the operator.
      state: PayoutState.PROCESSING,
    });
    for (const r of referrals) expect(await referral(r.id)).toMatchObject({ payoutId: payout!.id, payoutStatus: PayoutStatus.PENDING });
    // A second run finds nothing: the rewards are in an open payout.
    expect((await run(currency)).payouts).toEqual([]);
    // Nor may anyone else move them.
    expect(await callError(t.grpc.updatePayoutStatus({ referralIds: [referrals[0]!.id], payoutStatus: PayoutStatus.PAID }))).toMatchObject({
      code: Code.FailedPrecondition,
      info: { reason: "REFERRAL_IN_PAYOUT", metadata: { referralId: referrals[0]!.id, payoutId: payout!.id } },
    });

    const { payout: paid } = await t.grpc.markPayoutPaid({ id: payout!.id, providerReference: "BANK-REF-1" });
    expect(paid).toMatchObject({ state: PayoutState.PAID, providerReference: "BANK-REF-1", paidAt: expect.anything() });
    for (const r of referrals) expect(await referral(r.id)).toMatchObject({ payoutStatus: PayoutStatus.PAID, payoutReference: "BANK-REF-1", payoutId: payout!.id });
    const { earnings } = await t.grpc.getUserEarnings({ userId: referrer });
    expect(earnings.find((e) => e.currency === currency)).toMatchObject({ paidMinor: 300n, payableMinor: 0n });
    expect(await callError(t.grpc.markPayoutPaid({ id: payout!.id, providerReference: "again" }))).toMatchObject({
      code: Code.FailedPrecondition,
      info: { reason: "INVALID_PAYOUT_STATE", metadata: { payoutId: payout!.id, state: "PAID" } },
    });
  });

  it("nets clawbacks (rewards paid, then reversed) against the next payout, once", async () => {
    const { currency, referrer, referrals } = await referrerWith(3);
    await manualAccount(referrer);
    // Paid outside the service, then refunded: 100 to recover.
    await t.grpc.updatePayoutStatus({ referralIds: [referrals[0]!.id], payoutStatus: PayoutStatus.PAID, payoutReference: "outside" });
    await t.grpc.reverseReferral({ id: referrals[0]!.id, reason: "refund" });
    const [payout] = (await run(currency)).payouts;
    expect(payout).toMatchObject({ amountMinor: 100n, rewardsMinor: 200n, clawbacksMinor: 100n, referralCount: 3 });
    await t.grpc.markPayoutPaid({ id: payout!.id, providerReference: "BANK-REF-2" });
    const { referrals: more } = await referrerWithCode(currency, referrer, 2);
    const [next] = (await run(currency)).payouts;
    // The clawback was recovered by the first payout: not again.
    expect(next).toMatchObject({ amountMinor: 200n, rewardsMinor: 200n, clawbacksMinor: 0n, referralCount: more.length });
  });

  it("a reward reversed while its payout is on its way was paid all the same: a clawback for the next payout", async () => {
    const { currency, program, referrer, referrals } = await referrerWith(2);
    await manualAccount(referrer);
    const [payout] = (await run(currency)).payouts;
    await t.grpc.reverseReferral({ id: referrals[1]!.id, reason: "refund" });
    await t.grpc.markPayoutPaid({ id: payout!.id, providerReference: "BANK-REF-3" });
    expect(await referral(referrals[1]!.id)).toMatchObject({ payoutStatus: PayoutStatus.REVERSED, clawback: true });
    // One reversal, then the clawback as a change of its payout status.
    await logSettled(t.grpc);
    const { events } = await t.grpc.listEvents({ programKey: program.programKey, pageSize: 1000 });
    const ofIt = events.filter((e) => e.subject.case === "referral" && e.subject.value.id === referrals[1]!.id);
    expect(ofIt.map((e) => [e.type, e.subject.case === "referral" && e.subject.value.clawback])).toEqual([
      [EventType.REFERRAL_CREATED, false],
      [EventType.REFERRAL_REVERSED, false],
      [EventType.REFERRAL_PAYOUT_STATUS_CHANGED, true],
    ]);
    await referrerWithCode(currency, referrer, 3);
    const [next] = (await run(currency)).payouts;
    expect(next).toMatchObject({ amountMinor: 200n, rewardsMinor: 300n, clawbacksMinor: 100n });
  });

  it("a failed payout gives its rewards back, FAILED with the reason, for the next run", async () => {
    const { currency, referrer, referrals } = await referrerWith(2);
    await manualAccount(referrer);
    const [payout] = (await run(currency)).payouts;
    const { payout: failed } = await t.grpc.markPayoutFailed({ id: payout!.id, failureReason: "account closed" });
    expect(failed).toMatchObject({ state: PayoutState.FAILED, failureReason: "account closed", failedAt: expect.anything() });
    for (const r of referrals) expect(await referral(r.id)).toMatchObject({ payoutStatus: PayoutStatus.FAILED, failureReason: "account closed", payoutId: "" });
    const [again] = (await run(currency)).payouts;
    expect(again).toMatchObject({ amountMinor: 200n, referralCount: 2 });
    expect(again!.id).not.toBe(payout!.id);
  });

  it("skips referrers without an account and totals below the minimum; holds totals above the maximum for review", async () => {
    const low = await referrerWith(2, { minPayoutMinor: 500n });
    await manualAccount(low.referrer);
    expect(await run(low.currency)).toMatchObject({ payouts: [], skippedBelowMinimum: 1, skippedWithoutAccount: 0 });
    expect((await referral(low.referrals[0]!.id)).payoutId).toBe("");
    await referrerWithCode(low.currency, low.referrer, 3);
    expect((await run(low.currency)).payouts[0]).toMatchObject({ amountMinor: 500n });

    const none = await referrerWith(1);
    expect(await run(none.currency)).toMatchObject({ payouts: [], skippedWithoutAccount: 1 });

    const high = await referrerWith(3, { maxPayoutMinor: 250n });
    await manualAccount(high.referrer);
    const [held] = (await run(high.currency)).payouts;
    expect(held).toMatchObject({ state: PayoutState.REQUIRES_REVIEW, amountMinor: 300n });
    const { payout: canceled } = await t.grpc.cancelPayout({ id: held!.id });
    expect(canceled).toMatchObject({ state: PayoutState.CANCELED, canceledAt: expect.anything() });
    expect((await referral(high.referrals[0]!.id)).payoutId).toBe("");
    const [again] = (await run(high.currency)).payouts;
    const { payout: approved } = await t.grpc.approvePayout({ id: again!.id });
    expect(approved).toMatchObject({ state: PayoutState.PROCESSING });
    // Sent (to the operator): too late to cancel.
    expect(await callError(t.grpc.cancelPayout({ id: again!.id }))).toMatchObject({
      code: Code.FailedPrecondition,
      info: { reason: "INVALID_PAYOUT_STATE", metadata: { state: "PROCESSING" } },
    });
  });

  it("waits for the hold", async () => {
    const { currency, referrer } = await referrerWith(1, { holdDays: 7 });
    await manualAccount(referrer);
    expect((await run(currency)).payouts).toEqual([]);
    clock.advance(8 * TestClock.DAY);
    expect((await run(currency)).payouts).toHaveLength(1);
  });

  it("pays one program when asked, and answers a retried request_id with its first payouts", async () => {
    const a = await referrerWith(1);
    const b = await referrerWithCode(a.currency, a.referrer, 2);
    await manualAccount(a.referrer);
    const requestId = unique("run");
    const first = await run(a.currency, { programKey: b.programKey, requestId });
    expect(first.payouts).toMatchObject([{ amountMinor: 200n, programKey: b.programKey }]);
    expect(await run(a.currency, { programKey: b.programKey, requestId })).toEqual(first);
    expect(await callError(run(a.currency, { requestId }))).toMatchObject({ code: Code.AlreadyExists, info: { reason: "IDEMPOTENCY_KEY_REUSED" } });
    expect((await run(a.currency)).payouts).toMatchObject([{ amountMinor: 100n, programKey: "" }]);
  });

  it("writes PAYOUT_CREATED and PAYOUT_PAID events carrying the payout", async () => {
    const { currency, referrer } = await referrerWith(1);
    await manualAccount(referrer);
    const [payout] = (await run(currency)).payouts;
    const { payout: paid } = await t.grpc.markPayoutPaid({ id: payout!.id, providerReference: "BANK-REF-4" });
    await logSettled(t.grpc);
    const events = [];
    let cursor = "";
    for (;;) {
      const page = await t.grpc.listEvents({ afterCursor: cursor, types: [EventType.PAYOUT_CREATED, EventType.PAYOUT_PAID], pageSize: 1000 });
      events.push(...page.events.filter((e) => e.subject.case === "payout" && e.subject.value.id === payout!.id));
      if (page.events.length === 0) break;
      cursor = page.nextCursor;
    }
    expect(events.map((e) => [e.type, e.subject.value])).toEqual([
      [EventType.PAYOUT_CREATED, payout],
      [EventType.PAYOUT_PAID, paid],
    ]);
  });

  it("lists payouts newest first, by referrer, state and currency, page by page", async () => {
    const { currency, referrer } = await referrerWith(1);
    await manualAccount(referrer);
    const [first] = (await run(currency)).payouts;
    await t.grpc.markPayoutFailed({ id: first!.id, failureReason: "bounced" });
    const [second] = (await run(currency)).payouts;
    const listed = [];
    let pageToken = "";
    do {
      const page = await t.grpc.listPayouts({ referrerUserId: referrer, pageSize: 1, pageToken });
      listed.push(...page.payouts);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(listed.map((p) => p.id)).toEqual([second!.id, first!.id]);
    expect((await t.grpc.listPayouts({ referrerUserId: referrer, state: PayoutState.FAILED })).payouts.map((p) => p.id)).toEqual([first!.id]);
    expect((await t.grpc.listPayouts({ currency, state: PayoutState.PROCESSING })).payouts.map((p) => p.id)).toEqual([second!.id]);
    expect((await t.grpc.getPayout({ id: second!.id })).payout).toEqual(listed[0]);
  });

  it("never puts a reward in two payouts, whatever runs race", async () => {
    const currency = freshCurrency();
    const program = await createProgram(t, { rewardAmountMinor: 7n, rewardCurrency: currency });
    const referrers = Array.from({ length: 20 }, () => unique("racer"));
    const codes = await Promise.all(referrers.map(async (userId) => (await t.grpc.createCode({ programKey: program.programKey, userId })).code!.code));
    await Promise.all(referrers.map(manualAccount));
    const second = await startTestServer({ clock });
    try {
      // Conversions, runs on two servers and reversals all at once.
      const conversions = codes.flatMap((code) => Array.from({ length: 10 }, () => code));
      const tracked: Referral[] = [];
      const runs = await Promise.all([
        ...conversions.map(async (code, i) => tracked.push((await track(i % 2 === 0 ? t : second, code, { currency })).referral!)),
        ...Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? t : second).grpc.createPayouts({ currency, requestId: unique("race") })),
      ]);
      await Promise.all(tracked.slice(0, 30).map((r) => t.grpc.reverseReferral({ id: r.id, reason: "race" }).catch(() => undefined)));
      const last = await run(currency);
      const payouts = runs.flatMap((r) => (typeof r === "number" ? [] : r.payouts)).concat(last.payouts);
      // Every standing reward is in exactly one payout, and the payouts add up to them.
      const members = new Map<string, string[]>();
      for (const r of tracked) {
        const now = await referral(r.id);
        if (now.payoutId !== "") members.set(now.payoutId, [...(members.get(now.payoutId) ?? []), now.id]);
      }
      for (const payout of payouts) expect(members.get(payout.id)?.length ?? 0).toBe(payout.referralCount);
      const inPayouts = [...members.values()].flat();
      expect(new Set(inPayouts).size).toBe(inPayouts.length);
      expect(payouts.reduce((sum, p) => sum + p.rewardsMinor, 0n)).toBe(7n * BigInt(inPayouts.length));
      const stillPayable = tracked.filter((r) => !inPayouts.includes(r.id));
      for (const r of stillPayable) expect((await referral(r.id)).payoutStatus).toBe(PayoutStatus.REVERSED);
      await checkInvariants(inject("databaseUrl"));
    } finally {
      await second.close();
    }
  });
});

describe("payout accounts", () => {
  it("records a manual account and replaces it; a provider without credentials is refused", async () => {
    const userId = unique("acct");
    expect(await callError(t.grpc.getPayoutAccount({ userId }))).toMatchObject({ code: Code.NotFound, info: { reason: "PAYOUT_ACCOUNT_NOT_FOUND" } });
    const { account } = await manualAccount(userId);
    expect(account).toMatchObject({ userId, provider: PayoutProvider.MANUAL, accountRef: "SEPA, details on file" });
    expect(account?.verifiedAt).toBeUndefined();
    expect((await t.grpc.getPayoutAccount({ userId })).account).toEqual(account);
    const refused = await callError(t.grpc.setPayoutAccount({ account: { userId, provider: PayoutProvider.STRIPE_CONNECT, accountRef: "acct_1Nope" } }));
    expect(refused).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "PAYOUT_PROVIDER_NOT_CONFIGURED", metadata: { provider: "STRIPE_CONNECT" } } });
    expect((await t.grpc.getPayoutAccount({ userId })).account).toEqual(account);
  });

  it.each([
    [{ account: { userId: "u", provider: PayoutProvider.UNSPECIFIED, accountRef: "x" } }, "account.provider"],
    [{ account: { userId: "u", provider: PayoutProvider.STRIPE_CONNECT, accountRef: "DE89370400440532013000" } }, "account.account_ref"],
    [{ account: { userId: "u", provider: PayoutProvider.WISE, accountRef: "acct_1" } }, "account.account_ref"],
    [{ account: { userId: "", provider: PayoutProvider.MANUAL, accountRef: "x" } }, "account.user_id"],
    [{ account: { userId: "u", provider: PayoutProvider.MANUAL, accountRef: "IBAN DE89 3704 0044 0532 0130 00" } }, "account.account_ref"],
    [{ account: { userId: "u", provider: PayoutProvider.MANUAL, accountRef: "account 1234 5678, sort code 40-47-84" } }, "account.account_ref"],
    [{}, "account"],
  ])("refuses %j naming %s", async (request, field) => {
    expect(await callError(t.grpc.setPayoutAccount(request))).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field } } });
  });
});

describe("payout bad input", () => {
  it.each([
    [() => t.grpc.createPayouts({ currency: "usd", requestId: "r" }), "currency"],
    [() => t.grpc.createPayouts({ currency: "USD", requestId: "" }), "request_id"],
    [() => t.grpc.createPayouts({ currency: "USD", requestId: "r", programKey: "Bad Key" }), "program_key"],
    [() => t.grpc.getPayout({ id: "nope" }), "id"],
    [() => t.grpc.markPayoutPaid({ id: "00000000-0000-0000-0000-000000000000", providerReference: "" }), "provider_reference"],
    [() => t.grpc.markPayoutFailed({ id: "00000000-0000-0000-0000-000000000000", failureReason: " " }), "failure_reason"],
    [() => t.grpc.listPayouts({ state: 99 as PayoutState }), "state"],
    [() => t.grpc.listPayouts({ pageToken: "forged" }), "page_token"],
  ])("%#: INVALID_ARGUMENT naming %s", async (call, field) => {
    expect(await callError(call())).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field } } });
  });

  it("an unknown payout is PAYOUT_NOT_FOUND; an unknown program PROGRAM_NOT_FOUND", async () => {
    const id = "00000000-0000-4000-8000-000000000000";
    for (const call of [() => t.grpc.getPayout({ id }), () => t.grpc.approvePayout({ id }), () => t.grpc.cancelPayout({ id })]) {
      expect(await callError(call())).toMatchObject({ code: Code.NotFound, info: { reason: "PAYOUT_NOT_FOUND", metadata: { payoutId: id } } });
    }
    expect(await callError(t.grpc.createPayouts({ currency: "USD", requestId: unique("r"), programKey: unique("none") }))).toMatchObject({
      code: Code.NotFound,
      info: { reason: "PROGRAM_NOT_FOUND" },
    });
  });

  it("a program's maximum may not be below its minimum", async () => {
    expect(await callError(createProgram(t, { minPayoutMinor: 500n, maxPayoutMinor: 100n }))).toMatchObject({
      code: Code.InvalidArgument,
      info: { metadata: { field: "program.max_payout_minor" } },
    });
  });
});

/** Another program in `currency` with a code of `referrer`, and `conversions` rewards of 100 through it. */
async function referrerWithCode(currency: string, referrer: string, conversions: number) {
  const program = await createProgram(t, { rewardAmountMinor: 100n, rewardCurrency: currency });
  const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: referrer });
  const referrals: Referral[] = [];
  for (let i = 0; i < conversions; i++) referrals.push((await track(t, code!.code, { currency, referredUserId: nextId("friend") })).referral!);
  return { programKey: program.programKey, referrals };
}
