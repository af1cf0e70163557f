import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";
import { setTimeout as delay } from "node:timers/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { ReferralCodeService, type TrackReferralRequestSchema } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus, PayoutStatus, Recurrence, RewardKind } from "../../src/gen/referral/v1/resources_pb.js";
import { checkInvariants } from "../../faults/invariants.ts";
import { outcomes } from "./outcomes.ts";
import { createProgram } from "./fixtures.ts";
import { nextId, programWithCode } from "./referrals.ts";

/** What the races run through: any number of servers sharing one database. */
export type RaceTarget = {
  /** For setup and reads. */
  grpc: Client<typeof ReferralCodeService>;
  /** The database, for checks in SQL. */
  db: CommonQueryMethods;
  /** The same database's URL, for the invariant checks of faults/invariants.ts. */
  databaseUrl: string;
  /** The client the i-th racing call goes through. */
  client(i: number): Client<typeof ReferralCodeService>;
};

/**
 * The conversion races (code uses, rewards per referrer, budgets, idempotency,
 * attribution, payout against reversal): every limit must hold exactly
 * however the calls spread over servers. `target` is read once the suite's
 * beforeAll has run.
 */
export function describeReferralRaces(title: string, target: () => RaceTarget): void {
  describe(title, () => {
    let t: RaceTarget;
    let client: RaceTarget["client"];
    beforeAll(() => {
      t = target();
      client = (i) => t.client(i);
    });

    function trackAll(count: number, request: (i: number) => MessageInitShape<typeof TrackReferralRequestSchema>) {
      return Promise.allSettled(Array.from({ length: count }, (_, i) => client(i).trackReferral(request(i))));
    }

    it("1,000 conversions on a max_uses = 100 code: exactly 100 succeed and uses_count = 100", async () => {
      const { code } = await programWithCode(t, { defaultCodeMaxUses: 100 });
      const results = await trackAll(1000, () => ({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") }));
      expect(outcomes(results)).toEqual({ ok: 100, CODE_EXHAUSTED: 900 });
      expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(100);
      expect(
        await t.db.oneFirst(sql.type(z.object({ n: z.number() }))`
          SELECT count(*)::int AS n FROM referral_trackings t JOIN referral_codes c ON c.id = t.code_id
          WHERE c.code = ${code.code} AND t.holds_use`),
      ).toBe(100);
    });

    it("500 conversions for one referrer with max_rewards_per_referrer 10 over 5 codes: exactly 10 rewards", async () => {
      const { program, code } = await programWithCode(t, { maxRewardsPerReferrer: 10, maxCodesPerUser: 5 }, "capped");
      const codes = [code.code];
      for (let i = 0; i < 4; i++) codes.push((await t.grpc.createCode({ programKey: program.programKey, userId: "capped" })).code!.code);
      const results = await trackAll(500, (i) => ({ code: codes[i % 5]!, referredUserId: nextId("u"), transactionId: nextId("t") }));
      expect(outcomes(results)).toEqual({ ok: 10, REWARD_LIMIT_REACHED: 490 });
      const { referrals } = await t.grpc.listReferrals({ referrerUserId: "capped", programKey: program.programKey, pageSize: 1000 });
      expect(referrals).toHaveLength(10);
      // Uses taken by refused conversions were rolled back.
      let uses = 0;
      for (const c of codes) uses += (await t.grpc.getCode({ code: c })).code!.usesCount;
      expect(uses).toBe(10);
    });

    it("200 conversions racing a budget of 50 rewards: the granted sum equals the budget, never more", async () => {
      const { program, code } = await programWithCode(t, { budgetMinor: 50n * 1500n });
      const results = await trackAll(200, () => ({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") }));
      expect(outcomes(results)).toEqual({ ok: 50, BUDGET_EXHAUSTED: 150 });
      expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(75_000n);
      expect(
        await t.db.oneFirst(sql.type(z.object({ sum: z.bigint() }))`
          SELECT COALESCE(sum(amount_earned_minor), 0)::bigint AS sum FROM referral_trackings t
          JOIN referral_programs p ON p.id = t.program_id WHERE p.program_key = ${program.programKey}`),
      ).toBe(75_000n);
    });

    it("200 conversions paying both sides racing a budget of 40 conversions: referrer plus referee never pass it", async () => {
      // 1500 to the referrer, 10 % of 5000 = 500 to the referred user: 2000 a conversion.
      const refereeReward = { kind: RewardKind.PERCENTAGE, basisPoints: 1000 };
      const { program, code } = await programWithCode(t, { budgetMinor: 40n * 2000n, refereeReward });
      const results = await trackAll(200, () => ({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t"), transactionAmountMinor: 5000n }));
      expect(outcomes(results)).toEqual({ ok: 40, BUDGET_EXHAUSTED: 160 });
      expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.rewardsGrantedMinor).toBe(80_000n);
      expect(
        await t.db.one(sql.type(z.object({ referrer: z.bigint(), referee: z.bigint() }))`
          SELECT COALESCE(sum(amount_earned_minor), 0)::bigint AS referrer, COALESCE(sum(referee_reward_minor), 0)::bigint AS referee
          FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id WHERE p.program_key = ${program.programKey}`),
      ).toEqual({ referrer: 60_000n, referee: 20_000n });
    });

    it("100 identical calls with one transaction_id: one row, every caller gets it", async () => {
      const { program, code } = await programWithCode(t);
      const request = { code: code.code, referredUserId: nextId("u"), transactionId: nextId("t"), transactionAmountMinor: 1000n };
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => client(i).trackReferral(request)));
      expect(new Set(results.map((r) => r.referral?.id)).size).toBe(1);
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(
        await t.db.oneFirst(sql.type(z.object({ n: z.number() }))`
          SELECT count(*)::int AS n FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id
          WHERE p.program_key = ${program.programKey}`),
      ).toBe(1);
    });

    it("a budget set while 300 callers stream conversions in counts every one of them: the granted counter equals the rewards", async () => {
      const program = await createProgram(t);
      const userIds = Array.from({ length: 300 }, (_, i) => `streamer-${i}`);
      const codes = (await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds })).codes.map((c) => c.code);
      let settled = 0;
      let landedAt = -1;
      let budgetSet: Promise<unknown> = Promise.resolve();
      // A code per caller, four conversions each, one after another.
      const results = await Promise.allSettled(
        Array.from({ length: 300 }, async (_, caller) => {
          for (let i = 0; i < 4; i++) {
            await client(caller).trackReferral({ code: codes[caller]!, referredUserId: nextId("u"), transactionId: nextId("t") });
            if (++settled === 300) {
              budgetSet = t.grpc
                .updateProgram({ program: { programKey: program.programKey, budgetMinor: 1_000_000_000n }, updateMask: { paths: ["budget_minor"] } })
                .then(() => (landedAt = settled));
            }
          }
        }),
      );
      expect(outcomes(results)).toEqual({ ok: 300 });
      await budgetSet;
      expect(landedAt).toBeLessThan(1200);
      const granted = (await t.grpc.getProgram({ programKey: program.programKey })).program!.rewardsGrantedMinor;
      expect(granted).toBe(1200n * 1500n);
    });

    it.each([
      { title: "a program deactivated", settings: {}, rename: false },
      { title: "a budgeted program renamed and deactivated in one update", settings: { budgetMinor: 10n ** 12n }, rename: true },
    ])(
      "$title while 300 callers stream conversions in: the update lands mid-stream, and every conversion started after it is refused PROGRAM_INACTIVE",
      async ({ settings, rename }) => {
        // A code per caller: their conversions do not wait on each other's code rows.
        const program = await createProgram(t, settings);
        const userIds = Array.from({ length: 300 }, (_, i) => `streamer-${i}`);
        const codes = (await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds })).codes.map((c) => c.code);
        // One counter orders the calls' starts and the update's return (no clock).
        let tick = 0;
        let updatedAt = Number.POSITIVE_INFINITY;
        let answered = 0;
        let startedAfter = 0;
        let update: Promise<unknown> = Promise.resolve();
        const calls: { startedAt: number; result: PromiseSettledResult<unknown> }[] = [];
        // Each caller stops after 12 conversions, or once 300 have started
        // after the update returned: an update that waited for the stream to
        // end would return after the last one started.
        await Promise.all(
          Array.from({ length: 300 }, async (_, caller) => {
            for (let i = 0; i < 12 && startedAfter < 300; i++) {
              const startedAt = ++tick;
              if (startedAt > updatedAt) startedAfter++;
              const request = { code: codes[caller]!, referredUserId: nextId("u"), transactionId: nextId("t") };
              const [result] = await Promise.allSettled([client(caller).trackReferral(request)]);
              calls.push({ startedAt, result: result! });
              if (++answered === 300) {
                const name = rename ? `${program.name} renamed` : undefined;
                const paths = rename ? ["name", "active"] : ["active"];
                update = t.grpc
                  .updateProgram({ program: { programKey: program.programKey, active: false, name }, updateMask: { paths } })
                  .then(({ program: updated }) => {
                    updatedAt = ++tick;
                    expect(updated?.active).toBe(false);
                    if (name !== undefined) expect(updated?.name).toBe(name);
                  });
              }
            }
          }),
        );
        await update;
        const after = calls.filter((call) => call.startedAt > updatedAt);
        const before = calls.filter((call) => call.startedAt < updatedAt);
        expect(after.length).toBeGreaterThan(0);
        expect(outcomes(after.map((call) => call.result))).toEqual({ PROGRAM_INACTIVE: after.length });
        const counts = outcomes(before.map((call) => call.result));
        expect(Object.keys(counts).every((k) => ["ok", "PROGRAM_INACTIVE"].includes(k))).toBe(true);
        // Every conversion recorded holds its use (each has its own referred
        // user), and nothing refused kept one; a budget counts every reward.
        const { recorded, uses, granted, standing } = await t.db.one(sql.type(
          z.object({ recorded: z.number(), uses: z.number(), granted: z.bigint(), standing: z.bigint() }),
        )`
          SELECT (SELECT count(*)::int FROM referral_trackings r WHERE r.program_id = p.id) AS recorded,
            (SELECT sum(c.uses_count)::int FROM referral_codes c WHERE c.program_id = p.id) AS uses,
            p.rewards_granted_minor AS granted,
            (SELECT COALESCE(sum(r.amount_earned_minor), 0)::bigint FROM referral_trackings r WHERE r.program_id = p.id) AS standing
          FROM referral_programs p WHERE p.program_key = ${program.programKey}`);
        expect(recorded).toBe(counts.ok);
        expect(uses).toBe(recorded);
        expect(granted).toBe("budgetMinor" in settings ? standing : 0n);
      },
    );

    it("identical calls racing for a code's last use and the last of the budget all get the one referral", async () => {
      const { program, code } = await programWithCode(t, { defaultCodeMaxUses: 1, budgetMinor: 1500n });
      for (const transactionId of [nextId("t"), ""]) {
        const { code: fresh } = await t.grpc.createCode({ programKey: program.programKey, userId: `owner-${transactionId}` });
        if (transactionId === "") await t.grpc.updateProgram({ program: { programKey: program.programKey }, updateMask: { paths: ["budget_minor"] } });
        const target = transactionId === "" ? fresh!.code : code.code;
        const request = { code: target, referredUserId: nextId("u"), transactionId };
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => client(i).trackReferral(request)));
        expect(new Set(results.map((r) => r.referral?.id)).size).toBe(1);
        expect(results.filter((r) => !r.replayed)).toHaveLength(1);
        expect((await t.grpc.getCode({ code: target })).code?.usesCount).toBe(1);
      }
    });

    it("one referred user converting through two referrers at once: exactly one attribution", async () => {
      for (const recurrence of [Recurrence.ONE_TIME, Recurrence.RECURRING]) {
        const { program, code } = await programWithCode(t, { recurrence }, "ref-a");
        const { code: other } = await t.grpc.createCode({ programKey: program.programKey, userId: "ref-b" });
        const user = nextId("contested");
        const results = await trackAll(100, (i) => ({ code: i % 2 === 0 ? code.code : other!.code, referredUserId: user, transactionId: nextId("t") }));
        const counts = outcomes(results);
        const { referrals } = await t.grpc.listReferrals({ referredUserId: user, programKey: program.programKey, pageSize: 1000 });
        expect(new Set(referrals.map((r) => r.referrerUserId)).size).toBe(1);
        expect(referrals.filter((r) => r.id !== "")).toHaveLength(counts.ok ?? 0);
        if (recurrence === Recurrence.ONE_TIME) expect(counts.ok).toBe(1);
        expect(Object.keys(counts).every((k) => ["ok", "ALREADY_REFERRED", "ALREADY_CONVERTED"].includes(k))).toBe(true);
        const uses = (await t.grpc.getCode({ code: code.code })).code!.usesCount + (await t.grpc.getCode({ code: other!.code })).code!.usesCount;
        expect(uses).toBe(1);
      }
    });

    it("concurrent PAID and REVERSED on one referral: one serial order wins, never both halves", async () => {
      const { code } = await programWithCode(t);
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await t.grpc.trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") })).referral!.id);
      const results = await Promise.allSettled(
        ids.flatMap((id, i) => [
          client(i).updatePayoutStatus({ referralIds: [id], payoutStatus: PayoutStatus.PAID, payoutReference: "po-1" }),
          client(i + 1).reverseReferral({ id, reason: "refund" }),
        ]),
      );
      expect(Object.keys(outcomes(results)).every((k) => ["ok", "INVALID_PAYOUT_TRANSITION"].includes(k))).toBe(true);
      for (const id of ids) {
        const { referral } = await t.grpc.getReferral({ id });
        expect(referral?.payoutStatus).toBe(PayoutStatus.REVERSED);
        // Paid first: the reversal is a clawback. Reversed first: the payout was refused.
        expect(referral?.clawback).toBe(referral?.paidAt !== undefined);
      }
    });

    it.each([true, false])(
      "refunds and returns racing on a max_uses = 16 code (reversal_frees_use %s): uses_count always equals the users standing on it",
      async (reversalFreesUse) => {
        const { code } = await programWithCode(t, { recurrence: Recurrence.RECURRING, reversalFreesUse, defaultCodeMaxUses: 16 });
        const users = Array.from({ length: 48 }, () => nextId("u"));
        const standing = new Map<string, Set<string>>(users.map((user) => [user, new Set()]));
        let call = 0;
        const seen: Record<string, number> = {};
        for (let round = 0; round < 20; round++) {
          // At once: every purchase of half the users is refunded (their
          // last standing one among them) while every user buys again.
          const refunded = users.filter((_, i) => (i + round) % 2 === 0);
          const refunds = refunded.flatMap((user) => [...standing.get(user)!].map((id) => ({ user, id })));
          const results = await Promise.allSettled([
            ...refunds.map(({ user, id }) =>
              client(call++)
                .reverseReferral({ id, reason: "refund" })
                .then(() => standing.get(user)!.delete(id)),
            ),
            // Each purchase a few milliseconds later, so that some land while
            // a refund of the same user commits.
            ...users.map((user, i) =>
              delay(i % 12)
                .then(() => client(call++).trackReferral({ code: code.code, referredUserId: user, transactionId: nextId("t") }))
                .then(({ referral }) => standing.get(user)!.add(referral!.id)),
            ),
          ]);
          for (const [key, n] of Object.entries(outcomes(results))) seen[key] = (seen[key] ?? 0) + n;
        }
        expect(Object.keys(seen).every((k) => ["ok", "CODE_EXHAUSTED"].includes(k))).toBe(true);
        expect(seen.CODE_EXHAUSTED).toBeGreaterThan(0);
        const { uses, users: standingUsers, holders } = await t.db.one(sql.type(z.object({ uses: z.number(), users: z.number(), holders: z.number() }))`
          SELECT c.uses_count AS uses,
            (SELECT count(DISTINCT r.referred_user_id)::int FROM referral_trackings r
              WHERE r.code_id = c.id AND (r.payout_status <> 'REVERSED' OR NOT ${reversalFreesUse}::boolean)) AS users,
            (SELECT count(*)::int FROM referral_trackings r WHERE r.code_id = c.id AND r.holds_use) AS holders
          FROM referral_codes c WHERE c.code = ${code.code}`);
        expect(uses).toBeLessThanOrEqual(16);
        expect(standingUsers).toBe(uses);
        expect(holders).toBe(uses);
      },
    );

    it("a refund racing the same user's next purchase in a budgeted program grants nothing that is not recorded", async () => {
      const { program, code } = await programWithCode(t, { recurrence: Recurrence.RECURRING, budgetMinor: 1_000_000n });
      const users = Array.from({ length: 60 }, () => nextId("u"));
      for (let round = 0; round < 4; round++) {
        const firsts = await Promise.all(users.map((user, i) => client(i).trackReferral({ code: code.code, referredUserId: user, transactionId: nextId("t") })));
        const results = await Promise.allSettled(
          users.flatMap((user, i) => [
            client(i).reverseReferral({ id: firsts[i]!.referral!.id, reason: "refund" }),
            delay(i % 6).then(() => client(i + 1).trackReferral({ code: code.code, referredUserId: user, transactionId: nextId("t") })),
          ]),
        );
        expect(outcomes(results)).toEqual({ ok: 120 });
      }
      const { granted, standing } = await t.db.one(sql.type(z.object({ granted: z.bigint(), standing: z.bigint() }))`
        SELECT p.rewards_granted_minor AS granted,
          (SELECT COALESCE(sum(r.amount_earned_minor), 0)::bigint FROM referral_trackings r
            WHERE r.program_id = p.id AND r.payout_status <> 'REVERSED') AS standing
        FROM referral_programs p WHERE p.program_key = ${program.programKey}`);
      expect(granted).toBe(standing);
    });

    it("one user's purchases racing for the last of the budget in a one-time program: the others are ALREADY_CONVERTED", async () => {
      for (let round = 0; round < 5; round++) {
        const { code } = await programWithCode(t, { budgetMinor: 1500n });
        const user = nextId("u");
        const results = await trackAll(20, () => ({ code: code.code, referredUserId: user, transactionId: nextId("t") }));
        expect(outcomes(results)).toEqual({ ok: 1, ALREADY_CONVERTED: 19 });
      }
    });

    it("a code suspended while conversions stream in: the suspension's answer counts every conversion recorded", async () => {
      for (let round = 0; round < 6; round++) {
        const { code } = await programWithCode(t);
        let suspended: Promise<number> = Promise.resolve(-1);
        const results = await Promise.allSettled(
          Array.from({ length: 120 }, (_, i) => {
            if (i === 40) {
              suspended = delay(round).then(() =>
                t.grpc
                  .updateCode({ code: { code: code.code, status: CodeStatus.SUSPENDED }, updateMask: { paths: ["status"] } })
                  .then(({ code: updated }) => updated!.usesCount),
              );
            }
            return delay(i % 8).then(() => client(i).trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") }));
          }),
        );
        const counts = outcomes(results);
        expect(Object.keys(counts).every((k) => ["ok", "CODE_SUSPENDED"].includes(k))).toBe(true);
        // Every conversion recorded precedes the suspension: its answer counted them all.
        expect(await suspended).toBe(counts.ok ?? 0);
        expect((await t.grpc.getCode({ code: code.code })).code?.usesCount).toBe(counts.ok ?? 0);
      }
    });

    it("hold_days changed while conversions stream in: each conversion has the rule in force when it was recorded", async () => {
      const { program, code } = await programWithCode(t, { budgetMinor: 10_000_000n, holdDays: 0 });
      let changed: Promise<bigint> = Promise.resolve(-1n);
      const results = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => {
          if (i === 60) {
            changed = t.grpc
              .updateProgram({ program: { programKey: program.programKey, holdDays: 9 }, updateMask: { paths: ["hold_days"] } })
              .then(({ program: updated }) => updated!.rewardsGrantedMinor);
          }
          return client(i).trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") });
        }),
      );
      expect(outcomes(results)).toEqual({ ok: 200 });
      // What UpdateProgram's answer counted was recorded under the old hold (0 days), the rest under the new one.
      const { before } = await t.db.one(sql.type(z.object({ before: z.bigint() }))`
        SELECT COALESCE(sum(r.amount_earned_minor) FILTER (WHERE r.payable_at = r.converted_at), 0)::bigint AS before
        FROM referral_trackings r JOIN referral_programs p ON p.id = r.program_id WHERE p.program_key = ${program.programKey}`);
      expect(await changed).toBe(before);
    });

    it("600 conversions of one referrer racing, with reversals and payout changes among them: the running totals equal the sum of every conversion", async () => {
      const { program, code } = await programWithCode(t, { rewardAmountMinor: 7n }, nextId("heavy"));
      const referrer = code.userId;
      const first = await trackAll(300, () => ({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") }));
      expect(outcomes(first)).toEqual({ ok: 300 });
      const ids = first.map((r) => (r.status === "fulfilled" ? r.value.referral!.id : ""));
      // 300 more conversions, while 100 of the first are reversed and 100 paid (50 of those then reversed too: clawbacks).
      const results = await Promise.allSettled([
        ...Array.from({ length: 300 }, (_, i) => client(i).trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") })),
        ...ids.slice(0, 100).map((id, i) => client(i).reverseReferral({ id, reason: "refund" })),
        ...ids.slice(100, 200).map(async (id, i) => {
          await client(i).updatePayoutStatus({ referralIds: [id], payoutStatus: PayoutStatus.PAID, payoutReference: `paid-${i}` });
          if (i % 2 === 0) await client(i + 1).reverseReferral({ id, reason: "refund" });
        }),
      ]);
      expect(outcomes(results)).toEqual({ ok: 500 });
      const byKey = z.object({ payout_status: z.string(), clawback: z.boolean(), amount: z.bigint(), referrals: z.bigint() });
      const totals = await t.db.any(sql.type(byKey)`
        SELECT payout_status, clawback, sum(amount_minor)::bigint AS amount, sum(referrals)::bigint AS referrals
        FROM referrer_earnings WHERE referrer_user_id = ${referrer} GROUP BY 1, 2 HAVING sum(referrals) <> 0 ORDER BY 1, 2`);
      const summed = await t.db.any(sql.type(byKey)`
        SELECT payout_status, clawback, sum(amount_earned_minor)::bigint AS amount, count(*)::bigint AS referrals
        FROM referral_trackings WHERE referrer_user_id = ${referrer} GROUP BY 1, 2 ORDER BY 1, 2`);
      expect(totals).toEqual(summed);
      expect(summed).toEqual([
        { payout_status: "PAID", clawback: false, amount: 350n, referrals: 50n },
        { payout_status: "PENDING", clawback: false, amount: 2800n, referrals: 400n },
        { payout_status: "REVERSED", clawback: false, amount: 700n, referrals: 100n },
        { payout_status: "REVERSED", clawback: true, amount: 350n, referrals: 50n },
      ]);
      const { earnings } = await t.grpc.getUserEarnings({ userId: referrer, programKey: program.programKey });
      expect(earnings).toMatchObject([
        { currency: "USD", totalMinor: 3150n, pendingMinor: 0n, payableMinor: 2800n, paidMinor: 350n, reversedMinor: 1050n, clawbackMinor: 350n, referralCount: 600n },
      ]);
    });

    it("afterwards every invariant of faults/invariants.ts holds on the whole database", async () => {
      expect((await checkInvariants(t.databaseUrl)).length).toBeGreaterThan(0);
    });
  });
}
