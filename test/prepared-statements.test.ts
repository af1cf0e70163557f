import { sql } from "slonik";
import { z } from "zod";
import { describe, expect, it } from "vitest";
import { nextId, programWithCode } from "./support/referrals.ts";
import { startTestServer } from "./support/server.ts";

const HOT_STATEMENTS = ["find_codes_for_validation", "find_conversion_contexts", "record_conversion"];

/** The statements prepared on the pool's one connection after a ValidateCode and a TrackReferral. */
async function preparedAfterCalls(preparedStatements: boolean): Promise<readonly string[]> {
  const t = await startTestServer({ poolSize: 1, preparedStatements });
  try {
    const { code } = await programWithCode(t);
    for (let i = 0; i < 3; i++) {
      expect((await t.grpc.validateCode({ code: code.code })).valid).toBe(true);
      await t.grpc.trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") });
    }
    const generic = await t.db.oneFirst(sql.type(z.object({ setting: z.string() }))`SELECT current_setting('plan_cache_mode') AS setting`);
    expect(generic).toBe(preparedStatements ? "force_generic_plan" : "auto");
    // A prepared statement that was executed with a generic plan counts it (PostgreSQL 14+).
    const rows = await t.db.any(sql.type(z.object({ name: z.string(), generic_plans: z.bigint(), custom_plans: z.bigint() }))`
      SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name`);
    for (const row of rows) expect(row).toMatchObject({ generic_plans: expect.any(BigInt), custom_plans: 0n });
    return rows.map((row) => row.name);
  } finally {
    await t.close();
  }
}

describe("prepared statements", () => {
  it("ValidateCode's and TrackReferral's statements are prepared once per connection and run generic plans, not planned on every call", async () => {
    expect(await preparedAfterCalls(true)).toEqual(expect.arrayContaining(HOT_STATEMENTS));
  });

  it("switched off (PgBouncer before 1.21 in transaction pooling), every statement goes unnamed", async () => {
    expect(await preparedAfterCalls(false)).toEqual([]);
  });
});
