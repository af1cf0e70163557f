import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createDatabase, dropDatabase } from "../support/database.ts";

const run = promisify(execFile);
const hasTools = ["/usr/bin/h2load"].every((tool) => existsSync(tool));
if (!hasTools) console.log("skipping the bench smoke run: h2load (Debian's nghttp2-client) is not installed");

describe("npm run bench (smoke: tiny sizes)", () => {
  const out = path.join(tmpdir(), `bench-smoke-${process.pid}.json`);
  let databaseUrl = "";
  afterAll(async () => {
    rmSync(out, { force: true });
    if (databaseUrl) await dropDatabase(inject("adminUrl"), databaseUrl);
  });

  it.skipIf(!hasTools)("measures every figure and writes them", async () => {
    databaseUrl = await createDatabase(inject("adminUrl"));
    const { stdout } = await run(process.execPath, ["bench/run.ts"], {
      env: { ...process.env, BENCH_SMOKE: "1", BENCH_DATABASE_URL: databaseUrl, BENCH_OUT: out },
    });
    expect(stdout).toMatch(/\(1\) ValidateCode .* ratio [\d.]+/);
    expect(stdout).toMatch(/\(2\) TrackReferral .* ratio/);
    const results = JSON.parse(readFileSync(out, "utf8")) as Record<string, Record<string, number>>;
    expect(results.validateCode?.callsPerSecond).toBeGreaterThan(0);
    expect(results.validateCode?.echoCallsPerSecond).toBeGreaterThan(0);
    expect(results.trackReferral?.callsPerSecond).toBeGreaterThan(0);
    expect(results.batchCreateCodes?.codesPerSecond).toBeGreaterThan(0);
    expect(results.validateLatency?.failures).toBe(0);
  }, 120_000);
});
