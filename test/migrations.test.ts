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
    expect(applied.map((m) => m.name)).toEqual(["create-migrations-table", "referral_programs", "referral_codes", "referral_trackings", "referral_trackings_converted_at", "referral_codes_request_id_partial", "referral_codes_request_id_key", "referral_trackings_uses_per_code", "referral_trackings_use_key", "referral_events", "referee_rewards", "program_stats"]);
    for (const migration of applied) expect(migration.hash).toMatch(/^[0-9a-f]{40}$/);
    const tables = await query<{ table_name: string }>(
      url,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'referral_%' ORDER BY 1",
    );
    expect(tables.map((t) => t.table_name)).toEqual(["referral_codes", "referral_event_log", "referral_events", "referral_programs", "referral_trackings"]);
  });

  it("a second run applies nothing", async () => {
    const url = await freshDatabase();
    expect(await runMigrations(url)).toHaveLength(12);
    expect(await runMigrations(url)).toEqual([]);
  });

  it("an applied migration that was edited afterwards stops the start", async () => {
    const url = await freshDatabase();
    const dir = mkdtempSync(path.join(tmpdir(), "referral-sql-"));
    try {
      cpSync(MIGRATIONS_DIR, dir, { recursive: true });
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await migrate({ client }, dir);
        writeFileSync(path.join(dir, "0002_referral_codes.sql"), "-- edited after it was applied\nSELECT 1;\n");
        await expect(migrate({ client }, dir)).rejects.toThrow(/hash/i);
      } finally {
        await client.end();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
