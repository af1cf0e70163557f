import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMigrations } from "../src/db/migrate.ts";
import { createLogger } from "../src/platform/logger.ts";
import { createProgram } from "../test/support/fixtures.ts";
import { startTestServer, type TestServer } from "../test/support/server.ts";
import { type FaultCluster, startFaultCluster } from "./cluster.ts";
import { checkInvariants } from "./invariants.ts";

/** What each fault did, printed as a table at the end. */
const report: { fault: string; calls: number; errors: Record<string, number>; invariants: number }[] = [];

let cluster: FaultCluster;
let t: TestServer;
let codes: string[];
const serviceErrors: string[] = [];
beforeAll(async () => {
  cluster = await startFaultCluster();
  await runMigrations(cluster.url);
  t = await startTestServer({
    databaseUrl: cluster.url,
    poolSize: 8,
    // Errors the service logs (an INTERNAL is always logged with its cause).
    server: { logger: createLogger("error", (line) => serviceErrors.push(line)) },
  });
  const budgeted = await createProgram(t, { budgetMinor: 150_000n });
  const limited = await createProgram(t, { maxRewardsPerReferrer: 30 });
  const plain = await createProgram(t, { defaultCodeMaxUses: 200 });
  codes = [];
  for (const program of [budgeted, limited, plain]) {
    for (let i = 0; i < 3; i++) codes.push((await t.grpc.createCode({ programKey: program.programKey, userId: `referrer-${i % 2}` })).code!.code);
  }
}, 120_000);
afterAll(async () => {
  await t?.close();
  await cluster?.destroy();
  console.log("\nfault | calls | errors by code | invariant checks passed");
  for (const row of report) console.log(`${row.fault} | ${row.calls} | ${JSON.stringify(row.errors)} | ${row.invariants}`);
});

/** TrackReferral from `workers` loops until `stop()`; counts outcomes by gRPC code. */
function load(workers: number) {
  let running = true;
  let sequence = 0;
  const outcomes: Record<string, number> = {};
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const n = sequence++;
      const result = await t.grpc
        .trackReferral(
          { code: codes[n % codes.length]!, referredUserId: `fault-user-${n}`, transactionId: `fault-txn-${n}` },
          { timeoutMs: 2000 },
        )
        .then(
          () => "OK",
          (error: unknown) => Code[ConnectError.from(error).code] ?? "Unknown",
        );
      outcomes[result] = (outcomes[result] ?? 0) + 1;
      if (result !== "OK") await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
  return {
    outcomes,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return Object.values(outcomes).reduce((a, b) => a + b, 0);
    },
  };
}

async function recovered(withinMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      await t.grpc.listPrograms({ pageSize: 1 }, { timeoutMs: 500 });
      return Date.now() - started;
    } catch {
      if (Date.now() - started > withinMs) throw new Error(`not recovered within ${withinMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("database faults under load", () => {
  it("PostgreSQL stopped (immediate) for 5 s: callers get UNAVAILABLE, never INTERNAL; recovery within 2 s; invariants hold", async () => {
    const traffic = load(16);
    await sleep(1000);
    await cluster.stopImmediate();
    await sleep(5000);
    await cluster.start();
    const recovery = await recovered(2000);
    await sleep(500);
    const calls = await traffic.stop();
    const { OK = 0, Unavailable = 0, Internal = 0, Unknown = 0 } = traffic.outcomes;
    expect({ Internal, Unknown }, `${JSON.stringify(traffic.outcomes)}\n${serviceErrors.slice(0, 3).join("\n")}`).toEqual({ Internal: 0, Unknown: 0 });
    expect(Unavailable).toBeGreaterThan(0);
    expect(OK).toBeGreaterThan(0);
    expect(recovery).toBeLessThan(2000);
    const invariants = await checkInvariants(cluster.url);
    report.push({ fault: "PostgreSQL stopped 5 s", calls, errors: traffic.outcomes, invariants: invariants.length });
  }, 60_000);

  it("PostgreSQL stopped for 5 s while consumers stream events: each resumes from its cursor and misses nothing", async () => {
    const start = (await t.grpc.listEvents({ pageSize: 1000 })).nextCursor;
    let streaming = true;
    const consumers = Array.from({ length: 3 }, () => {
      const seen: string[] = [];
      const failures: string[] = [];
      let cursor = start;
      const controller = new AbortController();
      const running = (async () => {
        while (streaming) {
          try {
            for await (const batch of t.grpc.streamEvents({ afterCursor: cursor }, { signal: controller.signal })) {
              seen.push(...batch.events.map((e) => e.id));
              cursor = batch.cursor;
            }
          } catch (error) {
            if (!streaming) break;
            failures.push(Code[ConnectError.from(error).code] ?? "Unknown");
            await sleep(200);
          }
        }
      })();
      return { seen, failures, stop: () => controller.abort(), running };
    });
    const traffic = load(8);
    await sleep(1000);
    await cluster.stopImmediate();
    await sleep(5000);
    await cluster.start();
    await recovered(2000);
    await sleep(1000);
    const calls = await traffic.stop();
    // What the log holds since the consumers started.
    const logged: string[] = [];
    let cursor = start;
    for (;;) {
      const page = await t.grpc.listEvents({ afterCursor: cursor, pageSize: 1000 });
      logged.push(...page.events.map((e) => e.id));
      cursor = page.nextCursor;
      if (page.events.length < 1000) break;
    }
    const deadline = Date.now() + 10_000;
    while (consumers.some((c) => c.seen.length < logged.length) && Date.now() < deadline) await sleep(100);
    streaming = false;
    for (const consumer of consumers) {
      consumer.stop();
      await consumer.running;
      expect(consumer.seen).toEqual(logged);
      expect(consumer.failures.filter((code) => code !== "Unavailable" && code !== "DeadlineExceeded")).toEqual([]);
    }
    expect(logged.length).toBeGreaterThan(0);
    const invariants = await checkInvariants(cluster.url);
    report.push({ fault: `PostgreSQL stopped 5 s under 3 event streams (${logged.length} events each)`, calls, errors: traffic.outcomes, invariants: invariants.length });
  }, 90_000);

  it("PostgreSQL frozen (SIGSTOP) for 10 s: calls fail at their deadlines, health goes NOT_SERVING, all recovers after SIGCONT", async () => {
    const traffic = load(16);
    await sleep(1000);
    await cluster.freeze();
    const frozenAt = Date.now();
    let sawNotServing = false;
    while (Date.now() - frozenAt < 10_000) {
      await sleep(250);
      await t.server.health.probe();
      if (t.server.health.status === 2) sawNotServing = true;
      // The pool never holds more connections than configured.
      const state = t.db.state();
      expect(state.acquiredConnections + state.idleConnections + state.pendingConnections).toBeLessThanOrEqual(8);
    }
    await cluster.thaw();
    const recovery = await recovered(5000);
    await t.server.health.probe();
    await sleep(500);
    const calls = await traffic.stop();
    const { DeadlineExceeded = 0, Internal = 0, Unknown = 0 } = traffic.outcomes;
    expect({ Internal, Unknown }, `${JSON.stringify(traffic.outcomes)}\n${serviceErrors.slice(-3).join("\n")}`).toEqual({ Internal: 0, Unknown: 0 });
    expect(DeadlineExceeded).toBeGreaterThan(0);
    expect(sawNotServing).toBe(true);
    expect(t.server.health.status).toBe(1);
    const invariants = await checkInvariants(cluster.url);
    report.push({ fault: `PostgreSQL frozen 10 s (recovered in ${recovery} ms)`, calls, errors: traffic.outcomes, invariants: invariants.length });
  }, 90_000);

  it("backends terminated mid-transaction: calls fail or succeed cleanly, nothing half-written", async () => {
    const traffic = load(16);
    let terminated = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      terminated += await cluster.terminateBackends("%referral_%");
    }
    const calls = await traffic.stop();
    expect(terminated).toBeGreaterThan(0);
    const { Internal = 0, Unknown = 0 } = traffic.outcomes;
    expect({ Internal, Unknown }).toEqual({ Internal: 0, Unknown: 0 });
    const invariants = await checkInvariants(cluster.url);
    report.push({ fault: `${terminated} backends terminated`, calls, errors: traffic.outcomes, invariants: invariants.length });
  }, 60_000);
});
