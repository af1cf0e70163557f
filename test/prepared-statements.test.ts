import { sql } from "slonik";
import { z } from "zod";
import { describe, expect, it } from "vitest";
import { nextId, programWithCode } from "./support/referrals.ts";
import { startTestServer } from "./support/server.ts";

const HOT_STATEMENTS = ["find_codes_for_validation", "find_conversion_context", "record_conversion"];

/** The statements prepared on the pool's one connection after a ValidateCode and a TrackReferral. */
async function preparedAfterCalls(preparedStatements: boolean): Promise<readonly string[]> {
  const t = await startTestServer({ poolSize: 1, preparedStatements });
  try {
    const { code } = await programWithCode(t);
    for (let i = 0; i < 3; i++) {
      expect((await t.grpc.validateCode({ code: code.code })).valid).toBe(true);
      await t.grpc.trackReferral({ code: code.code, referredUserId: nextId("u"), transactionId: nextId("t") });
    }
    return await t.db.anyFirst(sql.type(z.object({ name: z.string() }))`SELECT name FROM pg_prepared_statements ORDER BY name`);
  } finally {
    await t.close();
  }
}

describe("prepared statements", () => {
  it("ValidateCode's and TrackReferral's statements are prepared once per connection, not planned on every call", async () => {
    expect(await preparedAfterCalls(true)).toEqual(expect.arrayContaining(HOT_STATEMENTS));
  });

  it("switched off (PgBouncer before 1.21 in transaction pooling), every statement goes unnamed", async () => {
    expect(await preparedAfterCalls(false)).toEqual([]);
  });
});
