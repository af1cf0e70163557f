import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodeStatus, PayoutStatus, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { createProgram } from "./support/fixtures.ts";
import { TestClock } from "./support/clock.ts";
import { nextId } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

// Conversions happen at the service's clock, moved forward over days.
const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock, server: { statsFoldIntervalMs: 100 } });
});
afterAll(async () => {
  await t?.close();
});

const DAY = 24 * 3600 * 1000;

/** Waits until the statistics are exact up to now (every write so far folded in). */
async function caughtUp(programKey: string): Promise<void> {
  const target = Date.now();
  const deadline = target + 30_000;
  for (;;) {
    const { stats } = await t.grpc.getProgramStats({ programKey });
    if (timestampDate(stats!.asOf!).getTime() >= target) return;
    if (Date.now() > deadline) throw new Error("the statistics did not catch up within 30 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The same figures, summed from the tables themselves. */
async function fromTables(programKey: string, from: Date | null, to: Date | null) {
  const f = from === null ? null : sql.timestamp(from);
  const u = to === null ? null : sql.timestamp(to);
  const inRange = (column: string) =>
    sql.fragment`(${f}::timestamptz IS NULL OR ${sql.identifier([column])} >= ${f}::timestamptz) AND (${u}::timestamptz IS NULL OR ${sql.identifier([column])} < ${u}::timestamptz)`;
  return t.db.one(sql.type(
    z.object({
      codes_issued: z.bigint(),
      codes_active: z.bigint(),
      conversions: z.bigint(),
      referred_users: z.bigint(),
      granted: z.bigint(),
      reversed: z.bigint(),
      paid: z.bigint(),
      referee: z.bigint(),
    }),
  )`
    WITH p AS (SELECT id FROM referral_programs WHERE program_key = ${programKey}),
    c AS (SELECT * FROM referral_codes WHERE program_id = (SELECT id FROM p) AND ${inRange("created_at")}),
    r AS (SELECT * FROM referral_trackings WHERE program_id = (SELECT id FROM p) AND ${inRange("converted_at")})
    SELECT (SELECT count(*) FROM c)::bigint AS codes_issued, (SELECT count(*) FROM c WHERE status = 'ACTIVE')::bigint AS codes_active,
      (SELECT count(*) FROM r)::bigint AS conversions, (SELECT count(*) FROM r WHERE first_conversion)::bigint AS referred_users,
      (SELECT COALESCE(sum(amount_earned_minor), 0) FROM r)::bigint AS granted,
      (SELECT COALESCE(sum(amount_earned_minor), 0) FROM r WHERE payout_status = 'REVERSED')::bigint AS reversed,
      (SELECT COALESCE(sum(amount_earned_minor), 0) FROM r WHERE payout_status = 'PAID')::bigint AS paid,
      (SELECT COALESCE(sum(referee_reward_minor), 0) FROM r)::bigint AS referee
  `);
}

describe("program statistics", () => {
  it("equal the figures computed from the tables after a random workload, over all time and over day ranges", async () => {
    const program = await createProgram(t, {
      rewardKind: RewardKind.PERCENTAGE,
      rewardBasisPoints: 1000,
      rewardAmountMinor: 0n,
      recurrence: Recurrence.RECURRING,
      budgetMinor: 10_000_000n,
      refereeReward: { kind: RewardKind.FIXED, amountMinor: 250n },
    });
    const key = program.programKey;
    const codes = [];
    for (let i = 0; i < 6; i++) codes.push((await t.grpc.createCode({ programKey: key, userId: `referrer-${i % 4}` })).code!.code);
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const ids: string[] = [];
    const start = clock.now().getTime();
    for (let i = 0; i < 120; i++) {
      const action = random(10);
      if (random(8) === 0) clock.advance(random(2 * DAY));
      if (action < 6) {
        // Friends keep to one code, mostly: some also try another referrer's.
        const friend = random(30);
        const result = await t.grpc
          .trackReferral({
            code: codes[random(5) === 0 ? random(codes.length) : friend % codes.length]!,
            referredUserId: `friend-${friend}`,
            transactionId: nextId("txn"),
            transactionAmountMinor: BigInt(100 + random(10_000)),
          })
          .catch(() => undefined);
        if (result?.referral) ids.push(result.referral.id);
      } else if (action < 8 && ids.length > 0) {
        await t.grpc.updatePayoutStatus({ referralIds: [ids[random(ids.length)]!], payoutStatus: PayoutStatus.PAID, payoutReference: "tr" }).catch(() => undefined);
      } else if (action < 9 && ids.length > 0) {
        await t.grpc.reverseReferral({ id: ids[random(ids.length)]!, reason: "refund" }).catch(() => undefined);
      } else {
        const status = [CodeStatus.ACTIVE, CodeStatus.ACTIVE, CodeStatus.INACTIVE, CodeStatus.SUSPENDED][random(4)]!;
        await t.grpc.updateCode({ code: { code: codes[random(codes.length)]!, status }, updateMask: { paths: ["status"] } });
      }
    }
    expect(ids.length).toBeGreaterThan(20);
    await caughtUp(key);

    const check = async (from: Date | null, to: Date | null) => {
      const { stats } = await t.grpc.getProgramStats({ programKey: key, startTime: from === null ? undefined : timestampFromDate(from), endTime: to === null ? undefined : timestampFromDate(to) });
      const expected = await fromTables(key, from, to);
      expect(stats, `${from?.toISOString()}..${to?.toISOString()}`).toMatchObject({
        codesIssued: expected.codes_issued,
        codesActive: expected.codes_active,
        conversions: expected.conversions,
        referredUsers: expected.referred_users,
        referrerRewardsGrantedMinor: expected.granted,
        referrerRewardsReversedMinor: expected.reversed,
        referrerRewardsPaidMinor: expected.paid,
        refereeRewardsGrantedMinor: expected.referee,
        currency: "USD",
      });
      return stats!;
    };
    const all = await check(null, null);
    const { program: now_ } = await t.grpc.getProgram({ programKey: key });
    expect(all.budgetRemainingMinor).toBe(now_!.budgetMinor! - now_!.rewardsGrantedMinor);
    const today = Math.floor(start / DAY) * DAY;
    for (const [fromDays, toDays] of [[0, 3], [2, 7], [-1, 1], [5, 40]] as const) {
      await check(new Date(today + fromDays * DAY), new Date(today + toDays * DAY));
    }
    // A range inside a day is rounded out to whole days, and says so.
    const rounded = await t.grpc.getProgramStats({ programKey: key, startTime: timestampFromDate(new Date(today + DAY + 5000)), endTime: timestampFromDate(new Date(today + 3 * DAY - 5000)) });
    expect(timestampDate(rounded.stats!.startTime!).getTime()).toBe(today + DAY);
    expect(timestampDate(rounded.stats!.endTime!).getTime()).toBe(today + 3 * DAY);

    // The leaderboard: standing conversions and rewards per referrer, from the tables,
    // over all time and over ranges of days (converted_at in [from, to)).
    const standing = (from: Date | null, to: Date | null) => {
      const f = from === null ? null : sql.timestamp(from);
      const u = to === null ? null : sql.timestamp(to);
      return t.db.any(sql.type(z.object({ referrer_user_id: z.string(), conversions: z.bigint(), earned: z.bigint(), paid: z.bigint() }))`
        SELECT referrer_user_id, count(*)::bigint AS conversions, sum(amount_earned_minor)::bigint AS earned,
          COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'PAID'), 0)::bigint AS paid
        FROM referral_trackings WHERE program_id = (SELECT id FROM referral_programs WHERE program_key = ${key}) AND payout_status <> 'REVERSED'
          AND (${f}::timestamptz IS NULL OR converted_at >= ${f}::timestamptz) AND (${u}::timestamptz IS NULL OR converted_at < ${u}::timestamptz)
        GROUP BY 1
      `);
    };
    const ranges = [[null, null], [5, 30], [30, 70], [70, 400]] as const;
    for (const orderBy of ["conversions", "earned"] as const) {
      for (const [fromDays, toDays] of ranges) {
        const from = fromDays === null ? null : new Date(today + fromDays * DAY);
        const to = toDays === null ? null : new Date(today + toDays * DAY);
        const rows = await standing(from, to);
        const value = (r: (typeof rows)[number]) => (orderBy === "conversions" ? r.conversions : r.earned);
        const expected = [...rows]
          .sort((a, b) => (value(a) === value(b) ? (a.referrer_user_id < b.referrer_user_id ? -1 : 1) : value(a) > value(b) ? -1 : 1))
          .map((r) => ({ referrerUserId: r.referrer_user_id, conversions: r.conversions, earnedMinor: r.earned, paidMinor: r.paid }));
        expect(expected.length, `referrers with conversions in days ${fromDays}..${toDays}`).toBeGreaterThan(0);
        const range = { startTime: from === null ? undefined : timestampFromDate(from), endTime: to === null ? undefined : timestampFromDate(to) };
        const seen = [];
        let pageToken = "";
        do {
          const page = await t.grpc.listTopReferrers({ programKey: key, orderBy, pageSize: 1, pageToken, ...range });
          seen.push(...page.referrers.map((r) => ({ referrerUserId: r.referrerUserId, conversions: r.conversions, earnedMinor: r.earnedMinor, paidMinor: r.paidMinor })));
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        expect(seen, `${orderBy}, days ${fromDays}..${toDays}`).toEqual(expected);
      }
      // Over all the days there are, the range sums give the all-time board.
      const allTime = await t.grpc.listTopReferrers({ programKey: key, orderBy, pageSize: 100 });
      const ranged = await t.grpc.listTopReferrers({ programKey: key, orderBy, pageSize: 100, startTime: timestampFromDate(new Date(today - DAY)), endTime: timestampFromDate(new Date(today + 400 * DAY)) });
      expect(ranged.referrers).toEqual(allTime.referrers);
    }
  });

  it("refuses bad input with INVALID_ARGUMENT naming the field, and an unknown program with NOT_FOUND", async () => {
    const start = timestampFromDate(new Date(Date.now()));
    const end = timestampFromDate(new Date(Date.now() - DAY));
    const program = await createProgram(t);
    expect((await callError(t.grpc.getProgramStats({ programKey: program.programKey, startTime: start, endTime: end }))).info?.metadata).toEqual({ field: "end_time" });
    expect((await callError(t.grpc.listTopReferrers({ programKey: program.programKey, startTime: start, endTime: end }))).info?.metadata).toEqual({ field: "end_time" });
    expect((await callError(t.grpc.listTopReferrers({ programKey: program.programKey, orderBy: "paid" }))).info?.metadata).toEqual({ field: "order_by" });
    expect((await callError(t.grpc.getProgramStats({ programKey: "" }))).info?.metadata).toEqual({ field: "program_key" });
    expect(await callError(t.grpc.getProgramStats({ programKey: "no-such-program" }))).toMatchObject({ code: Code.NotFound, info: { reason: "PROGRAM_NOT_FOUND" } });
    expect(await callError(t.grpc.listTopReferrers({ programKey: "no-such-program" }))).toMatchObject({ code: Code.NotFound, info: { reason: "PROGRAM_NOT_FOUND" } });
  });
});
