import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProgram } from "../support/fixtures.ts";
import { spawnServer, type ServerProcess } from "../support/server-process.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

describe("graceful shutdown", () => {
  let t: TestServer;
  let server: ServerProcess;
  beforeAll(async () => {
    t = await startTestServer();
    server = await spawnServer(inject("databaseUrl"), { SHUTDOWN_GRACE_MS: "10000" });
  });
  afterAll(async () => {
    await server?.stop();
    await t?.close();
  });

  it("SIGTERM during load: every call started before it succeeds, and the process exits 0", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "shutdown-owner" });
    const calls: { startedAt: number; outcome: Promise<string> }[] = [];
    let stop = false;
    let n = 0;
    const worker = async () => {
      while (!stop) {
        const startedAt = Date.now();
        const i = n++;
        const call =
          i % 2 === 0
            ? server.grpc.validateCode({ code: code!.code })
            : server.grpc.trackReferral({ code: code!.code, referredUserId: `shutdown-${i}`, transactionId: `shutdown-t-${i}` });
        const outcome = call.then(
          () => "ok",
          (error: unknown) => {
            const e = ConnectError.from(error);
            // New streams after GOAWAY are refused (REFUSED_STREAM, safe to retry);
            // connect-node reports that as INTERNAL, grpc-js as UNAVAILABLE.
            return /REFUSED_STREAM/.test(e.message) ? "Refused" : (Code[e.code] ?? "Unknown");
          },
        );
        calls.push({ startedAt, outcome });
        await outcome;
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    // Under load: SIGTERM once a good number of calls has gone through.
    while (calls.length < 200) await new Promise((resolve) => setTimeout(resolve, 20));
    const killedAt = Date.now();
    const exited = server.stop();
    await new Promise((resolve) => setTimeout(resolve, 200));
    stop = true;
    await Promise.all(workers);
    expect(await exited).toBe(0);

    const results = await Promise.all(calls.map(async (c) => ({ startedAt: c.startedAt, outcome: await c.outcome })));
    const before = results.filter((r) => r.startedAt < killedAt - 20);
    expect(before.length).toBeGreaterThan(100);
    expect(before.filter((r) => r.outcome !== "ok")).toEqual([]);
    // Calls sent after SIGTERM are refused before any work, never failed halfway.
    for (const r of results) expect(["ok", "Refused", "Unavailable"]).toContain(r.outcome);
  });
});
