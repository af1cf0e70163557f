import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { checkInvariants } from "../faults/invariants.ts";
import { PayoutProvider, PayoutState, PayoutStatus, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { earningsFromRows } from "./support/earnings.ts";
import { createProgram } from "./support/fixtures.ts";
import { nextId } from "./support/referrals.ts";
import { startTestServer, type TestServer, unique } from "./support/server.ts";

// GetUserEarnings answers from running totals (referrer_earnings, kept by
// triggers) and the rewards still in hold; these tests compare it, after
// every kind of change, with the figures summed from every conversion.
const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const HOUR = 3600 * 1000;

/** A currency no other test pays in: CreatePayouts without a program takes every payable reward of its currency. */
function freshCurrency(n: number): string {
  const k = (process.pid * 37 + n * 101 + 7) % (26 * 26);
  return `W${String.fromCharCode(65 + Math.floor(k / 26))}${String.fromCharCode(65 + (k % 26))}`;
}

const summedFromRows = (userId: string, programKey: string | null, now: Date) => earningsFromRows(t.db, userId, programKey, now);

async function servedEarnings(userId: string, programKey: string | null) {
  const { earnings } = await t.grpc.getUserEarnings({ userId, programKey: programKey ?? "" });
  return earnings.map(({ currency, totalMinor, pendingMinor, payableMinor, paidMinor, failedMinor, reversedMinor, clawbackMinor, referralCount }) => ({
    currency, totalMinor, pendingMinor, payableMinor, paidMinor, failedMinor, reversedMinor, clawbackMinor, referralCount,
  }));
}

/** A small deterministic generator, so a failing workload replays the same. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return { next, below: (n: number) => Math.floor(next() * n), pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]! };
}

/** Calls that a business rule may refuse (not yet payable, in a payout, already reversed): the workload goes on. */
async function attempt(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
  }
}

describe("GetUserEarnings from running totals", () => {
  it("after a random workload of conversions, reversals, payout changes, payouts and clock moves, equals the sum of every conversion", async () => {
    const random = generator(20_201);
    const [usd, eur] = [freshCurrency(1), freshCurrency(2)];
    const programs = [
      await createProgram(t, { rewardAmountMinor: 100n, rewardCurrency: usd, holdDays: 0 }),
      await createProgram(t, { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 750, rewardCurrency: usd, holdDays: 3 }),
      await createProgram(t, { rewardAmountMinor: 250n, rewardCurrency: eur, holdDays: 2 }),
    ];
    const referrers = [unique("earner"), unique("earner")];
    // The first referrer can be paid by hand; the second has no account (its payouts are skipped).
    await t.grpc.setPayoutAccount({ account: { userId: referrers[0]!, provider: PayoutProvider.MANUAL, accountRef: "by hand" } });
    const codes: { code: string; referrer: string; programKey: string }[] = [];
    for (const program of programs) {
      for (const referrer of referrers) {
        const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: referrer });
        codes.push({ code: code!.code, referrer, programKey: program.programKey });
      }
    }
    // Codes were made at the database's time: backdating stays after it.
    const started = Date.now() + 1000;
    const referralIds: string[] = [];
    const openPayouts: string[] = [];

    let sawInHold = false;
    const check = async () => {
      const now = clock.now();
      for (const referrer of referrers) {
        const served = await servedEarnings(referrer, null);
        expect(served).toEqual(await summedFromRows(referrer, null, now));
        sawInHold ||= served.some((e) => e.pendingMinor > 0n && e.payableMinor > 0n);
        for (const program of programs) {
          expect(await servedEarnings(referrer, program.programKey)).toEqual(await summedFromRows(referrer, program.programKey, now));
        }
      }
    };

    for (let step = 1; step <= 240; step++) {
      const roll = random.next();
      if (roll < 0.4) {
        const { code } = random.pick(codes);
        // Now, or backdated by up to a day (never before the codes were made).
        const back = Math.min(random.below(24) * HOUR, clock.now().getTime() - started);
        const occurredAt = back > 0 && random.next() < 0.3 ? { occurredAt: timestampFromDate(new Date(clock.now().getTime() - back)) } : {};
        const { referral } = await t.grpc.trackReferral({
          code, referredUserId: nextId("friend"), transactionId: nextId("txn"), transactionAmountMinor: BigInt(1000 + random.below(9000)), ...occurredAt,
        });
        referralIds.push(referral!.id);
      } else if (roll < 0.5 && referralIds.length > 0) {
        await attempt(t.grpc.reverseReferral({ id: random.pick(referralIds), reason: "refund" }));
      } else if (roll < 0.65 && referralIds.length > 0) {
        const payoutStatus = random.pick([PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.PENDING]);
        const ids = Array.from({ length: 1 + random.below(3) }, () => random.pick(referralIds));
        await attempt(t.grpc.updatePayoutStatus({
          referralIds: [...new Set(ids)], payoutStatus,
          ...(payoutStatus === PayoutStatus.PAID ? { payoutReference: `outside-${step}` } : payoutStatus === PayoutStatus.FAILED ? { failureReason: "bounced" } : {}),
        }));
      } else if (roll < 0.73) {
        const programKey = random.next() < 0.5 ? random.pick(programs).programKey : "";
        const currency = programKey === "" ? random.pick([usd, eur]) : programs.find((p) => p.programKey === programKey)!.rewardCurrency;
        const { payouts } = await t.grpc.createPayouts({ currency, programKey, requestId: unique("run") });
        openPayouts.push(...payouts.filter((p) => p.state === PayoutState.PROCESSING).map((p) => p.id));
      } else if (roll < 0.83 && openPayouts.length > 0) {
        const id = openPayouts.splice(random.below(openPayouts.length), 1)[0]!;
        await (random.next() < 0.7
          ? t.grpc.markPayoutPaid({ id, providerReference: `BANK-${step}` })
          : t.grpc.markPayoutFailed({ id, failureReason: "account closed" }));
      } else {
        clock.advance(random.below(30) * HOUR);
      }
      if (step % 20 === 0) await check();
    }
    // The same moment, read again later: pending becomes payable by the clock alone.
    clock.advance(4 * 24 * HOUR);
    await check();
    const served = await servedEarnings(referrers[0]!, null);
    // The workload reached every figure (the generator is seeded: the same run each time).
    const all = [...served, ...(await servedEarnings(referrers[1]!, null))];
    for (const figure of ["payableMinor", "paidMinor", "failedMinor", "reversedMinor", "clawbackMinor"] as const) {
      expect(all.some((e) => e[figure] > 0n), figure).toBe(true);
    }
    expect(served.map((e) => e.currency).sort()).toEqual([usd, eur].sort());
    expect(served.every((e) => e.pendingMinor === 0n)).toBe(true);
    expect(sawInHold).toBe(true);
    expect(await checkInvariants(inject("databaseUrl"))).toContain(
      "the running earnings totals equal the sums of the conversions, per referrer, program, currency, payout status and clawback",
    );
  });

  it("a deleted conversion leaves the totals too (in a transaction rolled back: the shared database keeps its events whole)", async () => {
    const program = await createProgram(t, { rewardAmountMinor: 300n, rewardCurrency: freshCurrency(3) });
    const referrer = unique("earner");
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: referrer });
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await t.grpc.trackReferral({ code: code!.code, referredUserId: nextId("friend"), transactionId: nextId("txn") })).referral!.id);
    const totals = z.object({ amount: z.bigint(), referrals: z.bigint() });
    const rolledBack = new Error("roll back");
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(sql.unsafe`DELETE FROM referral_trackings WHERE id = ANY(${sql.array([made[0]!, made[1]!], "uuid")})`);
        expect(
          await tx.one(sql.type(totals)`
            SELECT sum(amount_minor)::bigint AS amount, sum(referrals)::bigint AS referrals FROM referrer_earnings WHERE referrer_user_id = ${referrer}`),
        ).toEqual({ amount: 300n, referrals: 1n });
        throw rolledBack;
      }),
    ).rejects.toBe(rolledBack);
    expect((await servedEarnings(referrer, null))[0]).toMatchObject({ totalMinor: 900n, referralCount: 3n });
  });

  it("a referrer with no conversions, or none in the program asked for, has no earnings", async () => {
    const program = await createProgram(t, { rewardAmountMinor: 300n, rewardCurrency: freshCurrency(4) });
    const other = await createProgram(t, { rewardAmountMinor: 300n, rewardCurrency: freshCurrency(4) });
    const referrer = unique("earner");
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: referrer });
    expect(await servedEarnings(referrer, null)).toEqual([]);
    await t.grpc.trackReferral({ code: code!.code, referredUserId: nextId("friend"), transactionId: nextId("txn") });
    expect(await servedEarnings(referrer, other.programKey)).toEqual([]);
    expect(await servedEarnings(referrer, program.programKey)).toHaveLength(1);
  });
});
