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
    // The statistics fold's A/B and its staleness under the "on" rounds.
    expect(stdout).toMatch(/\(9\) TrackReferral, statistics fold on .* ratio [\d.]+ .* staleness .* p99 [\d.]+ s/);
    expect(results.trackReferralStatsFold?.perSecond).toBeGreaterThan(0);
    expect(results.trackReferralStatsFold?.withoutFoldPerSecond).toBeGreaterThan(0);
    expect((results.trackReferralStatsFold as unknown as { stalenessSeconds: { samples: number } }).stalenessSeconds.samples).toBeGreaterThan(0);
    // The read replica's A/B: the List load on each service, the primary's and the standby's CPU, writes under it.
    expect(stdout).toMatch(/\(10\) List load .* primary only [\d.,]+ calls\/s, primary CPU [\d.,]+ ms .* hot standby [\d.,]+ calls\/s \(ratio [\d.]+;/);
    expect(stdout).toMatch(/\(10\) TrackReferral under the List load .* calls\/s \(ratio [\d.]+;/);
    const reads = results.readReplica as unknown as {
      listAlone: Record<"primary" | "replica", { callsPerSecond: number; primaryCpuMsPer1000: number; standbyCpuMsPer1000: number }>;
      writesUnderList: Record<"primary" | "replica", { trackCallsPerSecond: number }>;
    };
    for (const side of ["primary", "replica"] as const) {
      expect(reads.listAlone[side].callsPerSecond).toBeGreaterThan(0);
      expect(reads.writesUnderList[side].trackCallsPerSecond).toBeGreaterThan(0);
    }
    // Served by the standby: its processes worked for B's List calls.
    expect(reads.listAlone.replica.standbyCpuMsPer1000).toBeGreaterThan(0);
  }, 180_000);
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
    expect(stdout).toMatch(/^  ListTopReferrers, last 30 days, page 1: p50 [\d.]+ ms, p99 [\d.]+ ms/m);
    expect(stdout).toMatch(/^EXPLAIN ListTopReferrers, last 30 days, page 1: /m);
    expect(stdout).toMatch(/^  whale-1 \(800 conversions\): p50 [\d.]+ ms, p99 [\d.]+ ms/m);
    // ListCodes in the largest program and in the one made after the bulk, by each filter.
    for (const status of ["ACTIVE", "INACTIVE", "SUSPENDED", "EXPIRED", "EXHAUSTED"]) {
      expect(stdout).toMatch(new RegExp(`^    by status ${status}: [\\d,]+ codes in [\\d,]+ pages; ms per page: first [\\d.]+`, "m"));
      // Index scans only; the plans themselves are test/plans.test.ts's (at 10,000 codes the
      // generic plan of EXPIRED may sort the program's few expired codes).
      expect(stdout).toMatch(new RegExp(`^EXPLAIN ListCodes scale-new by status ${status}, page 1: index scans only`, "m"));
    }
    expect(stdout).toMatch(/^  program scale-new \(50 codes\):/m);
    expect(stdout).toMatch(/^  every program:/m);
    expect(stdout).toMatch(/^EXPLAIN ListCodes any program by status SUSPENDED, page \d+: index scans only/m);
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
      // The rollups (the loaded rows' filled in one statement, the rest folded
      // by the service) hold what the tables say: every referrer's standing
      // conversions, earned and paid, and each program's days.
      const { rows: stats } = await client.query<{ referrers_off: string; days_off: string }>(`
        WITH r AS (
          SELECT program_id, referrer_user_id, count(*) FILTER (WHERE payout_status <> 'REVERSED') AS conversions,
            COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status <> 'REVERSED'), 0) AS earned,
            COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'PAID'), 0) AS paid
          FROM referral_trackings GROUP BY 1, 2
        ), d AS (
          SELECT program_id, (converted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS conversions, sum(amount_earned_minor) AS granted,
            COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'REVERSED'), 0) AS reversed,
            COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'PAID'), 0) AS paid
          FROM referral_trackings GROUP BY 1, 2
        )
        SELECT
          (SELECT count(*) FROM r FULL JOIN referrer_stats s USING (program_id, referrer_user_id)
            WHERE (r.conversions, r.earned, r.paid) IS DISTINCT FROM (s.conversions, s.earned_minor, s.paid_minor)) AS referrers_off,
          (SELECT count(*) FROM d FULL JOIN (SELECT * FROM program_stats_daily WHERE conversions <> 0) s USING (program_id, day)
            WHERE (d.conversions, d.granted, d.reversed, d.paid)
              IS DISTINCT FROM (s.conversions, s.referrer_granted_minor, s.referrer_reversed_minor, s.referrer_paid_minor)) AS days_off`);
      expect(stats[0]).toEqual({ referrers_off: "0", days_off: "0" });
      // The earnings totals, kept by their triggers through the bulk load, too.
      const totals = `
        SELECT payout_status, clawback, sum(amount_minor)::text AS amount, sum(referrals)::text AS referrals FROM referrer_earnings
        GROUP BY 1, 2 HAVING sum(referrals) <> 0 ORDER BY 1, 2`;
      const summed = `
        SELECT payout_status, clawback, sum(amount_earned_minor)::text AS amount, count(*)::text AS referrals FROM referral_trackings
        GROUP BY 1, 2 ORDER BY 1, 2`;
      expect((await client.query(totals)).rows).toEqual((await client.query(summed)).rows);
    } finally {
      await client.end();
    }
  }, 240_000);
});

describe("npm run bench:earnings (smoke: 2,000 conversions of one referrer)", () => {
  const bench = benchRun("bench-earnings-smoke");

  it.skipIf(!hasTools)("loads a heavy referrer, times GetUserEarnings and TrackReferral with the totals kept and not", async () => {
    const { stdout, results: json } = await bench("bench/earnings.ts", {
      EARNINGS_CONVERSIONS: "2000",
      EARNINGS_RECENT: "200",
      EARNINGS_CALLS: "20",
      BENCH_ROUNDS: "1",
      BENCH_SECONDS: "1",
    });
    expect(stdout).toMatch(/^heavy-1: 2,000 referrals/m);
    expect(stdout).toMatch(/^  GetUserEarnings heavy-1 \(service\), 20 calls: p50 [\d.]+ ms, p99 [\d.]+ ms/m);
    expect(stdout).toMatch(/^TrackReferral one referrer \(heavy-1's code\): totals kept [\d.,]+ calls\/s, not kept [\d.,]+ calls\/s/m);
    const results = json as { trackReferral: Record<string, { on: number[]; off: number[] }> };
    for (const figures of Object.values(results.trackReferral)) expect([...figures.on, ...figures.off].every((rate) => rate > 0)).toBe(true);
  }, 240_000);
});

describe("npm run bench:update (smoke: 30 callers, one round)", () => {
  const bench = benchRun("bench-update-smoke");

  it("sends every case's update through a loaded and an idle replica while conversions stream in", async () => {
    const { stdout, results: json } = await bench("bench/update-under-stream.ts", { BENCH_SMOKE: "1" });
    expect(stdout).toMatch(/^deactivate, through a loaded replica: UpdateProgram p50 [\d.,]+ ms/m);
    const { results } = json as { results: { case: string; path: string; rounds: number; failed: string[] }[] };
    expect(results).toHaveLength(8);
    for (const figure of results) expect(figure).toMatchObject({ rounds: 1, failed: [] });
  }, 240_000);
});
