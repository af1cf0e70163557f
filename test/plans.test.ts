import pg from "pg";
import type { CommonQueryMethods } from "slonik";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { captureStatements } from "../src/db/capture-statements.ts";
import { findCodesForValidation, insertCode, insertCodes, listCodes } from "../src/codes/repository.ts";
import { findConversionContexts } from "../src/referrals/repository.ts";
import { topReferrers } from "../src/stats/repository.ts";
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

/**
 * The plan of `statement` as text: generic by default, as the service's
 * sessions plan every statement (plan_cache_mode, src/db/pool.ts); custom,
 * planned with the values, as with DATABASE_PREPARED_STATEMENTS=false.
 */
async function preparedPlan(client: pg.Client, statement: string, types: string, values: string, mode: "generic" | "custom" = "generic"): Promise<string> {
  await client.query(`SET plan_cache_mode = force_${mode}_plan`);
  await client.query(`PREPARE planned(${types}) AS ${statement}`);
  try {
    const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE planned(${values})`);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("DEALLOCATE planned");
  }
}

/**
 * A database of its own for one describe block: migrated, then `seed` run in
 * it before the block's tests, dropped after them. `withClient` lends a
 * connection to it.
 */
function seededDatabase(seed: readonly string[]) {
  let databaseUrl = "";
  async function withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }
  beforeAll(async () => {
    databaseUrl = await createDatabase(inject("adminUrl"));
    await runMigrations(databaseUrl);
    await withClient(async (c) => {
      for (const statement of seed) await c.query(statement);
    });
  });
  afterAll(async () => {
    await dropDatabase(inject("adminUrl"), databaseUrl);
  });
  return { withClient };
}

describe("plans of the hot statements on small tables", () => {
  // A new deployment's thousand codes, analyzed: small enough that a
  // hash of the whole table looks cheaper to the planner than index probes.
  const db = seededDatabase([
    `INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency)
     VALUES ('plans', 'plans', 'FIXED', 100, 'USD')`,
    `INSERT INTO referral_codes (code, user_id, program_id, slot)
     SELECT 'PLAN' || i, 'user-' || i, (SELECT id FROM referral_programs), 1 FROM generate_series(1, 1000) AS i`,
    "ANALYZE",
  ]);

  async function expectCodeIndexProbes(statement: string, types: string, values: string) {
    await db.withClient(async (c) => {
      const plan = await preparedPlan(c, statement, types, values);
      expect(plan).toContain("Index Scan using referral_codes_code_key on referral_codes");
      expect(plan).not.toMatch(/Seq Scan on referral_codes/);
    });
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
  it("a conversion's update of uses_count can be a HOT update: no index of referral_codes names uses_count (key, INCLUDE, expression or predicate)", async () => {
    await db.withClient(async (c) => {
      const { rows } = await c.query<{ index: string; definition: string }>(`
        SELECT i.indexrelid::regclass::text AS index, pg_get_indexdef(i.indexrelid) AS definition
        FROM pg_index i WHERE i.indrelid = 'referral_codes'::regclass`);
      expect(rows.length).toBeGreaterThan(5);
      expect(rows.filter((row) => /\buses_count\b/.test(row.definition))).toEqual([]);
      // What ListCodes by EXHAUSTED walks instead: a column that changes only when a code becomes (or stops being) exhausted.
      expect(rows.find((row) => row.index === "referral_codes_program_id_exhausted_idx")?.definition).toMatch(/WHERE \(\(status = 'ACTIVE'::text\) AND exhausted\)/);
    });
  });

  it("exhausted is kept equal to uses_count >= max_uses through every update, and the database refuses a row where it is not", async () => {
    await db.withClient(async (c) => {
      const { rows } = await c.query<{ id: string }>("SELECT id::text AS id FROM referral_codes WHERE code = 'PLAN1'");
      const id = rows[0]!.id;
      const exhausted = async () => (await c.query<{ exhausted: boolean }>("SELECT exhausted FROM referral_codes WHERE id = $1", [id])).rows[0]!.exhausted;
      await c.query("UPDATE referral_codes SET max_uses = 2 WHERE id = $1", [id]);
      await c.query("UPDATE referral_codes SET uses_count = uses_count + 1 WHERE id = $1", [id]);
      expect(await exhausted()).toBe(false);
      await c.query("UPDATE referral_codes SET uses_count = uses_count + 1 WHERE id = $1", [id]);
      expect(await exhausted()).toBe(true);
      await c.query("UPDATE referral_codes SET max_uses = 3 WHERE id = $1", [id]);
      expect(await exhausted()).toBe(false);
      await c.query("UPDATE referral_codes SET max_uses = 2 WHERE id = $1", [id]);
      await c.query("UPDATE referral_codes SET uses_count = uses_count - 1 WHERE id = $1", [id]);
      expect(await exhausted()).toBe(false);
      await expect(c.query("UPDATE referral_codes SET exhausted = true WHERE id = $1", [id])).rejects.toThrow(/referral_codes_exhausted_agrees/);
      await expect(
        c.query("INSERT INTO referral_codes (code, user_id, program_id, slot, max_uses, uses_count) SELECT 'PLANX', 'x', id, 1, 1, 1 FROM referral_programs"),
      ).rejects.toThrow(/referral_codes_exhausted_agrees/);
    });
  });
});

describe("plan of the leaderboard over a range of days", () => {
  // 4 programs x 400 days x 50 referrers a day, vacuumed and analyzed as
  // autovacuum leaves a table: the visibility map set, so index-only scans
  // are priced as such.
  const db = seededDatabase([
    `INSERT INTO referrer_stats_daily (program_id, referrer_user_id, day, conversions, earned_minor, paid_minor)
     SELECT p, 'user-' || ((d * 37 + r) % 5000), DATE '2026-01-01' + d, 1 + r % 3, 100 * (1 + r % 3), 100
     FROM generate_series(1, 4) AS p, generate_series(0, 399) AS d, generate_series(1, 50) AS r`,
    "VACUUM ANALYZE referrer_stats_daily",
  ]);

  const range = { from: new Date("2026-12-01T00:00:00Z"), to: new Date("2027-01-01T00:00:00Z") };
  const pages = [
    { name: "first page", after: null, types: "bigint, date, date, int", values: "1, '2026-12-01', '2027-01-01', 101" },
    { name: "next page", after: { value: 3n, referrerUserId: "user-42" }, types: "bigint, date, date, bigint, text, int", values: "1, '2026-12-01', '2027-01-01', -3, 'user-42', 101" },
  ];

  for (const { name, after, types, values } of pages) {
    it(`ListTopReferrers, ${name}: the range read from the primary key alone (index-only), hashed by referrer, only the page sorted`, async () => {
      const statement = await statementOf((db) => topReferrers(db, { programId: 1n, range, orderBy: "conversions", after, limit: 101 }));
      await db.withClient(async (c) => {
        for (const mode of ["generic", "custom"] as const) {
          const plan = await preparedPlan(c, statement, types, values, mode);
          expect(plan, mode).toContain("Index Only Scan using referrer_stats_daily_pkey on referrer_stats_daily");
          expect(plan, mode).toContain("HashAggregate");
          // No sort of the range's rows by referrer: the one sort is the top-N of the groups.
          expect(plan, mode).not.toMatch(/GroupAggregate|Sort Key: referrer_stats_daily\.referrer_user_id|Heap Scan/);
        }
      });
    });
  }
});

describe("plan of ListCodes by a small program among many codes", () => {
  // 13 programs of 10,000 codes each, made side by side (as codes arrive:
  // no program's rows lie together), then a new program with 50: the
  // generic plan prices "this program" at 1/14 of the table. A few codes in
  // a hundred in a rare state: INACTIVE, SUSPENDED, expired, exhausted; the
  // rest ACTIVE, a tenth of them with a future expiry.
  const db = seededDatabase([
    `INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency)
     SELECT 'plans-' || p, 'plans ' || p, 'FIXED', 100, 'USD' FROM generate_series(1, 14) AS p`,
    `INSERT INTO referral_codes (code, user_id, program_id, slot, status, expires_at, max_uses, uses_count, exhausted)
     SELECT 'P' || p || 'C' || i, 'user-' || i, p, 1,
       CASE WHEN i % 50 = 7 THEN 'INACTIVE' WHEN i % 100 = 13 THEN 'SUSPENDED' ELSE 'ACTIVE' END,
       CASE WHEN i % 100 = 21 THEN now() - interval '1 day' WHEN i % 10 = 9 THEN now() + interval '1 year' END,
       CASE WHEN i % 20 = 0 THEN 5 END, CASE WHEN i % 200 = 0 THEN 5 ELSE 0 END, i % 200 = 0
     FROM generate_series(1, 10000) AS i, generate_series(1, 13) AS p ORDER BY i, p`,
    `INSERT INTO referral_codes (code, user_id, program_id, slot) SELECT 'NEW' || i, 'newcomer-' || i, 14, 1 FROM generate_series(1, 50) AS i`,
    "VACUUM ANALYZE referral_codes",
  ]);

  const cases = [
    { name: "by program", filter: { userId: null, programKey: "plans-14" }, types: "text, int", values: "'plans-14', 51", index: "referral_codes_program_id_id_idx" },
    { name: "by user", filter: { userId: "user-7", programKey: null }, types: "text, int", values: "'user-7', 51", index: "referral_codes_user_id_id_idx" },
    { name: "by user and program", filter: { userId: "user-7", programKey: "plans-3" }, types: "text, text, int", values: "'user-7', 'plans-3', 51", index: "referral_codes_user_slot_key" },
  ];

  for (const { name, filter, types, values, index } of cases) {
    it(`${name}: walks that filter's index in page order, not the primary key`, async () => {
      const statement = await statementOf((db) => listCodes(db, { ...filter, status: null, afterId: null, limit: 51 }, new Date()));
      await db.withClient(async (c) => {
        const plan = await preparedPlan(c, statement, types, values);
        expect(plan).toContain(`Index Scan using ${index} on referral_codes`);
        expect(plan).not.toMatch(/referral_codes_pkey|Seq Scan on referral_codes/);
      });
    });
  }

  // Codes in one rare state, of a program or of every program (an operator's
  // "every suspended code"): one range of a partial index in page order,
  // whether the program holds none of them or thousands; ACTIVE, which most
  // codes are, walks the program's index (or the primary key) and finds a page at once.
  const statusCases = [
    { status: "INACTIVE", inProgram: "referral_codes_program_id_status_id_idx", alone: "referral_codes_status_id_idx" },
    { status: "SUSPENDED", inProgram: "referral_codes_program_id_status_id_idx", alone: "referral_codes_status_id_idx" },
    { status: "EXPIRED", inProgram: "referral_codes_program_id_expiring_idx", alone: "referral_codes_expiring_id_idx" },
    { status: "EXHAUSTED", inProgram: "referral_codes_program_id_exhausted_idx", alone: "referral_codes_exhausted_id_idx" },
    { status: "ACTIVE", inProgram: "referral_codes_program_id_id_idx", alone: "referral_codes_pkey" },
  ] as const;
  const scopes = [
    { scope: "by program and status", programs: ["plans-3", "plans-14"], index: (c: (typeof statusCases)[number]) => c.inProgram },
    { scope: "by status alone", programs: [null], index: (c: (typeof statusCases)[number]) => c.alone },
  ] as const;

  for (const statusCase of statusCases) {
    for (const { scope, programs, index: indexOf } of scopes) {
      const { status } = statusCase;
      const index = indexOf(statusCase);
      it(`${scope} ${status}: walks ${index} in page order`, async () => {
        await db.withClient(async (c) => {
          // The first page, and a later one (after an id: another statement).
          for (const afterId of [null, 1n]) {
            const statement = await statementOf((db) => listCodes(db, { userId: null, programKey: programs[0], status, afterId, limit: 51 }, new Date()));
            const withTime = statement.includes("to_timestamp");
            const types = [...(programs[0] === null ? [] : ["text"]), ...(withTime ? ["float8"] : []), ...(afterId === null ? [] : ["bigint"]), "int"];
            for (const program of programs) {
              const values = [...(program === null ? [] : [`'${program}'`]), ...(withTime ? [`${Date.now() / 1000}`] : []), ...(afterId === null ? [] : ["1"]), "51"];
              const plan = await preparedPlan(c, statement, types.join(", "), values.join(", "));
              const page = `${program ?? "any program"}, after ${afterId}`;
              expect(plan, page).toContain(`Index Scan using ${index} on referral_codes`);
              expect(plan, page).not.toMatch(/Seq Scan on referral_codes|Sort/);
              if (program !== null) expect(plan, page).not.toMatch(/referral_codes_pkey/);
            }
          }
        });
      });
    }
  }
});
