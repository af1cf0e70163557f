/**
 * npm run bench: the service against the physical limits of this machine, in
 * one run, alternating A/B rounds so drift cancels. See README "Performance".
 *
 *   BENCH_SECONDS   seconds per round (default 5)
 *   BENCH_ROUNDS    A/B rounds per comparison (default 3)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded PostgreSQL
 *   BENCH_OUT       JSON results file (default bench/results/latest.json)
 *   BENCH_SMOKE=1   tiny sizes, for the test suite
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { ReferralCodeService, ValidateCodeRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { runMigrations } from "../src/db/migrate.ts";
import { startEmbeddedPostgres } from "../src/db/embedded-postgres.ts";
import { createLogger } from "../src/logger.ts";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createClient } from "@connectrpc/connect";
import { grpcFrame, h2loadCallsPerSecond } from "./h2load.ts";
import { closedLoop, openLoop, unaryCaller } from "./load.ts";

const run = promisify(execFile);
const smoke = process.env.BENCH_SMOKE === "1";
const seconds = Number(process.env.BENCH_SECONDS ?? (smoke ? 1 : 5));
const rounds = Number(process.env.BENCH_ROUNDS ?? (smoke ? 1 : 3));
const out = process.env.BENCH_OUT ?? path.resolve("bench/results/latest.json");
const root = path.resolve(import.meta.dirname, "..");
const logger = createLogger("warn");

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
const fmt = (n: number) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: n < 100 ? 2 : 0 }) : "n/a");

function spawnLines(command: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  return { child, lines };
}

async function waitForLine(lines: ReturnType<typeof createInterface>, test: (line: string) => boolean): Promise<string> {
  for await (const line of lines) if (test(line)) return line;
  throw new Error("process ended before it was ready");
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await once(child, "exit");
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on the port (the service is up). */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const { connect } = await import("node:net");
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the service did not start");
}

async function main() {
  // The database: embedded PostgreSQL in a temporary directory, or the one given.
  let databaseUrl = process.env.BENCH_DATABASE_URL ?? "";
  let dataDir: string | undefined;
  let stopDatabase = async () => {};
  if (databaseUrl === "") {
    dataDir = path.join(tmpdir(), `referral-bench-${randomBytes(4).toString("hex")}`);
    const embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), database: "bench", logger });
    databaseUrl = embedded.connectionString;
    stopDatabase = () => embedded.stop();
  }
  await runMigrations(databaseUrl);

  // The service, as its own process, its call logs going to a file as they
  // would to a log shipper (a pipe the bench reads could block it), and the
  // bare grpc-js echo server.
  const [port, grpcPort] = [await freePort(), await freePort()];
  const logFile = path.join(tmpdir(), `referral-bench-${process.pid}.log`);
  const logFd = openSync(logFile, "w");
  const serviceChild = spawn(process.execPath, ["src/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      GRPC_PORT: String(grpcPort),
      HOST: "127.0.0.1",
      METRICS_PORT: "0",
      LOG_LEVEL: "info",
      DATABASE_POOL_SIZE: "10",
    },
    stdio: ["ignore", logFd, "inherit"],
  });
  await waitForPort(grpcPort, serviceChild);
  const service = { child: serviceChild };
  const echo = spawnLines(process.execPath, ["bench/echo-server.ts"]);
  const echoPort = Number(await waitForLine(echo.lines, (l) => /^\d+$/.test(l)));
  // The Connect port (all protocols) and the gRPC port (@grpc/grpc-js): gRPC clients use the latter.
  const serviceUrl = `http://127.0.0.1:${port}`;
  const grpcUrl = `http://127.0.0.1:${grpcPort}`;
  const address = `127.0.0.1:${grpcPort}`;

  try {
    // Seed: a program and codes.
    const client = createClient(ReferralCodeService, createGrpcTransport({ baseUrl: serviceUrl }));
    const programKey = `bench-${randomBytes(3).toString("hex")}`;
    await client.createProgram({
      program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD", maxCodesPerUser: 1000 },
    });
    // Vanity codes BENCH00001…: conversions spread over them, and pgbench picks the same ones.
    const codeCount = smoke ? 10 : 1000;
    const benchCodes = Array.from({ length: codeCount }, (_, i) => `BENCH${String(i + 1).padStart(5, "0")}`);
    let seeded = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (seeded < codeCount) {
          const i = seeded++;
          await client.createCode({ programKey, userId: `seed-${i % 100}`, code: benchCodes[i]! });
        }
      }),
    );
    const code = benchCodes[0]!;
    const results: Record<string, unknown> = { machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version }, seconds, rounds };

    // (1) ValidateCode over gRPC vs the bare grpc-js echo, h2load, alternating.
    const body = path.join(tmpdir(), `validate-${process.pid}.bin`);
    writeFileSync(body, grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code }))));
    const load = { seconds, connections: smoke ? 2 : 8, streams: smoke ? 4 : 16 };
    const echoRates: number[] = [];
    const validateRates: number[] = [];
    const connectPortRates: number[] = [];
    const path_ = "/referral.v1.ReferralCodeService/ValidateCode";
    for (let r = 0; r < rounds; r++) {
      echoRates.push(await h2loadCallsPerSecond(`http://127.0.0.1:${echoPort}${path_}`, body, load));
      validateRates.push(await h2loadCallsPerSecond(`${grpcUrl}${path_}`, body, load));
      connectPortRates.push(await h2loadCallsPerSecond(`${serviceUrl}${path_}`, body, load));
    }
    rmSync(body, { force: true });
    results.validateCode = {
      callsPerSecond: median(validateRates),
      echoCallsPerSecond: median(echoRates),
      ratio: median(validateRates) / median(echoRates),
      connectPortCallsPerSecond: median(connectPortRates),
      rounds: { validateRates, echoRates, connectPortRates },
    };

    // (2) TrackReferral (distinct users and transactions) vs pgbench on the same SQL.
    const track = unaryCaller(address, ReferralCodeService.method.trackReferral);
    const pgbench = ["/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"].find((p) => existsSync(p));
    const trackRates: number[] = [];
    const pgbenchRates: number[] = [];
    let sequence = 0;
    for (let r = 0; r < rounds; r++) {
      trackRates.push(
        await closedLoop(seconds, smoke ? 4 : 32, () =>
          track.call({
            code: benchCodes[sequence % codeCount]!,
            referredUserId: `bench-user-${r}-${sequence}`,
            transactionId: `bench-txn-${r}-${sequence++}`,
            transactionAmountMinor: 1000n,
          }),
        ),
      );
      if (pgbench) {
        const { stdout } = await run(pgbench, [
          "-n", "-M", "prepared", "-c", smoke ? "2" : "10", "-j", "1", "-T", String(seconds),
          "-D", `codes=${codeCount}`,
          "-f", path.join(root, "bench/track-referral.pgbench.sql"), databaseUrl,
        ]);
        pgbenchRates.push(Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN));
      }
    }
    track.close();
    results.trackReferral = {
      callsPerSecond: median(trackRates),
      pgbenchPerSecond: median(pgbenchRates),
      ratio: median(trackRates) / median(pgbenchRates),
      rounds: { trackRates, pgbenchRates },
    };

    // (3) BatchCreateCodes throughput.
    const batch = unaryCaller(address, ReferralCodeService.method.batchCreateCodes);
    const batchSize = smoke ? 50 : 1000;
    let batchN = 0;
    const batchRates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const perSecond = await closedLoop(seconds, 4, () =>
        batch.call({ programKey, userIds: Array.from({ length: batchSize }, (_, i) => `batch-${batchN}-${i}`) }).then(() => void batchN++),
      );
      batchRates.push(perSecond * batchSize);
    }
    batch.close();
    results.batchCreateCodes = { codesPerSecond: median(batchRates), rounds: batchRates };

    // (4) ValidateCode latency at a fixed open-loop rate.
    const validate = unaryCaller(address, ReferralCodeService.method.validateCode);
    const rate = smoke ? 100 : 2000;
    const latency = await openLoop(rate, seconds, () => validate.call({ code }));
    validate.close();
    results.validateLatency = { rate, ...latency };

    const v = results.validateCode as { callsPerSecond: number; echoCallsPerSecond: number; ratio: number; connectPortCallsPerSecond: number };
    const tr = results.trackReferral as { callsPerSecond: number; pgbenchPerSecond: number; ratio: number };
    console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} A/B rounds of ${seconds}s (medians)`);
    console.log(`(1) ValidateCode  ${fmt(v.callsPerSecond)} calls/s   bare grpc-js echo ${fmt(v.echoCallsPerSecond)} calls/s   ratio ${fmt(v.ratio)} (target >= 0.5); Connect port: ${fmt(v.connectPortCallsPerSecond)} calls/s`);
    console.log(`(2) TrackReferral ${fmt(tr.callsPerSecond)} calls/s   pgbench same SQL ${fmt(tr.pgbenchPerSecond)} tx/s   ratio ${fmt(tr.ratio)} (target >= 0.5)`);
    console.log(`(3) BatchCreateCodes ${fmt((results.batchCreateCodes as { codesPerSecond: number }).codesPerSecond)} codes/s (target >= 50,000)`);
    console.log(`(4) ValidateCode at ${rate}/s open loop: p50 ${fmt(latency.p50)} ms, p99 ${fmt(latency.p99)} ms, max ${fmt(latency.max)} ms, ${latency.failures} failed (target p99 <= 10 ms)`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`results written to ${out}`);
  } finally {
    await stop(service.child);
    closeSync(logFd);
    rmSync(logFile, { force: true });
    await stop(echo.child);
    await stopDatabase();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
