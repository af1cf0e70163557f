/**
 * What the benches share: an embedded PostgreSQL (or the one given), the
 * service as its own process, a seeded program with vanity codes, and the
 * figures' formatting.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { startEmbeddedPostgres } from "../src/db/embedded-postgres.ts";
import { runMigrations } from "../src/db/migrate.ts";
import { createLogger } from "../src/platform/logger.ts";

const root = path.resolve(import.meta.dirname, "..");

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
export const fmt = (n: number) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: n < 100 ? 2 : 0 }) : "n/a");

export function spawnLines(command: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  return { child, lines };
}

export async function waitForLine(lines: ReturnType<typeof createInterface>, test: (line: string) => boolean): Promise<string> {
  for await (const line of lines) if (test(line)) return line;
  throw new Error("process ended before it was ready");
}

export async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  await once(child, "exit");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on the port (the service is up). */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
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

export type BenchService = {
  databaseUrl: string;
  /** The Connect port (all protocols). */
  serviceUrl: string;
  /** The gRPC port (@grpc/grpc-js), as a URL and as host:port. */
  grpcUrl: string;
  address: string;
  /**
   * Calls of `method` the service answered with another code than OK so far,
   * from its metrics: h2load counts an HTTP 200 as a success, and gRPC errors
   * travel in the trailers of an HTTP 200.
   */
  failedCalls(method: string): Promise<number>;
  close(): Promise<void>;
};

/**
 * The database (an embedded PostgreSQL in a temporary directory, or `databaseUrl`,
 * migrated here) and the service as its own process, its call logs going to a
 * file as they would to a log shipper (a pipe the bench reads could block it).
 * `logName` names that file (`<logName>-<pid>.log`): a bench running two
 * services gives each its own. `env` adds settings (OTEL_*, say).
 */
export async function startBenchService(databaseUrl: string, logName = "referral-bench", env: Record<string, string> = {}): Promise<BenchService> {
  let dataDir: string | undefined;
  let stopDatabase = async () => {};
  if (databaseUrl === "") {
    dataDir = path.join(tmpdir(), `referral-bench-${randomBytes(4).toString("hex")}`);
    const embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), database: "bench", logger: createLogger("warn") });
    databaseUrl = embedded.connectionString;
    stopDatabase = () => embedded.stop();
  }
  await runMigrations(databaseUrl);

  const [port, grpcPort] = [await freePort(), await freePort()];
  const logFile = path.join(tmpdir(), `${logName}-${process.pid}.log`);
  const logFd = openSync(logFile, "w");
  const child = spawn(process.execPath, ["src/main.ts"], {
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
      ...env,
    },
    stdio: ["ignore", logFd, "inherit"],
  });
  // An unexpected exit is reported, and its log kept to read why.
  let closing = false;
  child.once("exit", (code, signal) => {
    if (!closing) process.stderr.write(`the service exited unexpectedly (${signal ?? `code ${code}`}); its log is kept in ${logFile}\n`);
  });
  await waitForPort(grpcPort, child);
  const metricsPort = await readMetricsPort(logFile);
  return {
    databaseUrl,
    serviceUrl: `http://127.0.0.1:${port}`,
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
    address: `127.0.0.1:${grpcPort}`,
    failedCalls: async (method) => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      let failed = 0;
      for (const [, labels, count] of text.matchAll(/^rpc_requests_total\{([^}]*)\} (\d+)/gm)) {
        if (labels!.includes(`method="${method}"`) && !labels!.includes('code="OK"')) failed += Number(count);
      }
      return failed;
    },
    close: async () => {
      const exited = child.exitCode !== null || child.signalCode !== null;
      closing = true;
      await stop(child);
      closeSync(logFd);
      if (!exited) rmSync(logFile, { force: true });
      await stopDatabase();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The metrics port the service logged when it started listening. */
async function readMetricsPort(logFile: string): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = /"metrics_port":(\d+)/.exec(readFileSync(logFile, "utf8"))?.[1];
    if (port !== undefined) return Number(port);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the service logged no metrics port in ${logFile}`);
}

/** Runs `call(0)` … `call(count - 1)`, sixteen in flight at a time. */
async function sixteenAtATime(count: number, call: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) await call(next++);
    }),
  );
}

/**
 * A FIXED USD program and `codeCount` vanity codes BENCH00001…, created through
 * the API (16 at a time), owned by 100 seed users: conversions spread over them,
 * and pgbench picks the same ones. Then `conversionCount` conversions through
 * the API and an ANALYZE, so the measurements see what a service that has been
 * running sees: tables with rows and statistics. On tables that were empty when
 * they were planned, PostgreSQL's cached generic plans find a conversion's
 * replay by scanning the program's rows (`referral_trackings_program_idx`)
 * instead of the (program, transaction_id) unique index, until autovacuum's
 * ANALYZE invalidates them: TrackReferral then measured 752 instead of 1,256
 * calls/s, and its read 0.9 ms instead of 0.04 ms in PostgreSQL.
 */
export async function seedBenchProgram(serviceUrl: string, codeCount: number, databaseUrl: string, conversionCount = 2 * codeCount) {
  const client = createClient(ReferralCodeService, createGrpcTransport({ baseUrl: serviceUrl }));
  const programKey = `bench-${randomBytes(3).toString("hex")}`;
  await client.createProgram({
    program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD", maxCodesPerUser: 1000 },
  });
  const codes = Array.from({ length: codeCount }, (_, i) => `BENCH${String(i + 1).padStart(5, "0")}`);
  await sixteenAtATime(codeCount, (i) => client.createCode({ programKey, userId: `seed-${i % 100}`, code: codes[i]! }));
  await sixteenAtATime(conversionCount, (i) =>
    client.trackReferral({ code: codes[i % codeCount]!, referredUserId: `seed-referred-${i}`, transactionId: `seed-${i}`, transactionAmountMinor: 1000n }),
  );
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await admin.query("ANALYZE");
    const { rows } = await admin.query<{ id: string }>("SELECT id::text FROM referral_programs WHERE program_key = $1", [programKey]);
    return { client, programKey, programId: rows[0]!.id, codes };
  } finally {
    await admin.end();
  }
}
