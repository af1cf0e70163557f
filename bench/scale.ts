/**
 * npm run bench:scale: does the service keep its speed on big tables? See
 * docs/performance.md. In one run, on an embedded PostgreSQL: two databases
 * on the same cluster, each with its own service process and the same seeded
 * bench program: the large one, into which SCALE_CODES codes and
 * SCALE_CONVERSIONS conversions are loaded in SQL (bench/scale-load.ts), and
 * a small one (created here, dropped at the end) that keeps the seed's few
 * rows. Before the load, the large database's figures while it is still
 * small are printed (for reference only). After it, the two are measured in
 * alternating rounds, so that the machine's drift over the load (~45 minutes
 * at the default sizes) cancels: in each round, each figure on the small
 * database then on the large one. The figures: ValidateCode of one code
 * (h2load), ValidateCode spread over codes and TrackReferral (distinct
 * referred users and transactions), both from bench/grpc-load.c in a closed
 * loop (a Node client cost ~175 µs of CPU per call on the same cores). The
 * ratios "time per call, large / small" come from each database's medians.
 * Then ListReferrals walked page by page (time per page by depth),
 * GetProgramStats and ListTopReferrers latency (bench/scale-stats.ts),
 * GetUserEarnings of the heaviest referrer and of an ordinary user, ListCodes
 * walked page by page in the bench program (about half the codes) and in a
 * program of 50 codes made after the bulk (by program, by one of its users,
 * by each status), and EXPLAIN of the list, earnings and statistics queries
 * at that size (ListCodes' as the service plans it: a generic plan).
 *
 *   SCALE_CODES, SCALE_CONVERSIONS  rows loaded (default 10,000,000 each)
 *   SCALE_MAX_PAGES   deepest ListReferrals and ListCodes page walked (default 5,000)
 *   SCALE_PAGE_SIZE   ListReferrals page_size (default 100)
 *   BENCH_SECONDS     seconds per figure (default 5), BENCH_ROUNDS rounds (default 3)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded
 *                     PostgreSQL; the small database is created on its cluster
 *   BENCH_OUT         JSON results file (default bench/results/scale.json)
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { type CommonQueryMethods, type DatabasePool, type Query, sql } from "slonik";
import { z } from "zod";
import { ReferralCodeService, ValidateCodeRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus } from "../src/gen/referral/v1/resources_pb.js";
import type { CodeStatus as DomainCodeStatus } from "../src/codes/model.ts";
import { listCodes } from "../src/codes/repository.ts";
import { createDatabasePool } from "../src/db/pool.ts";
import { earnings, listReferrals, type ReferralFilter } from "../src/referrals/repository.ts";
import { type BenchService, fmt, median, seedBenchProgram, startBenchService } from "./harness.ts";
import { buildGrpcLoad, conversionFrames, grpcLoadCallsPerSecond } from "./grpc-load.ts";
import { grpcFrame, h2loadCallsPerSecond } from "./h2load.ts";
import { loadScale } from "./scale-load.ts";
import { measureLatency, type StatsLatency, statsCases, waitForFold } from "./scale-stats.ts";
import { programStats, topReferrers } from "../src/stats/repository.ts";

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
/** Statistics reads: calls per figure, and the deep leaderboard page (of 100). */
const STATS_CALLS = tiny ? 50 : 300;
const STATS_DEEP_PAGE = 1000;
const out = process.env.BENCH_OUT ?? path.resolve("bench/results/scale.json");
const validatePath = "/referral.v1.ReferralCodeService/ValidateCode";
const trackPath = "/referral.v1.ReferralCodeService/TrackReferral";

/** Calls per second of the three figures. */
type Rates = { validateCode: number; validateSpread: number; trackReferral: number };
type Figures = Rates & { codes: number; conversions: number };
const figureNames = ["validateCode", "validateSpread", "trackReferral"] as const;

/**
 * What a figure is measured on: a service, a connection to its database, and
 * `phase`, which names the measurement in the TrackReferral ids.
 */
type Target = { phase: string; service: BenchService; db: pg.Client; spreadFrames: Uint8Array[] };

async function main() {
  const grpcLoad = await buildGrpcLoad();
  if (grpcLoad === null) throw new Error("bench/grpc-load.c could not be built: it needs cc and libnghttp2-dev (apt-get install libnghttp2-dev)");
  // Undone in reverse order at the end, also on failure.
  const cleanups: (() => unknown)[] = [];
  try {
    const service = await startBenchService(process.env.BENCH_DATABASE_URL ?? "");
    cleanups.push(() => service.close());
    const { databaseUrl, grpcUrl } = service;
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    cleanups.push(() => admin.end());
    const slonik = await createDatabasePool(databaseUrl, { maxPoolSize: 1, statementTimeoutMs: 600_000, interceptors: [captureInterceptor] });
    cleanups.push(() => slonik.end());
    const body = path.join(tmpdir(), `scale-validate-${process.pid}.bin`);
    cleanups.push(() => rmSync(body, { force: true }));

    const seedCount = tiny ? 100 : 1000;
    const { programKey, codes: benchCodes } = await seedBenchProgram(service.serviceUrl, seedCount, databaseUrl);
    const benchProgramId = BigInt((await admin.query<{ id: string }>("SELECT id FROM referral_programs WHERE program_key = $1", [programKey])).rows[0]!.id);

    // The small database, on the same cluster, with its own service, seeded the same way.
    const smallName = `scale_small_${randomBytes(4).toString("hex")}`;
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(smallName)}`);
    cleanups.push(() => admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(smallName)} WITH (FORCE)`));
    const smallUrl = new URL(databaseUrl);
    smallUrl.pathname = `/${smallName}`;
    const smallService = await startBenchService(smallUrl.toString(), "referral-bench-small");
    cleanups.push(() => smallService.close());
    const smallDb = new pg.Client({ connectionString: smallUrl.toString() });
    await smallDb.connect();
    cleanups.push(() => smallDb.end());
    await seedBenchProgram(smallService.serviceUrl, seedCount, smallUrl.toString());

    // Both seeds made the same codes (BENCH00001 …): one body serves h2load on either.
    writeFileSync(body, grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code: benchCodes[0]! }))));
    // A few streams reset under a machine shared with other work should not void a 40-minute run.
    const h2loadLoad = { seconds, connections: tiny ? 2 : 8, streams: tiny ? 4 : 16, toleratedFailures: 0.01 };
    const grpcLoadOptions = { seconds, connections: tiny ? 1 : 4, streams: tiny ? 4 : 8 };
    // ValidateCode requests picking from `spread` (all the codes while small, a
    // sample of the whole table once loaded: cold pages, not one hot row),
    // enough for a closed loop's `seconds`.
    const spreadFrames = (spread: readonly string[]) =>
      Array.from({ length: seconds * 30_000 }, (_, i) =>
        grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code: spread[(i * 7919) % spread.length]! }))),
      );
    const measureFigure = (name: (typeof figureNames)[number], target: Target, round: number) => {
      const { address, grpcUrl } = target.service;
      if (name === "validateCode") return h2loadCallsPerSecond(`${grpcUrl}${validatePath}`, body, h2loadLoad);
      if (name === "validateSpread") return grpcLoadCallsPerSecond(grpcLoad, address, validatePath, target.spreadFrames, grpcLoadOptions);
      return grpcLoadCallsPerSecond(grpcLoad, address, trackPath, conversionFrames(benchCodes, `scale-${target.phase}-${round}`, seconds), grpcLoadOptions);
    };
    // `rounds` rounds over `targets`, each figure on each target in turn: every target's rates by round.
    const measureRounds = async (targets: Target[], onRound: (rates: Rates[]) => void = () => {}) => {
      const byTarget: Rates[][] = targets.map(() => []);
      for (let r = 0; r < rounds; r++) {
        const round = targets.map(() => ({}) as Rates);
        for (const name of figureNames) for (const [t, target] of targets.entries()) round[t]![name] = await measureFigure(name, target, r);
        round.forEach((rates, t) => byTarget[t]!.push(rates));
        onRound(round);
      }
      return byTarget;
    };
    // The medians of a target's rounds, with its tables' sizes.
    const summarize = async (target: Target, byRound: Rates[]): Promise<Figures> => {
      const { rows } = await target.db.query<{ codes: string; conversions: string }>(
        "SELECT (SELECT count(*) FROM referral_codes) AS codes, (SELECT count(*) FROM referral_trackings) AS conversions",
      );
      const figures = { codes: Number(rows[0]!.codes), conversions: Number(rows[0]!.conversions) } as Figures;
      for (const name of figureNames) figures[name] = median(byRound.map((rates) => rates[name]));
      return figures;
    };

    console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} rounds of ${seconds}s per figure (medians)`);
    const beforeTarget: Target = { phase: "before-load", service, db: admin, spreadFrames: spreadFrames(benchCodes) };
    const [beforeRounds] = await measureRounds([beforeTarget]);
    const beforeLoad = await summarize(beforeTarget, beforeRounds!);
    printFigures("small tables, before the load (for reference: the ratios come from the rounds after it)", beforeLoad);

    const loadReport = await loadScale(databaseUrl, benchProgramId, sizes, (line) => console.log(`  load: ${line}`));
    const { rows: sizeRows } = await admin.query<{ bytes: string }>("SELECT pg_database_size(current_database()) AS bytes");
    const databaseGb = Number(sizeRows[0]!.bytes) / 1e9;
    const stepText = Object.entries(loadReport.steps).map(([name, s]) => `${name} ${fmt(s)} s`).join(", ");
    console.log(`load: ${fmt(sizes.codes)} codes + ${fmt(sizes.conversions)} conversions in ${fmt(loadReport.seconds)} s (${stepText}); database ${fmt(databaseGb)} GB`);

    // The statistics: the load filled the rollups; the service's fold folds the seed's events.
    const fold = await waitForFold(admin, (line) => console.log(`  fold: ${line}`));
    console.log(
      `statistics: fold caught up in ${fmt(fold.catchUpSeconds)} s (${fmt(fold.unfoldedAtLoadEnd)} of ${fmt(fold.events)} events left at the load's end); ` +
        `rollups: ${fmt(fold.rollupRows.programDays)} program-days, ${fmt(fold.rollupRows.referrerDays)} referrer-days, ${fmt(fold.rollupRows.referrers)} referrers`,
    );

    const { rows: sample } = await admin.query<{ code: string }>(
      "SELECT code FROM referral_codes TABLESAMPLE BERNOULLI ($1) REPEATABLE (7)",
      [Math.min(100, (100 * 20_000) / sizes.codes)],
    );
    const smallTarget: Target = { phase: "small", service: smallService, db: smallDb, spreadFrames: spreadFrames(benchCodes) };
    const largeTarget: Target = { phase: "large", service, db: admin, spreadFrames: spreadFrames(sample.map((row) => row.code)) };
    console.log("alternating rounds, calls/s on the small | large database:");
    let roundNumber = 0;
    const [smallRounds, largeRounds] = await measureRounds([smallTarget, largeTarget], ([s, l]) =>
      console.log(
        `  round ${++roundNumber}: ValidateCode one code ${fmt(s!.validateCode)} | ${fmt(l!.validateCode)}, ` +
          `spread ${fmt(s!.validateSpread)} | ${fmt(l!.validateSpread)}, TrackReferral ${fmt(s!.trackReferral)} | ${fmt(l!.trackReferral)}`,
      ),
    );
    // h2load counts a call that ended in a gRPC error (an HTTP 200) as done.
    for (const [name, s] of [["large", service], ["small", smallService]] as const) {
      const failed = await s.failedCalls("ValidateCode");
      if (failed > 0) throw new Error(`${failed} ValidateCode calls failed on the ${name} database (grpc-status other than OK): the figures would not count`);
    }
    const small = await summarize(smallTarget, smallRounds!);
    const large = await summarize(largeTarget, largeRounds!);
    printFigures("small tables (the small database, medians of the rounds)", small);
    printFigures("large tables (medians of the rounds)", large);
    const ratios = Object.fromEntries(figureNames.map((name) => [name, small[name] / large[name]])) as Rates;
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

    // GetProgramStats and ListTopReferrers of the largest program (the bench program), calls one after another.
    const now = new Date();
    const stats = await statsCases(client, programKey, STATS_DEEP_PAGE, now);
    const statsLatency: Record<string, StatsLatency> = {};
    console.log(`statistics of ${programKey}, ${STATS_CALLS} calls each, one at a time (target p99 <= 50 ms):`);
    for (const { name, call } of stats) {
      statsLatency[name] = await measureLatency(call, STATS_CALLS);
      const l = statsLatency[name];
      console.log(`  ${name}: p50 ${fmt(l.p50)} ms, p99 ${fmt(l.p99)} ms, max ${fmt(l.max)} ms`);
    }

    // GetUserEarnings of the heaviest referrer and of an ordinary one, calls one after another.
    const earningsLatency: Record<string, StatsLatency> = {};
    console.log(`GetUserEarnings, ${STATS_CALLS} calls each, one at a time (target p99 <= 100 ms):`);
    for (const [userId, conversions] of [[whale.userId, whale.conversions], ["user-1", null]] as const) {
      earningsLatency[userId] = await measureLatency(() => client.getUserEarnings({ userId }), STATS_CALLS);
      const l = earningsLatency[userId];
      console.log(`  ${userId}${conversions === null ? "" : ` (${fmt(conversions)} conversions)`}: p50 ${fmt(l.p50)} ms, p99 ${fmt(l.p99)} ms, max ${fmt(l.max)} ms`);
    }

    // ListCodes in the largest program and in the newest, smallest one: page
    // by page (page_size 50, the default) through page tokens, each filter.
    const listCodesWalks: Record<string, ListCodesWalk> = {};
    const walkAndPrint = async (name: string, filter: ListCodesFilter) => {
      const walk = await walkCodes(client, filter, maxPages);
      console.log(
        `    ${name}: ${fmt(walk.codes)} codes in ${fmt(walk.pages)} pages; ms per page: first ${fmt(walk.firstMs)}, ` +
          `median ${fmt(walk.medianMs)}, p99 ${fmt(walk.p99Ms)}, max ${fmt(walk.maxMs)}; ${fmt(walk.slowPages)} over 10 ms`,
      );
      return walk;
    };
    console.log(`ListCodes, page_size ${CODES_PAGE_SIZE}, up to ${fmt(maxPages)} pages (target <= 10 ms per page):`);
    for (const program of [programKey, loadReport.newProgram.key]) {
      const { rows: programRows } = await admin.query<{ codes: string; user_id: string }>(
        `SELECT (SELECT count(*) FROM referral_codes c WHERE c.program_id = p.id) AS codes,
           (SELECT c.user_id FROM referral_codes c WHERE c.program_id = p.id AND c.user_id NOT LIKE 'whale-%' AND c.user_id NOT LIKE 'influencer-%'
            ORDER BY c.id DESC LIMIT 1) AS user_id
         FROM referral_programs p WHERE p.program_key = $1`,
        [program],
      );
      const { codes, user_id: userId } = programRows[0]!;
      const cases: [string, ListCodesFilter][] = [
        ["by program", { programKey: program, userId: null, status: null }],
        [`by user ${userId} in it`, { programKey: program, userId, status: null }],
        [`by user ${userId}, any program`, { programKey: null, userId, status: null }],
        ...(["ACTIVE", "INACTIVE", "SUSPENDED", "EXPIRED", "EXHAUSTED"] as const).map((status): [string, ListCodesFilter] => [
          `by status ${status}`,
          { programKey: program, userId: null, status },
        ]),
      ];
      console.log(`  program ${program} (${fmt(Number(codes))} codes):`);
      for (const [name, filter] of cases) {
        listCodesWalks[`${program} ${name}`] = await walkAndPrint(name, filter);
      }
    }
    // A status across every program (an operator's "every suspended code").
    console.log("  every program:");
    for (const status of ["ACTIVE", "INACTIVE", "SUSPENDED", "EXPIRED", "EXHAUSTED"] as const) {
      listCodesWalks[`any program by status ${status}`] = await walkAndPrint(`by status ${status}`, { programKey: null, userId: null, status });
    }

    // The plans of the list, earnings and statistics queries at this size, as the service runs them.
    const filterOf = (f: Partial<ReferralFilter>): ReferralFilter => ({
      referrerUserId: null, referredUserId: null, programKey: null, payoutStatus: null, convertedAfter: null, convertedBefore: null, ...f,
    });
    const typicalUser = "user-1";
    const checks: [string, (db: CommonQueryMethods) => Promise<unknown>, "generic"?][] = [
      ...Object.entries(walks).map(([name, walk]): [string, (db: CommonQueryMethods) => Promise<unknown>] => [
        `ListReferrals ${name}, page ${fmt(walk.pages)}`,
        (db) => listReferrals(db, filterOf(walk.filter), walk.cursor ?? null, pageSize + 1),
      ]),
      [`GetUserEarnings ${whale.userId}`, (db) => earnings(db, whale.userId, null, now)],
      [`GetUserEarnings ${typicalUser}`, (db) => earnings(db, typicalUser, null, now)],
      // The deepest page each ListCodes walk fetched.
      ...Object.entries(listCodesWalks).map(([name, walk]): [string, (db: CommonQueryMethods) => Promise<unknown>, "generic"] => [
        `ListCodes ${name}, page ${fmt(walk.pages)}`,
        async (db) => {
          const afterId = walk.lastAfterCode === null ? null : await db.oneFirst(sql.type(z.object({ id: z.bigint() }))`SELECT id FROM referral_codes WHERE code = ${walk.lastAfterCode}`);
          return listCodes(db, { ...walk.filter, afterId, limit: CODES_PAGE_SIZE + 1 }, now);
        },
        "generic",
      ]),
      ...stats.map(({ name, explain: { range, after } }): [string, (db: CommonQueryMethods) => Promise<unknown>] => [
        name,
        name.startsWith("GetProgramStats")
          ? (db) => programStats(db, programKey, range)
          : (db) => topReferrers(db, { programId: benchProgramId, range, orderBy: "conversions", after: after ?? null, limit: 101 }),
      ]),
    ];
    const plans: Record<string, PlanSummary> = {};
    for (const [name, run, mode] of checks) {
      plans[name] = await explain(admin, slonik, run, mode === "generic");
      const p = plans[name];
      const sorted = p.sortedRows === null ? "no sort" : `sort of ${fmt(p.sortedRows)} rows`;
      console.log(`EXPLAIN ${name}: ${p.seqScan ? "SEQ SCAN of a big table" : "index scans only"}, ${sorted}; ${fmt(p.ms)} ms, ${fmt(p.buffers)} buffers; ${p.nodes.join(" > ")}`);
    }

    const results = {
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      seconds, rounds, sizes, small, large, ratios,
      // The calls per second of each round after the load (small and large
      // alternating), and those before it, on the large database still small.
      alternating: { small: smallRounds, large: largeRounds },
      beforeLoad: { ...beforeLoad, rounds: beforeRounds },
      load: { ...loadReport, databaseGb },
      listReferrals: walks, pageSize, plans,
      statistics: { fold, program: programKey, latencyMs: statsLatency },
      earnings: { latencyMs: earningsLatency },
      listCodes: listCodesWalks,
    };
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`results written to ${out}`);
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.error("cleanup failed:", error);
        process.exitCode = 1;
      }
    }
  }
}

const CODES_PAGE_SIZE = 50;

type ListCodesFilter = { programKey: string | null; userId: string | null; status: DomainCodeStatus | null };
type ListCodesWalk = {
  filter: ListCodesFilter;
  pages: number;
  codes: number;
  firstMs: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  /** Pages that took more than the 10 ms target. */
  slowPages: number;
  /** The code the deepest page walked starts after (null: the first page), to EXPLAIN that page. */
  lastAfterCode: string | null;
};

const codeStatuses: Record<DomainCodeStatus, CodeStatus> = {
  ACTIVE: CodeStatus.ACTIVE,
  INACTIVE: CodeStatus.INACTIVE,
  SUSPENDED: CodeStatus.SUSPENDED,
  EXPIRED: CodeStatus.EXPIRED,
  EXHAUSTED: CodeStatus.EXHAUSTED,
};

/** ListCodes with `filter`, page after page through page tokens, at most `maxPages`; each page's time in ms. */
async function walkCodes(
  client: Client<typeof ReferralCodeService>,
  filter: ListCodesFilter,
  maxPages: number,
): Promise<ListCodesWalk> {
  const request = {
    pageSize: CODES_PAGE_SIZE,
    programKey: filter.programKey ?? "",
    userId: filter.userId ?? "",
    status: filter.status === null ? CodeStatus.UNSPECIFIED : codeStatuses[filter.status],
  };
  const times: number[] = [];
  let codes = 0;
  let token = "";
  let after: string | null = null;
  let lastAfterCode: string | null = null;
  do {
    const at = performance.now();
    const response = await client.listCodes({ ...request, pageToken: token });
    times.push(performance.now() - at);
    codes += response.codes.length;
    lastAfterCode = after;
    after = response.codes.at(-1)?.code ?? after;
    token = response.nextPageToken;
  } while (token !== "" && times.length < maxPages);
  const sorted = [...times].sort((a, b) => a - b);
  return {
    filter,
    pages: times.length,
    codes,
    firstMs: times[0]!,
    medianMs: median(times),
    p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!,
    maxMs: sorted.at(-1)!,
    slowPages: times.filter((ms) => ms > 10).length,
    lastAfterCode,
  };
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

type ExplainRow = { "QUERY PLAN": [{ Plan: PlanNode & { "Shared Hit Blocks": number; "Shared Read Blocks": number }; "Execution Time": number }] };

/**
 * Runs `run` once on the pool, then EXPLAIN ANALYZE of the last query it sent,
 * summarised: planned with its values or, with `generic`, as a prepared
 * statement with a generic plan, as the service's sessions plan it
 * (plan_cache_mode, src/db/pool.ts).
 */
async function explain(admin: pg.Client, slonik: DatabasePool, run: (db: CommonQueryMethods) => Promise<unknown>, generic = false): Promise<PlanSummary> {
  await slonik.connect(run);
  const query = captured!;
  let rows: ExplainRow[];
  if (generic) {
    const values = (query.values as unknown[]).map((value) => (value === null ? "NULL" : admin.escapeLiteral(String(value))));
    await admin.query("SET plan_cache_mode = force_generic_plan");
    await admin.query(`PREPARE scale_explained AS ${query.sql}`);
    try {
      ({ rows } = await admin.query<ExplainRow>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE scale_explained(${values.join(", ")})`));
    } finally {
      await admin.query("DEALLOCATE scale_explained");
      await admin.query("RESET plan_cache_mode");
    }
  } else {
    ({ rows } = await admin.query<ExplainRow>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${query.sql}`, query.values as unknown[]));
  }
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
