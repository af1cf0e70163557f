/**
 * npm run bench:scale: does the service keep its speed on big tables? See
 * README "Performance". In one run: the service (its own process) on an
 * embedded PostgreSQL, ValidateCode and TrackReferral on small tables; then
 * SCALE_CODES codes and SCALE_CONVERSIONS conversions loaded in SQL
 * (bench/scale-load.ts), the same figures again and their ratios; then
 * ListReferrals walked page by page (time per page by depth), and EXPLAIN of
 * the list and earnings queries at that size.
 *
 *   SCALE_CODES, SCALE_CONVERSIONS  rows loaded (default 10,000,000 each)
 *   SCALE_MAX_PAGES   deepest ListReferrals page walked (default 5,000)
 *   SCALE_PAGE_SIZE   ListReferrals page_size (default 100)
 *   BENCH_SECONDS     seconds per round (default 5), BENCH_ROUNDS rounds (default 3)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded PostgreSQL
 *   BENCH_OUT         JSON results file (default bench/results/scale.json)
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import type { CommonQueryMethods, DatabasePool, Query } from "slonik";
import { ReferralCodeService, ValidateCodeRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { listCodes } from "../src/codes/repository.ts";
import { createDatabasePool } from "../src/db/pool.ts";
import { earnings, listReferrals, type ReferralFilter } from "../src/referrals/repository.ts";
import { fmt, median, seedBenchProgram, startBenchService } from "./harness.ts";
import { grpcFrame, h2loadCallsPerSecond } from "./h2load.ts";
import { closedLoop, unaryCaller } from "./load.ts";
import { loadScale } from "./scale-load.ts";

const count = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
const sizes = { codes: count("SCALE_CODES", 10_000_000), conversions: count("SCALE_CONVERSIONS", 10_000_000) };
const tiny = sizes.codes < 100_000 && sizes.conversions < 100_000;
const seconds = count("BENCH_SECONDS", tiny ? 1 : 5);
const rounds = count("BENCH_ROUNDS", tiny ? 1 : 3);
const maxPages = count("SCALE_MAX_PAGES", 5_000);
const pageSize = count("SCALE_PAGE_SIZE", 100);
const out = process.env.BENCH_OUT ?? path.resolve("bench/results/scale.json");
const path_ = "/referral.v1.ReferralCodeService/ValidateCode";

type Figures = { validateCode: number; validateSpread: number; trackReferral: number; codes: number; conversions: number };

async function main() {
  const service = await startBenchService(process.env.BENCH_DATABASE_URL ?? "");
  const { databaseUrl, grpcUrl, address } = service;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const slonik = await createDatabasePool(databaseUrl, { maxPoolSize: 1, statementTimeoutMs: 600_000, interceptors: [captureInterceptor] });
  const body = path.join(tmpdir(), `scale-validate-${process.pid}.bin`);
  try {
    const { programKey, codes: benchCodes } = await seedBenchProgram(service.serviceUrl, tiny ? 100 : 1000, databaseUrl);
    const benchProgramId = BigInt((await admin.query<{ id: string }>("SELECT id FROM referral_programs WHERE program_key = $1", [programKey])).rows[0]!.id);
    writeFileSync(body, grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code: benchCodes[0]! }))));
    const validate = unaryCaller(address, ReferralCodeService.method.validateCode);
    const track = unaryCaller(address, ReferralCodeService.method.trackReferral);
    // A few streams reset under a machine shared with other work should not void a 40-minute run.
    const load = { seconds, connections: tiny ? 2 : 8, streams: tiny ? 4 : 16, toleratedFailures: 0.01 };

    // The same three figures on the tables as they are; `spread` are the codes
    // ValidateCode picks from at random (all of them while small, a sample of
    // the whole table once loaded: cold pages, not one hot row).
    const measure = async (phase: string, spread: readonly string[]): Promise<Figures> => {
      const validateRates: number[] = [];
      const spreadRates: number[] = [];
      const trackRates: number[] = [];
      let sequence = 0;
      for (let r = 0; r < rounds; r++) {
        validateRates.push(await h2loadCallsPerSecond(`${grpcUrl}${path_}`, body, load));
        spreadRates.push(await closedLoop(seconds, tiny ? 4 : 32, (i) => validate.call({ code: spread[(i * 7919) % spread.length]! })));
        trackRates.push(
          await closedLoop(seconds, tiny ? 4 : 32, () => {
            const n = sequence++;
            return track.call({
              code: benchCodes[n % benchCodes.length]!,
              referredUserId: `scale-${phase}-${n}`,
              transactionId: `scale-${phase}-${n}`,
              transactionAmountMinor: 1000n,
            });
          }),
        );
      }
      const { rows } = await admin.query<{ codes: string; conversions: string }>(
        "SELECT (SELECT count(*) FROM referral_codes) AS codes, (SELECT count(*) FROM referral_trackings) AS conversions",
      );
      return {
        validateCode: median(validateRates),
        validateSpread: median(spreadRates),
        trackReferral: median(trackRates),
        codes: Number(rows[0]!.codes),
        conversions: Number(rows[0]!.conversions),
      };
    };

    console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} rounds of ${seconds}s (medians)`);
    const small = await measure("small", benchCodes);
    printFigures("small tables", small);

    const loadReport = await loadScale(databaseUrl, benchProgramId, sizes, (line) => console.log(`  load: ${line}`));
    const { rows: sizeRows } = await admin.query<{ bytes: string }>("SELECT pg_database_size(current_database()) AS bytes");
    const databaseGb = Number(sizeRows[0]!.bytes) / 1e9;
    const stepText = Object.entries(loadReport.steps).map(([name, s]) => `${name} ${fmt(s)} s`).join(", ");
    console.log(`load: ${fmt(sizes.codes)} codes + ${fmt(sizes.conversions)} conversions in ${fmt(loadReport.seconds)} s (${stepText}); database ${fmt(databaseGb)} GB`);

    const { rows: sample } = await admin.query<{ code: string }>(
      "SELECT code FROM referral_codes TABLESAMPLE BERNOULLI ($1) REPEATABLE (7)",
      [Math.min(100, (100 * 20_000) / sizes.codes)],
    );
    const large = await measure("large", sample.map((row) => row.code));
    printFigures("large tables", large);
    const ratios = {
      validateCode: small.validateCode / large.validateCode,
      validateSpread: small.validateSpread / large.validateSpread,
      trackReferral: small.trackReferral / large.trackReferral,
    };
    console.log("time per call, large / small (target <= 1.5):");
    console.log(`  ValidateCode (one code) ${fmt(ratios.validateCode)}   ValidateCode (spread) ${fmt(ratios.validateSpread)}   TrackReferral ${fmt(ratios.trackReferral)}`);

    // ListReferrals, page by page through page tokens.
    const client = createClient(ReferralCodeService, createGrpcTransport({ baseUrl: grpcUrl }));
    const whale = loadReport.heavyReferrers[0]!;
    const walks: Record<string, { filter: Partial<ReferralFilter>; pages: number; perPageMs: Record<string, number>; cursor?: { convertedAt: Date; id: string } }> = {};
    for (const [name, filter] of [
      [`referrer ${whale.userId} (${fmt(whale.conversions)} conversions)`, { referrerUserId: whale.userId }],
      ["unfiltered", {}],
      [`program ${programKey}`, { programKey }],
    ] as const) {
      const times: number[] = [];
      let token = "";
      // The keyset cursor the deepest page walked was fetched with, to EXPLAIN that page.
      let cursor: { convertedAt: Date; id: string } | undefined;
      let last: typeof cursor;
      do {
        const at = performance.now();
        const response = await client.listReferrals({ ...filter, pageSize, pageToken: token });
        times.push(performance.now() - at);
        const row = response.referrals.at(-1);
        cursor = last;
        if (row?.convertedAt) last = { convertedAt: timestampDate(row.convertedAt), id: row.id };
        token = response.nextPageToken;
      } while (token !== "" && times.length < maxPages);
      // Time per page at depth d: the median of pages d … d+9.
      const perPageMs: Record<string, number> = {};
      for (let depth = 1; depth <= times.length; depth *= 10) perPageMs[depth] = median(times.slice(depth - 1, depth + 9));
      perPageMs[times.length] = median(times.slice(-10));
      walks[name] = { filter, pages: times.length, perPageMs, cursor };
      console.log(
        `ListReferrals ${name}, page_size ${pageSize}, ${fmt(times.length)} pages: ms per page at depth ` +
          Object.entries(perPageMs).map(([depth, ms]) => `${fmt(Number(depth))}: ${fmt(ms)}`).join(", "),
      );
    }

    // The plans of the list and earnings queries at this size, as the service runs them.
    const now = new Date();
    const filterOf = (f: Partial<ReferralFilter>): ReferralFilter => ({
      referrerUserId: null, referredUserId: null, programKey: null, payoutStatus: null, convertedAfter: null, convertedBefore: null, ...f,
    });
    const typicalUser = "user-1";
    const smallestProgram = loadReport.programKeys.at(-1)!;
    const checks: [string, (db: CommonQueryMethods) => Promise<unknown>][] = [
      ...Object.entries(walks).map(([name, walk]): [string, (db: CommonQueryMethods) => Promise<unknown>] => [
        `ListReferrals ${name}, page ${fmt(walk.pages)}`,
        (db) => listReferrals(db, filterOf(walk.filter), walk.cursor ?? null, pageSize + 1),
      ]),
      [`GetUserEarnings ${whale.userId}`, (db) => earnings(db, whale.userId, null, now)],
      [`GetUserEarnings ${typicalUser}`, (db) => earnings(db, typicalUser, null, now)],
      [`ListCodes user_id ${typicalUser}`, (db) => listCodes(db, { userId: typicalUser, programKey: null, status: null, afterId: null, limit: 51 }, now)],
      [`ListCodes program_key ${smallestProgram}`, (db) => listCodes(db, { userId: null, programKey: smallestProgram, status: null, afterId: null, limit: 51 }, now)],
    ];
    const plans: Record<string, PlanSummary> = {};
    for (const [name, run] of checks) {
      plans[name] = await explain(admin, slonik, run);
      const p = plans[name];
      const sorted = p.sortedRows === null ? "no sort" : `sort of ${fmt(p.sortedRows)} rows`;
      console.log(`EXPLAIN ${name}: ${p.seqScan ? "SEQ SCAN of a big table" : "index scans only"}, ${sorted}; ${fmt(p.ms)} ms, ${fmt(p.buffers)} buffers; ${p.nodes.join(" > ")}`);
    }

    const results = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      seconds, rounds, sizes, small, large, ratios,
      load: { ...loadReport, databaseGb },
      listReferrals: walks, pageSize, plans,
    };
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`results written to ${out}`);
    validate.close();
    track.close();
  } finally {
    rmSync(body, { force: true });
    await slonik.end();
    await admin.end();
    await service.close();
  }
}

function printFigures(title: string, f: Figures) {
  console.log(`${title}: ${fmt(f.codes)} codes, ${fmt(f.conversions)} conversions`);
  console.log(`  ValidateCode, one code (h2load) ${fmt(f.validateCode)} calls/s`);
  console.log(`  ValidateCode, spread over codes ${fmt(f.validateSpread)} calls/s`);
  console.log(`  TrackReferral                   ${fmt(f.trackReferral)} calls/s`);
}

// The last query a repository function sent, to EXPLAIN it as it was sent.
let captured: Query | undefined;
const captureInterceptor = {
  name: "capture",
  beforeQueryExecution: (_context: unknown, query: Query) => {
    captured = query;
    return null;
  },
};

type PlanNode = { "Node Type": string; "Index Name"?: string; "Relation Name"?: string; "Actual Rows": number; Plans?: PlanNode[] };
type PlanSummary = { nodes: string[]; seqScan: boolean; sortedRows: number | null; ms: number; buffers: number };

/** Runs `run` once on the pool, then EXPLAIN ANALYZE of the last query it sent, summarised. */
async function explain(admin: pg.Client, slonik: DatabasePool, run: (db: CommonQueryMethods) => Promise<unknown>): Promise<PlanSummary> {
  await slonik.connect(run);
  const query = captured!;
  const { rows } = await admin.query<{ "QUERY PLAN": [{ Plan: PlanNode & { "Shared Hit Blocks": number; "Shared Read Blocks": number }; "Execution Time": number }] }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${query.sql}`,
    query.values as unknown[],
  );
  const [plan] = rows[0]!["QUERY PLAN"];
  const summary: PlanSummary = { nodes: [], seqScan: false, sortedRows: null, ms: plan["Execution Time"], buffers: plan.Plan["Shared Hit Blocks"] + plan.Plan["Shared Read Blocks"] };
  const visit = (node: PlanNode) => {
    const on = node["Index Name"] ?? node["Relation Name"];
    summary.nodes.push(`${node["Node Type"]}${on ? ` ${on}` : ""} (${fmt(node["Actual Rows"])} rows)`);
    if (node["Node Type"] === "Seq Scan" && (on === "referral_trackings" || on === "referral_codes")) summary.seqScan = true;
    if (node["Node Type"] === "Sort") summary.sortedRows = Math.max(summary.sortedRows ?? 0, ...(node.Plans ?? []).map((child) => child["Actual Rows"]));
    for (const child of node.Plans ?? []) visit(child);
  };
  visit(plan.Plan);
  return summary;
}

await main();
