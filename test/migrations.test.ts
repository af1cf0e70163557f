import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { migrate } from "postgres-migrations";
import { afterAll, describe, expect, inject, it } from "vitest";
import { MIGRATIONS_DIR, runMigrations } from "../src/db/migrate.ts";
import { createDatabase, dropDatabase } from "./support/database.ts";

const created: string[] = [];
async function freshDatabase(): Promise<string> {
  const url = await createDatabase(inject("adminUrl"));
  created.push(url);
  return url;
}
afterAll(async () => {
  for (const url of created) await dropDatabase(inject("adminUrl"), url);
});

async function query<T>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Makes `dir` hold the migrations up to number `last`, as a deployment that stopped there had them. */
function migrationsUpTo(dir: string, last: number): string {
  rmSync(dir, { recursive: true, force: true });
  cpSync(MIGRATIONS_DIR, dir, { recursive: true, filter: (file) => !/\/(\d{4})_[^/]*$/.test(file) || Number(/\/(\d{4})_[^/]*$/.exec(file)![1]) <= last });
  return dir;
}

/**
 * A fresh database migrated up to number `last` (a deployment that stopped
 * there), handed to `work` with a connected client and the directory of
 * those migrations; everything is removed afterwards.
 */
async function withDatabaseAt(last: number, work: (client: pg.Client, dir: string) => Promise<void>): Promise<void> {
  const url = await freshDatabase();
  const dir = migrationsUpTo(mkdtempSync(path.join(tmpdir(), "referral-sql-")), last);
  try {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await migrate({ client }, dir);
      await work(client, dir);
    } finally {
      await client.end();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** runMigrations in a process of its own, as a replica starting would. */
function migrateInProcess(url: string): Promise<number | null> {
  const script = `import { runMigrations } from ${JSON.stringify(path.resolve("src/db/migrate.ts"))}; await runMigrations(${JSON.stringify(url)});`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "inherit" });
  return new Promise((resolve) => child.once("exit", resolve));
}

describe("migrations", () => {
  it("three processes and five in-process runs starting at once apply each migration exactly once", async () => {
    const url = await freshDatabase();
    const results = await Promise.all([
      ...[1, 2, 3].map(() => migrateInProcess(url)),
      ...[1, 2, 3, 4, 5].map(() => runMigrations(url).then(() => 0)),
    ]);
    expect(results).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const applied = await query<{ id: number; name: string; hash: string }>(url, "SELECT id, name, hash FROM migrations ORDER BY id");
    expect(applied.map((m) => m.name)).toEqual(["create-migrations-table", "referral_programs", "referral_codes", "referral_trackings", "referral_trackings_converted_at", "referral_codes_request_id_partial", "referral_codes_request_id_key", "referral_trackings_uses_per_code", "referral_trackings_use_key", "referral_events", "referee_rewards", "program_stats", "referral_event_snapshots", "payouts", "referrer_earnings", "referral_trackings_in_hold", "referrer_stats_daily_range", "referral_codes_program_id_n_distinct", "referral_programs_name_partial_key", "referral_codes_rare_status_idx", "referral_codes_expiring_idx", "referral_codes_exhausted", "referral_codes_exhausted_check", "referral_codes_exhausted_validate", "referral_codes_exhausted_idx", "referral_codes_rare_status_id_idx", "referral_codes_expiring_id_idx", "referral_codes_exhausted_id_idx"]);
    for (const migration of applied) expect(migration.hash).toMatch(/^[0-9a-f]{40}$/);
    const tables = await query<{ table_name: string }>(
      url,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'referral_%' ORDER BY 1",
    );
    expect(tables.map((t) => t.table_name)).toEqual(["referral_codes", "referral_event_log", "referral_events", "referral_programs", "referral_trackings"]);
    const payoutTables = await query<{ table_name: string }>(
      url,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'payout%' ORDER BY 1",
    );
    expect(payoutTables.map((t) => t.table_name)).toEqual(["payout_accounts", "payout_runs", "payouts"]);
  });

  it("a second run applies nothing", async () => {
    const url = await freshDatabase();
    expect(await runMigrations(url)).toHaveLength(28);
    expect(await runMigrations(url)).toEqual([]);
  });

  it("each event snapshot type mirrors its table, column for column, in order", async () => {
    const url = await freshDatabase();
    await runMigrations(url);
    const columns = (relation: string) =>
      query<{ name: string; type: string }>(
        url,
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
         WHERE attrelid = '${relation}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      );
    for (const [table, snapshot] of [
      ["referral_programs", "referral_program_snapshot"],
      ["referral_codes", "referral_code_snapshot"],
      ["referral_trackings", "referral_snapshot"],
      ["payouts", "payout_snapshot"],
    ] as const) {
      const expected = await columns(table);
      expect(expected.length).toBeGreaterThan(10);
      expect(await columns(snapshot), `${snapshot} must mirror ${table}: add a column to both`).toEqual(expected);
    }
  });

  it("moves the events logged before 0012 into typed snapshots, every value as it was", async () => {
    await withDatabaseAt(11, async (client, dir) => {
      await client.query(`
        INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency, budget_minor)
        VALUES ('upgrade', 'Upgrade', 'FIXED', 999999999999, 'EUR', 999999999999999);
        INSERT INTO referral_codes (code, user_id, program_id, slot, metadata) VALUES ('UPGRADE1', 'alice', 1, 1, '{"a": [1, "ü"]}');
        UPDATE referral_codes SET status = 'SUSPENDED', updated_at = now() + interval '1 second';
        UPDATE referral_programs SET name = 'Renamed', updated_at = now() + interval '1 second';
        INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id, transaction_amount_minor,
          amount_earned_minor, referee_reward_minor, currency, converted_at, first_conversion, holds_use, payable_at)
        VALUES (1, 1, 'alice', 'bob', 'tx-1', 100, 999999999999, 7, 'EUR', '2026-01-02T03:04:05.123456Z', true, true, '2026-01-09T03:04:05.123456Z');
        UPDATE referral_trackings SET payout_status = 'PAID', paid_at = now(), payout_reference = 'po_1';
      `);
      const before = (await client.query<{ id: string; subject: unknown; previous: unknown }>(
        "SELECT id::text, subject, previous FROM referral_events ORDER BY id",
      )).rows;
      expect(before.map((e) => e.subject)).toHaveLength(6);
      await migrate({ client }, migrationsUpTo(dir, 12));
      const after = (await client.query<{ id: string; subject: unknown; previous: unknown }>(`
        SELECT id::text, COALESCE(to_jsonb(program), to_jsonb(code), to_jsonb(referral)) AS subject
          -- nothing reads a program's previous row: 0012 keeps none
          , CASE WHEN type = 'PROGRAM_UPDATED' THEN NULL ELSE COALESCE(to_jsonb(previous_code), to_jsonb(previous_referral)) END AS previous
        FROM referral_events ORDER BY id
      `)).rows;
      const withoutProgramPrevious = before.map((e, i) => (i === 3 ? { ...e, previous: null } : e));
      expect(after).toEqual(withoutProgramPrevious);
    });
  });

  it("0014 fills the running earnings from the conversions recorded before it, and bulk inserts keep them", async () => {
    const conversions = (from: number, to: number) => `
      INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id,
        amount_earned_minor, currency, converted_at, first_conversion, holds_use, payable_at, payout_status, paid_at, reversed_at, clawback)
      SELECT 1, 1, CASE WHEN n > 1000 THEN 'carol-' || n % 150 ELSE 'alice' END, 'bob-' || n, 'tx-' || n, n, CASE WHEN n % 2 = 0 THEN 'EUR' ELSE 'USD' END, now(), true, true, now(),
        (ARRAY['PENDING', 'PAID', 'REVERSED'])[n % 3 + 1], CASE WHEN n % 3 = 1 THEN now() END, CASE WHEN n % 3 = 2 THEN now() END, n % 6 = 2
      FROM generate_series(${from}, ${to}) AS n`;
    const totals = `
      SELECT currency, payout_status, clawback, sum(amount_minor)::text AS amount, sum(referrals)::text AS referrals
      FROM referrer_earnings GROUP BY 1, 2, 3 HAVING sum(referrals) <> 0 ORDER BY 1, 2, 3`;
    const summed = `
      SELECT currency, payout_status, clawback, sum(amount_earned_minor)::text AS amount, count(*)::text AS referrals
      FROM referral_trackings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;
    await withDatabaseAt(13, async (client) => {
      await client.query(`
        INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency) VALUES ('upgrade', 'Upgrade', 'FIXED', 1, 'EUR');
        INSERT INTO referral_codes (code, user_id, program_id, slot) VALUES ('UPGRADE1', 'alice', 1, 1);
        ${conversions(1, 12)};
      `);
      await migrate({ client }, MIGRATIONS_DIR);
      const backfilled = (await client.query(totals)).rows;
      expect(backfilled).toEqual((await client.query(summed)).rows);
      expect(backfilled).toHaveLength(6);
      // A bulk statement (more than 100 rows) adds a row per key at once; a small one per key.
      await client.query(conversions(13, 400));
      await client.query(conversions(401, 402));
      // Over 100 keys (150 referrers): one new row per key; then a delete and an update of them all.
      await client.query(conversions(1001, 1600));
      await client.query("DELETE FROM referral_trackings WHERE referred_user_id IN ('bob-1', 'bob-2', 'bob-3', 'bob-1001', 'bob-1002')");
      await client.query("UPDATE referral_trackings SET payout_status = 'PAID', paid_at = now() WHERE payout_status = 'PENDING' AND referred_user_id LIKE 'bob-1%'");
      expect((await client.query(totals)).rows).toEqual((await client.query(summed)).rows);
    });
  });

  it("0021–0023 mark the codes exhausted before them, and the database keeps the mark from then on", async () => {
    await withDatabaseAt(20, async (client) => {
      await client.query(`
        INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency) VALUES ('upgrade', 'Upgrade', 'FIXED', 1, 'EUR');
        INSERT INTO referral_codes (code, user_id, program_id, slot, max_uses, uses_count)
        VALUES ('FULL1', 'alice', 1, 1, 2, 2), ('OPEN1', 'bob', 1, 1, 2, 1), ('FREE1', 'carol', 1, 1, NULL, 9);
      `);
      await migrate({ client }, MIGRATIONS_DIR);
      const marks = async () =>
        Object.fromEntries((await client.query<{ code: string; exhausted: boolean }>("SELECT code, exhausted FROM referral_codes ORDER BY code")).rows.map((r) => [r.code, r.exhausted]));
      expect(await marks()).toEqual({ FREE1: false, FULL1: true, OPEN1: false });
      await client.query("UPDATE referral_codes SET uses_count = uses_count + 1 WHERE code = 'OPEN1'");
      await client.query("UPDATE referral_codes SET max_uses = 3 WHERE code = 'FULL1'");
      expect(await marks()).toEqual({ FREE1: false, FULL1: false, OPEN1: true });
      const { rows } = await client.query<{ validated: boolean }>("SELECT convalidated AS validated FROM pg_constraint WHERE conname = 'referral_codes_exhausted_agrees'");
      expect(rows).toEqual([{ validated: true }]);
    });
  });

  it("an applied migration that was edited afterwards stops the start", async () => {
    await withDatabaseAt(Infinity, async (client, dir) => {
      writeFileSync(path.join(dir, "0002_referral_codes.sql"), "-- edited after it was applied\nSELECT 1;\n");
      await expect(migrate({ client }, dir)).rejects.toThrow(/hash/i);
    });
  });
});
