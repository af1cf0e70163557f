/**
 * npm run bench:update: how long UpdateProgram takes while 300 callers stream
 * conversions into the program it changes. See docs/performance.md.
 *
 * Three service processes share one database: the stream goes to two of
 * them (over their grpc-js ports, callers alternating, 20 pooled connections
 * each, as in test/referral-races.test.ts), the update to one of those or to
 * the third. Through a loaded one, the update queues for the process and its
 * pool like every call there; through the idle one (as an operator's call
 * may reach), its time is what the database makes it wait. Each round makes
 * a program and a code per caller, starts the stream, and once 300
 * conversions have been answered sends the one update of its case; the
 * stream stops when the update returns.
 *
 *   BENCH_ROUNDS        rounds per case and path (default 5)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded PostgreSQL
 *   BENCH_STREAM_SECONDS  the longest a stream runs (default 30): an update that
 *                       waits for the stream to end then returns after it
 *   BENCH_CASE          only the cases whose name contains this (default: all)
 *   BENCH_OUT           JSON results file (default bench/results/update.json)
 *   BENCH_SMOKE=1       one round, 30 callers
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { fmt, median, startBenchService } from "./harness.ts";
import { unaryCaller } from "./load.ts";

const smoke = process.env.BENCH_SMOKE === "1";
const rounds = Number(process.env.BENCH_ROUNDS ?? (smoke ? 1 : 5));
const callers = smoke ? 30 : 300;
const streamSeconds = Number(process.env.BENCH_STREAM_SECONDS ?? 30);
const out = process.env.BENCH_OUT ?? path.resolve("bench/results/update.json");

type Case = { name: string; budgeted: boolean; paths: string[]; change: (name: string) => Record<string, unknown> };
const cases: Case[] = [
  { name: "deactivate", budgeted: false, paths: ["active"], change: () => ({ active: false }) },
  { name: "deactivate, budgeted program", budgeted: true, paths: ["active"], change: () => ({ active: false }) },
  { name: "rename, budgeted program", budgeted: true, paths: ["name"], change: (name) => ({ name: `${name} renamed` }) },
  { name: "set a budget where there was none", budgeted: false, paths: ["budget_minor"], change: () => ({ budgetMinor: 10n ** 12n }) },
];

/** How long one UpdateProgram took, and the gRPC code it failed with, if it did. */
type Wait = { ms: number; failed: string | null };

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] ?? Number.NaN;

async function main() {
  const pool = { DATABASE_POOL_SIZE: "20" };
  const loaded = await startBenchService(process.env.BENCH_DATABASE_URL ?? "", "referral-bench-update-loaded", pool);
  const services = [
    loaded,
    await startBenchService(loaded.databaseUrl, "referral-bench-update-loaded-2", pool),
    await startBenchService(loaded.databaseUrl, "referral-bench-update-idle"),
  ];
  const idle = services[2]!;
  const clientOf = (url: string) => createClient(ReferralCodeService, createGrpcTransport({ baseUrl: url }));
  const paths = { "through a loaded replica": clientOf(loaded.serviceUrl), "through an idle replica": clientOf(idle.serviceUrl) };
  const admin = paths["through an idle replica"];
  const tracks = services.slice(0, 2).map((service) => unaryCaller(service.address, ReferralCodeService.method.trackReferral, 4));
  try {
    const results: Record<string, unknown>[] = [];
    for (const c of cases.filter((c) => c.name.includes(process.env.BENCH_CASE ?? ""))) {
      for (const [path, client] of Object.entries(paths)) {
        const waits: Wait[] = [];
        const conversionLatencies: number[] = [];
        for (let round = 0; round < rounds; round++) {
          const key = `upd-${randomBytes(4).toString("hex")}`;
          await admin.createProgram({
            program: {
              programKey: key,
              name: key,
              rewardKind: RewardKind.FIXED,
              rewardAmountMinor: 100n,
              rewardCurrency: "USD",
              ...(c.budgeted ? { budgetMinor: 10n ** 12n } : {}),
            },
          });
          const userIds = Array.from({ length: callers }, (_, i) => `streamer-${i}`);
          const codes = (await admin.batchCreateCodes({ programKey: key, userIds })).codes.map((code) => code.code);
          let answered = 0;
          let stopped = false;
          let update: Promise<Wait> | null = null;
          let updating = false;
          let sequence = 0;
          const streamEnd = performance.now() + streamSeconds * 1000;
          // Each caller: one conversion after another through its own code until the update returned.
          await Promise.all(
            codes.map(async (code, caller) => {
              const track = tracks[caller % tracks.length]!;
              while (!stopped && performance.now() < streamEnd) {
                const started = performance.now();
                await track.call({ code, referredUserId: `u-${key}-${sequence++}`, transactionId: `t-${key}-${sequence++}` }).catch(() => {});
                if (updating) conversionLatencies.push(performance.now() - started);
                if (++answered === callers && update === null) {
                  updating = true;
                  const begun = performance.now();
                  update = client
                    .updateProgram({ program: { programKey: key, ...c.change(key) }, updateMask: { paths: c.paths } })
                    .then(
                      () => ({ ms: performance.now() - begun, failed: null }),
                      (error: unknown) => ({ ms: performance.now() - begun, failed: Code[ConnectError.from(error).code] ?? "Unknown" }),
                    )
                    .finally(() => (stopped = true));
                }
              }
            }),
          );
          if (update === null) throw new Error(`the stream answered fewer than ${callers} conversions in ${streamSeconds} s`);
          waits.push(await update);
        }
        const ms = waits.map((w) => w.ms);
        const figure = {
          case: c.name,
          path,
          rounds: waits.length,
          p50Ms: median(ms),
          maxMs: Math.max(...ms),
          failed: waits.filter((w) => w.failed !== null).map((w) => w.failed),
          conversionP50Ms: percentile(conversionLatencies, 0.5),
        };
        results.push(figure);
        const each = waits.map((w) => (w.failed === null ? fmt(w.ms) : `${fmt(w.ms)} ${w.failed}`)).join(" / ");
        console.log(
          `${c.name}, ${path}: UpdateProgram p50 ${fmt(figure.p50Ms)} ms, max ${fmt(figure.maxMs)} ms (rounds ${each});` +
            ` conversions meanwhile p50 ${fmt(figure.conversionP50Ms)} ms`,
        );
      }
    }
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ callers, rounds, results }, null, 2)}\n`);
    console.log(`results: ${out}`);
  } finally {
    for (const track of tracks) track.close();
    // The first one last: it stops the embedded PostgreSQL, if it started one.
    for (const service of services.reverse()) await service.close();
  }
}

await main();
