import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestClock } from "./support/clock.ts";
import { programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

/**
 * occurred_at is bounded below twice: by the code's created_at (a conversion
 * cannot go through a code that did not exist yet) and by MAX_BACKDATE_DAYS
 * before the call. Codes are created at the database's time; the service's
 * clock starts 10 days ahead of it, so a code here was created "10 days ago".
 */
const DAY = TestClock.DAY;
const clock = new TestClock(new Date(Date.now() + 10 * DAY));
let t: TestServer;
let strict: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
  strict = await startTestServer({ clock, server: { maxBackdateDays: 0 } });
});
afterAll(async () => {
  await t?.close();
  await strict?.close();
});

const ago = (ms: number) => timestampFromDate(new Date(clock.now().getTime() - ms));

/** What a refused conversion must leave untouched: the program's rows and the code's uses. */
async function written(programKey: string) {
  return t.db.one(sql.type(z.object({ referrals: z.number(), uses: z.number(), granted: z.bigint() }))`
    SELECT (SELECT count(*)::int FROM referral_trackings r WHERE r.program_id = p.id) AS referrals,
      (SELECT sum(uses_count)::int FROM referral_codes c WHERE c.program_id = p.id) AS uses, p.rewards_granted_minor AS granted
    FROM referral_programs p WHERE p.program_key = ${programKey}`);
}

async function expectRefused(call: () => Promise<unknown>, programKey: string, message: RegExp) {
  const before = await written(programKey);
  const error = await callError(call());
  expect(error).toMatchObject({ code: Code.InvalidArgument, info: { reason: "INVALID_ARGUMENT", metadata: { field: "occurred_at" } } });
  expect(error.message).toMatch(message);
  expect(await written(programKey)).toEqual(before);
}

describe("backdated conversions", () => {
  it("before the code existed: INVALID_ARGUMENT naming occurred_at, with validate_only too, and nothing is written", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 100_000n });
    const createdAt = timestampDate(code.createdAt!);
    const before = timestampFromDate(new Date(createdAt.getTime() - 1));
    for (const validateOnly of [false, true]) {
      await expectRefused(() => track(t, code.code, { occurredAt: before, validateOnly }), program.programKey, /before the code was created/);
    }
    // The code's own creation time is fine.
    const { referral } = await track(t, code.code, { occurredAt: timestampFromDate(createdAt) });
    expect(timestampDate(referral!.convertedAt!).getTime()).toBe(createdAt.getTime());
  });

  it("more than MAX_BACKDATE_DAYS (30) ago: INVALID_ARGUMENT naming the limit; exactly 30 days ago is recorded", async () => {
    clock.advance(30 * DAY); // the code below was created 40 days ago
    const { program, code } = await programWithCode(t, { holdDays: 14 });
    for (const validateOnly of [false, true]) {
      await expectRefused(() => track(t, code.code, { occurredAt: ago(30 * DAY + 1), validateOnly }), program.programKey, /30 days.*MAX_BACKDATE_DAYS/);
    }
    const atBound = ago(30 * DAY);
    const dry = await track(t, code.code, { occurredAt: atBound, validateOnly: true });
    expect(dry.referral?.id).toBe("");
    expect((await written(program.programKey)).referrals).toBe(0);
    const { referral } = await track(t, code.code, { occurredAt: atBound });
    expect(timestampDate(referral!.convertedAt!).getTime()).toBe(timestampDate(atBound).getTime());
    // The hold runs from occurred_at: 14 days of it are already over.
    expect(timestampDate(referral!.payableAt!).getTime()).toBe(timestampDate(atBound).getTime() + 14 * DAY);
    expect(timestampDate(referral!.payableAt!).getTime()).toBeLessThan(clock.now().getTime());
  });

  it("with MAX_BACKDATE_DAYS 0 only the call's own time is taken", async () => {
    const { program, code } = await programWithCode(strict);
    for (const validateOnly of [false, true]) {
      await expectRefused(() => track(strict, code.code, { occurredAt: ago(1), validateOnly }), program.programKey, /MAX_BACKDATE_DAYS is 0/);
    }
    const now = ago(0);
    expect(timestampDate((await track(strict, code.code, { occurredAt: now })).referral!.convertedAt!).getTime()).toBe(timestampDate(now).getTime());
    expect((await track(strict, code.code)).referral?.id).toMatch(/^[0-9a-f-]{36}$/);
  });
});
