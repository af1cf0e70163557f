import pg from "pg";
import type { CommonQueryMethods } from "slonik";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { captureStatements } from "../src/db/capture-statements.ts";
import { findCodesForValidation, insertCode, insertCodes } from "../src/codes/repository.ts";
import { findConversionContexts } from "../src/referrals/repository.ts";
import { runMigrations } from "../src/db/migrate.ts";
import { createDatabase, dropDatabase } from "./support/database.ts";

/** The statement text a repository function sends (placeholders `$1`…), captured instead of run. */
async function statementOf(send: (db: CommonQueryMethods) => Promise<unknown>): Promise<string> {
  const { db, taken } = captureStatements();
  await send(db);
  const [statement] = taken;
  if (statement === undefined) throw new Error("the repository sent no statement");
  return statement.sql.replaceAll("$slonik_", "$");
}

/** The generic plan of `statement` (as the service runs its prepared statements), as text. */
async function genericPlan(client: pg.Client, statement: string, types: string, values: string): Promise<string> {
  await client.query("SET plan_cache_mode = force_generic_plan");
  await client.query(`PREPARE planned(${types}) AS ${statement}`);
  try {
    const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE planned(${values})`);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("DEALLOCATE planned");
  }
}

describe("plans of the hot statements on small tables", () => {
  let databaseUrl: string;
  const client = () => new pg.Client({ connectionString: databaseUrl });

  beforeAll(async () => {
    databaseUrl = await createDatabase(inject("adminUrl"));
    await runMigrations(databaseUrl);
    const c = client();
    await c.connect();
    try {
      // A new deployment's thousand codes, analyzed: small enough that a
      // hash of the whole table looks cheaper to the planner than index probes.
      await c.query(`
        INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency)
        VALUES ('plans', 'plans', 'FIXED', 100, 'USD')`);
      await c.query(`
        INSERT INTO referral_codes (code, user_id, program_id, slot)
        SELECT 'PLAN' || i, 'user-' || i, (SELECT id FROM referral_programs), 1 FROM generate_series(1, 1000) AS i`);
      await c.query("ANALYZE");
    } finally {
      await c.end();
    }
  });

  afterAll(async () => {
    await dropDatabase(inject("adminUrl"), databaseUrl);
  });

  async function expectCodeIndexProbes(statement: string, types: string, values: string) {
    const c = client();
    await c.connect();
    try {
      const plan = await genericPlan(c, statement, types, values);
      expect(plan).toContain("Index Scan using referral_codes_code_key on referral_codes");
      expect(plan).not.toMatch(/Seq Scan on referral_codes/);
    } finally {
      await c.end();
    }
  }

  it("ValidateCode's batched lookup probes the code index for each code instead of scanning the table", async () => {
    const statement = await statementOf((db) => findCodesForValidation(db, [{ code: "PLAN1", referredUserId: null }]));
    await expectCodeIndexProbes(statement, "text[], text[]", "ARRAY['PLAN1', 'PLAN2'], ARRAY[NULL, NULL]::text[]");
  });

  it("TrackReferral's batched read probes the code index for each code instead of scanning the table", async () => {
    const statement = await statementOf((db) => findConversionContexts(db, [{ code: "PLAN1", transactionId: "t", referredUserId: "u" }]));
    await expectCodeIndexProbes(statement, "text[], text[], text[]", "ARRAY['PLAN1', 'PLAN2'], ARRAY['t1', 't2'], ARRAY['u1', 'u2']");
  });

  it("CreateCode finds a free slot as BatchCreateCodes does: the user's codes probed, not every one of max_codes_per_user", async () => {
    const newCode = { code: "PLANX", programId: 1n, userId: "user-1", vanity: false, maxUses: null, expiresAt: null, requestId: null, metadata: {}, unlessUsableExists: false };
    const single = await statementOf((db) => insertCode(db, newCode, new Date()));
    const batch = await statementOf((db) => insertCodes(db, { programId: 1n, userIds: ["user-1"], codes: ["PLANX"] }, new Date()));
    for (const statement of [single, batch]) {
      expect(statement).not.toMatch(/generate_series/);
      expect(statement).toContain("SELECT taken.slot + 1 AS slot FROM referral_codes taken");
    }
  });
});
