/**
 * node bench/earnings.ts: GetUserEarnings of a heavy referrer, and what
 * keeping its running totals (sql/0014 triggers, sql/0015 index) costs
 * TrackReferral. See docs/performance.md ("Earnings of a heavy referrer").
 *
 * On an embedded PostgreSQL (or BENCH_DATABASE_URL, an empty database): the
 * seeded bench program, then EARNINGS_CONVERSIONS conversions (default
 * 1,000,000) of one referrer ("heavy-1", one code) loaded in SQL over
 * generate_series, spread over 5 years with a 30-day hold (older than the
 * hold: 85 % PAID, 3 % REVERSED, a third of them clawbacks, 2 % FAILED, the
 * rest PENDING), and a second referrer ("recent-1") with EARNINGS_RECENT
 * (default 100,000) conversions all still in hold, the worst case of the
 * design (its in-hold rewards are read row by row). Then:
 *   (1) GetUserEarnings through the service (gRPC, one call at a time,
 *       EARNINGS_CALLS calls each): p50/p99/max, of heavy-1 with and without
 *       program_key, and of recent-1; and the earlier query (a sum of every
 *       conversion) run in PostgreSQL alone, as a lower bound of what it
 *       cost a call;
 *   (2) TrackReferral calls/s (bench/grpc-load.c, 4 connections × 8
 *       streams) with the totals' triggers and index in place and removed,
 *       in BENCH_ROUNDS rounds (default 3) alternating which goes first,
 *       BENCH_SECONDS (default 5) each: over the bench program's 1,000 codes
 *       (spread referrers), and through heavy-1's one code (every conversion
 *       of one referrer).
 * BENCH_OUT: the JSON results file (default bench/results/earnings.json).
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { createDatabasePool } from "../src/db/pool.ts";
import { earningsFromRows } from "../test/support/earnings.ts";
import { fmt, median, seedBenchProgram, startBenchService } from "./harness.ts";
import { buildGrpcLoad, conversionFrames, grpcLoadCallsPerSecond } from "./grpc-load.ts";
import { measureLatency, type StatsLatency } from "./scale-stats.ts";

const count = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
const conversions = count("EARNINGS_CONVERSIONS", 1_000_000);
const recent = count("EARNINGS_RECENT", 100_000);
const calls = count("EARNINGS_CALLS", 200);
const rounds = count("BENCH_ROUNDS", 3);
const seconds = count("BENCH_SECONDS", 5);
const out = process.env.BENCH_OUT ?? "bench/results/earnings.json";

/** One referrer's conversions through `code`: `n` of them, converted over `span` up to now, 30-day hold. */
const LOAD = `
  INSERT INTO referral_trackings (program_id, code_id, referrer_user_id, referred_user_id, transaction_id, transaction_amount_minor,
    amount_earned_minor, currency, converted_at, first_conversion, holds_use, payable_at, payout_status, payout_reference, paid_at,
    failed_at, failure_reason, reversed_at, reversal_reason, clawback)
  SELECT c.program_id, c.id, c.user_id, c.user_id || '-referred-' || n, c.user_id || '-txn-' || n, 1000,
    100, 'USD', s.at, true, true, s.at + interval '30 days', s.status,
    CASE WHEN s.status = 'PAID' THEN 'po' END, CASE WHEN s.status = 'PAID' OR s.clawback THEN s.at + interval '31 days' END,
    CASE WHEN s.status = 'FAILED' THEN s.at + interval '31 days' END, CASE WHEN s.status = 'FAILED' THEN 'bounced' END,
    CASE WHEN s.status = 'REVERSED' THEN s.at + interval '1 day' END, CASE WHEN s.status = 'REVERSED' THEN 'refund' END, s.clawback
  FROM (
    SELECT n, at,
      CASE WHEN at > now() - interval '30 days' THEN 'PENDING' WHEN n % 100 < 85 THEN 'PAID' WHEN n % 100 < 88 THEN 'REVERSED'
        WHEN n % 100 < 90 THEN 'FAILED' ELSE 'PENDING' END AS status,
      at <= now() - interval '30 days' AND n % 100 = 85 AS clawback
    FROM generate_series(1, $2::bigint) AS n, LATERAL (SELECT now() - $3::interval * (n::float8 / $2::bigint) AS at) a
  ) s, referral_codes c WHERE c.code = $1`;

async function main() {
  const grpcLoad = await buildGrpcLoad();
  if (grpcLoad === null) throw new Error("bench/grpc-load.c could not be built: it needs cc and libnghttp2-dev");
  const service = await startBenchService(process.env.BENCH_DATABASE_URL ?? "", "referral-bench-earnings");
  const admin = new pg.Client({ connectionString: service.databaseUrl });
  await admin.connect();
  // For the earlier query (test/support/earnings.ts), as the service's pool would send it.
  const slonik = await createDatabasePool(service.databaseUrl, { maxPoolSize: 1, statementTimeoutMs: 600_000 });
  let totalsOff = false;
  const setTotals = async (on: boolean) => {
    for (const trigger of ["referrer_earnings_created", "referrer_earnings_updated"]) {
      await admin.query(`ALTER TABLE referral_trackings ${on ? "ENABLE" : "DISABLE"} TRIGGER ${trigger}`);
    }
    await admin.query(
      on
        ? `CREATE INDEX IF NOT EXISTS referral_trackings_in_hold ON referral_trackings (referrer_user_id, payable_at)
             INCLUDE (program_id, currency, amount_earned_minor) WHERE payout_status = 'PENDING'`
        : "DROP INDEX IF EXISTS referral_trackings_in_hold",
    );
    totalsOff = !on;
  };
  try {
    const { client, programKey, codes: benchCodes } = await seedBenchProgram(service.serviceUrl, 1000, service.databaseUrl);
    const grpc = createClient(ReferralCodeService, createGrpcTransport({ baseUrl: service.grpcUrl }));
    for (const userId of ["heavy-1", "recent-1"]) await client.createCode({ programKey, userId, code: userId.toUpperCase().replace("-", "") });

    const loadStarted = performance.now();
    await admin.query("SET statement_timeout = 0");
    // Like bench/scale-load.ts: no events for the loaded rows; the totals' triggers stay on.
    await admin.query("ALTER TABLE referral_trackings DISABLE TRIGGER referral_events_created");
    try {
      await admin.query(LOAD, ["HEAVY1", conversions, "5 years"]);
      await admin.query(LOAD, ["RECENT1", recent, "29 days"]);
    } finally {
      await admin.query("ALTER TABLE referral_trackings ENABLE TRIGGER referral_events_created");
    }
    await admin.query("UPDATE referral_codes SET uses_count = $1 WHERE code = 'HEAVY1'", [conversions]);
    await admin.query("UPDATE referral_codes SET uses_count = $1 WHERE code = 'RECENT1'", [recent]);
    await admin.query("VACUUM (ANALYZE) referral_trackings, referral_codes, referrer_earnings");
    console.log(`loaded ${fmt(conversions)} conversions of heavy-1 and ${fmt(recent)} of recent-1 in ${fmt((performance.now() - loadStarted) / 1000)} s`);

    // (1) GetUserEarnings.
    const heavy = (await grpc.getUserEarnings({ userId: "heavy-1" })).earnings[0]!;
    console.log(`heavy-1: ${fmt(Number(heavy.referralCount))} referrals, pending ${fmt(Number(heavy.pendingMinor))}, payable ${fmt(Number(heavy.payableMinor))}, paid ${fmt(Number(heavy.paidMinor))}`);
    const [before] = await earningsFromRows(slonik, "heavy-1", null, new Date());
    if (before!.totalMinor !== heavy.totalMinor || before!.paidMinor !== heavy.paidMinor) throw new Error("the totals disagree with the rows");
    const cases: [string, () => Promise<unknown>, number][] = [
      ["GetUserEarnings heavy-1 (service)", () => grpc.getUserEarnings({ userId: "heavy-1" }), calls],
      ["GetUserEarnings heavy-1, program_key (service)", () => grpc.getUserEarnings({ userId: "heavy-1", programKey }), calls],
      [`GetUserEarnings recent-1, ${fmt(recent)} rewards in hold (service)`, () => grpc.getUserEarnings({ userId: "recent-1" }), calls],
      ["the earlier query, heavy-1 (sum of every conversion, PostgreSQL alone)", () => earningsFromRows(slonik, "heavy-1", null, new Date()), 10],
    ];
    const latencies: Record<string, StatsLatency> = {};
    for (const [name, call, n] of cases) {
      latencies[name] = await measureLatency(call, n);
      const l = latencies[name];
      console.log(`  ${name}, ${n} calls: p50 ${fmt(l.p50)} ms, p99 ${fmt(l.p99)} ms, max ${fmt(l.max)} ms`);
    }

    // (2) TrackReferral with the totals kept and not kept, alternating.
    const heavyCode = ["HEAVY1"];
    const trackConcurrency = { connections: 4, streams: 8 };
    const trackReferral: Record<string, { on: number[]; off: number[]; ratio: number }> = {};
    for (const [name, codes] of [["spread over 1,000 codes", benchCodes], ["one referrer (heavy-1's code)", heavyCode]] as const) {
      const on: number[] = [];
      const off: number[] = [];
      for (let r = 0; r < rounds; r++) {
        for (const enabled of r % 2 === 0 ? [true, false] : [false, true]) {
          await setTotals(enabled);
          const frames = conversionFrames(codes, `${name.slice(0, 6)}-${enabled ? "on" : "off"}-${r}`, seconds);
          (enabled ? on : off).push(await grpcLoadCallsPerSecond(grpcLoad, service.address, "/referral.v1.ReferralCodeService/TrackReferral", frames, { seconds, ...trackConcurrency }));
        }
      }
      await setTotals(true);
      trackReferral[name] = { on, off, ratio: median(on) / median(off) };
      console.log(
        `TrackReferral ${name}: totals kept ${fmt(median(on))} calls/s, not kept ${fmt(median(off))} calls/s (ratio ${fmt(median(on) / median(off))}); ` +
          `rounds on ${on.map(fmt).join(", ")} | off ${off.map(fmt).join(", ")}`,
      );
    }
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ conversions, recent, calls, rounds, seconds, latencyMs: latencies, trackReferral }, null, 2)}\n`);
    console.log(`results written to ${out}`);
  } finally {
    if (totalsOff) await setTotals(true).catch(() => {});
    await admin.end();
    await slonik.end();
    await service.close();
  }
}

await main();
