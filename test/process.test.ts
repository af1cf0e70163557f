import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import pg from "pg";
import { createDatabase, dropDatabase, freePort, listening } from "./support/database.ts";
import { spawnServer } from "./support/server-process.ts";

const run = promisify(execFile);

/** Starts `node src/main.ts` with `env` and collects its stderr; resolves with the exit code. */
function runMain(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["src/main.ts"], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr })));
}

describe("configuration", () => {
  it.each([
    ["PORT", "abc"],
    ["DATABASE_POOL_SIZE", "0"],
    ["DATABASE_URL", "mysql://nope"],
    ["DATABASE_MIGRATIONS_URL", "mysql://nope"],
    ["LOG_LEVEL", "loud"],
    ["AUTH_TOKENS", "svc:superuser:abcd"],
    ["TLS_CERT_FILE", "/no/such/cert.pem"],
    ["MAX_BACKDATE_DAYS", "-1"],
  ])("a bad %s stops the process with one line naming it", async (name, value) => {
    const env: Record<string, string> = { [name]: value };
    if (name === "TLS_CERT_FILE") env.TLS_KEY_FILE = "/no/such/key.pem";
    const { code, stderr } = await runMain(env);
    expect(code).not.toBe(0);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
  });
});

describe("several replicas", () => {
  it("three servers started at the same moment on an empty database: migrations apply once, all three serve", async () => {
    const databaseUrl = await createDatabase(inject("adminUrl"));
    try {
      const servers = await Promise.all([1, 2, 3].map(() => spawnServer(databaseUrl)));
      try {
        const answers = await Promise.all(servers.map((server) => server.grpc.listPrograms({ pageSize: 1 })));
        expect(answers).toHaveLength(3);
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        const { rows } = await client.query<{ name: string; n: string }>("SELECT name, count(*) AS n FROM migrations GROUP BY name");
        await client.end();
        // Every file of sql/, and postgres-migrations' own table.
        const migrationFiles = readdirSync(path.resolve(import.meta.dirname, "../sql")).filter((file) => file.endsWith(".sql"));
        expect(rows).toHaveLength(migrationFiles.length + 1);
        for (const row of rows) expect(Number(row.n)).toBe(1);
      } finally {
        for (const code of await Promise.all(servers.map((server) => server.stop()))) expect(code).toBe(0);
      }
    } finally {
      await dropDatabase(inject("adminUrl"), databaseUrl);
    }
  });
});

describe("npm start without DATABASE_URL", () => {
  const dataDir = path.join(tmpdir(), `referral-embedded-${randomBytes(4).toString("hex")}`);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("runs an embedded PostgreSQL under the data directory, keeps data across restarts, and stops it on SIGTERM", async () => {
    const pgPort = await freePort();
    const env = { DATABASE_URL: "", EMBEDDED_POSTGRES_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(pgPort) };

    const first = await spawnServer("", env);
    const { stdout } = await run("node_modules/.bin/buf", ["curl", "--http2-prior-knowledge", "--list-services", `http://127.0.0.1:${first.port}`]);
    expect(stdout).toContain("referral.v1.ReferralCodeService");
    await first.grpc.createProgram({
      program: { programKey: "kept-program", name: "Kept", rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD" },
    });
    expect(await first.stop()).toBe(0);
    expect(await listening(pgPort)).toBe(false);

    const second = await spawnServer("", env);
    try {
      expect((await second.grpc.getProgram({ programKey: "kept-program" })).program?.name).toBe("Kept");
    } finally {
      expect(await second.stop()).toBe(0);
    }
    expect(await listening(pgPort)).toBe(false);
  });
});

describe("exit codes", () => {
  it("a process that imports the embedded PostgreSQL module keeps the exit code it ends with (a failed test run fails)", async () => {
    const script = 'await import("./src/db/embedded-postgres.ts"); process.exitCode = 3;';
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
    const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
    expect(code).toBe(3);
  });
});
