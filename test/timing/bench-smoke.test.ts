import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createDatabase, dropDatabase } from "../support/database.ts";

const run = promisify(execFile);
const hasTools = ["/usr/bin/h2load", "/usr/include/nghttp2/nghttp2.h", "/usr/bin/cc"].every((tool) => existsSync(tool));
if (!hasTools) console.log("skipping the bench smoke runs: h2load (Debian's nghttp2-client), cc or libnghttp2-dev is not installed");

/**
 * Runs a bench script on a fresh database of the test cluster, its JSON going
 * to a temporary file; both are removed after the describe block.
 */
function benchRun(name: string) {
  const out = path.join(tmpdir(), `${name}-${process.pid}.json`);
  let databaseUrl = "";
  afterAll(async () => {
    rmSync(out, { force: true });
    if (databaseUrl) await dropDatabase(inject("adminUrl"), databaseUrl);
  });
  return async (script: string, env: Record<string, string>) => {
    databaseUrl = await createDatabase(inject("adminUrl"));
    const { stdout } = await run(process.execPath, [script], { env: { ...process.env, ...env, BENCH_DATABASE_URL: databaseUrl, BENCH_OUT: out } });
    return { stdout, databaseUrl, results: JSON.parse(readFileSync(out, "utf8")) as unknown };
  };
}

describe("npm run bench (smoke: tiny sizes)", () => {
  const bench = benchRun("bench-smoke");

  it.skipIf(!hasTools)("measures every figure and writes them", async () => {
    const { stdout, results: json } = await bench("bench/run.ts", { BENCH_SMOKE: "1" });
    expect(stdout).toMatch(/\(1\) ValidateCode .* ratio [\d.]+/);
    expect(stdout).toMatch(/\(2\) TrackReferral .* ratio/);
    expect(stdout).toMatch(/\(3\) BatchCreateCodes .* ratio/);
    const results = json as Record<string, Record<string, number>>;
    expect(results.validateCode?.callsPerSecond).toBeGreaterThan(0);
    expect(results.validateCode?.echoCallsPerSecond).toBeGreaterThan(0);
    expect(results.trackReferral?.callsPerSecond).toBeGreaterThan(0);
    // pgbench ran the script made from the repository's statements, without a failed transaction.
    if (existsSync("/usr/bin/pgbench")) expect(results.trackReferral?.pgbenchPerSecond).toBeGreaterThan(0);
    expect(results.batchCreateCodes?.codesPerSecond).toBeGreaterThan(0);
    if (existsSync("/usr/bin/pgbench")) expect(results.batchCreateCodes?.pgbenchCodesPerSecond).toBeGreaterThan(0);
    expect(results.validateLatency?.failed).toBe(0);
    expect(results.validateLatency?.p99).toBeGreaterThan(0);
    expect((results.validateLatency as unknown as { echo: { p99: number } }).echo.p99).toBeGreaterThan(0);
    // The event log's figures: both sides of each A/B, every streamed event received, a walk of the log.
    expect(stdout).toMatch(/\(5\) TrackReferral, events on .* ratio [\d.]+/);
    expect(stdout).toMatch(/\(6\) BatchCreateCodes, events on .* ratio [\d.]+/);
    expect(results.trackReferralEvents?.withoutEventsPerSecond).toBeGreaterThan(0);
    expect(results.batchCreateCodesEvents?.withoutEventsPerSecond).toBeGreaterThan(0);
    expect(results.eventLatency?.received).toBe(results.eventLatency?.expected);
    expect(results.eventLatency?.p99).toBeGreaterThan(0);
    expect(results.listEventsCatchUp?.events).toBeGreaterThanOrEqual(500);
  }, 120_000);
});

describe("npm run bench:scale (smoke: 10,000 codes and conversions)", () => {
  const bench = benchRun("bench-scale-smoke");

  it.skipIf(!hasTools)("loads the tables, measures before and after, walks pages and explains the queries", async () => {
    const { stdout, databaseUrl, results: json } = await bench("bench/scale.ts", {
      SCALE_CODES: "10000",
      SCALE_CONVERSIONS: "10000",
      SCALE_MAX_PAGES: "20",
    });
    expect(stdout).toMatch(/^load: 10,000 codes \+ 10,000 conversions in [\d.,]+ s/m);
    expect(stdout).toMatch(/ValidateCode \(one code\) [\d.]+ +ValidateCode \(spread\) [\d.]+ +TrackReferral [\d.]+/);
    expect(stdout).toMatch(/^ListReferrals unfiltered, page_size 100, 20 pages: ms per page at depth 1: /m);
    expect(stdout).toMatch(/^EXPLAIN GetUserEarnings whale-1: /m);
    const results = json as {
      small: { codes: number; conversions: number; validateCode: number; trackReferral: number };
      large: { codes: number; conversions: number; validateCode: number; trackReferral: number };
      load: { seconds: number };
      listReferrals: Record<string, { pages: number }>;
    };
    // Every row the loader promised is there, besides the bench's own.
    expect(results.large.codes - results.small.codes).toBe(10_000);
    expect(results.large.conversions - results.small.conversions).toBeGreaterThanOrEqual(10_000);
    for (const figures of [results.small, results.large]) {
      expect(figures.validateCode).toBeGreaterThan(0);
      expect(figures.trackReferral).toBeGreaterThan(0);
    }
    expect(Object.keys(results.listReferrals)).toHaveLength(3);

    // The loaded rows keep the service's promise: a code's uses are its conversions holding one.
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ uses_off: string; heavy: string }>(`
        SELECT
          (SELECT count(*) FROM referral_codes c
            WHERE c.uses_count <> (SELECT count(*) FROM referral_trackings t WHERE t.code_id = c.id AND t.holds_use)) AS uses_off,
          (SELECT count(*) FROM referral_trackings WHERE referrer_user_id = 'whale-1') AS heavy`);
      expect(rows[0]).toEqual({ uses_off: "0", heavy: "800" });
    } finally {
      await client.end();
    }
  }, 240_000);
});
