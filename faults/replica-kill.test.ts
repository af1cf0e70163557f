import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMigrations } from "../src/db/migrate.ts";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { spawnServer, type ServerProcess } from "../test/support/server-process.ts";
import { type FaultCluster, startFaultCluster } from "./cluster.ts";
import { checkInvariants } from "./invariants.ts";

const CALLS = Number(process.env.FAULT_KILL_CALLS ?? 10_000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let cluster: FaultCluster;
beforeAll(async () => {
  cluster = await startFaultCluster();
  await runMigrations(cluster.url);
}, 120_000);
afterAll(async () => {
  await cluster?.destroy();
});

describe("a replica killed with SIGKILL during load", () => {
  it(`${CALLS} TrackReferral calls, retried with the same transaction_id on the other replica: none lost, none doubled`, async () => {
    // Replica A is killed and restarted at random moments; replica B stays.
    let a = await spawnServer(cluster.url, { DATABASE_POOL_SIZE: "8" });
    const b = await spawnServer(cluster.url, { DATABASE_POOL_SIZE: "8" });
    const key = `kill-${Date.now()}`;
    await b.grpc.createProgram({ program: { programKey: key, name: key, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD" } });
    const codes: string[] = [];
    for (let i = 0; i < 8; i++) codes.push((await b.grpc.createCode({ programKey: key, userId: `referrer-${i}` })).code!.code);

    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing) {
        await sleep(300 + Math.random() * 1200);
        if (!killing) break;
        a.child.kill("SIGKILL");
        kills++;
        a = await spawnServer(cluster.url, { DATABASE_POOL_SIZE: "8" });
      }
    })();

    const answered = new Map<string, string>(); // transaction id -> referral id the client got
    const attemptsByCode: Record<string, number> = {};
    let next = 0;
    const worker = async () => {
      while (next < CALLS) {
        const n = next++;
        const request = { code: codes[n % codes.length]!, referredUserId: `killed-user-${n}`, transactionId: `killed-txn-${n}` };
        for (let attempt = 0; ; attempt++) {
          const replica: ServerProcess = attempt % 2 === 0 ? a : b;
          try {
            const { referral } = await replica.grpc.trackReferral(request, { timeoutMs: 5000 });
            answered.set(request.transactionId, referral!.id);
            break;
          } catch (error) {
            const code = Code[ConnectError.from(error).code] ?? "Unknown";
            attemptsByCode[code] = (attemptsByCode[code] ?? 0) + 1;
            if (attempt > 50) throw new Error(`call ${n} kept failing: ${String(error)}`);
            await sleep(10);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 24 }, worker));
    killing = false;
    await killer;
    await a.stop();
    await b.stop();

    const client = new pg.Client({ connectionString: cluster.url });
    await client.connect();
    const { rows } = await client
      .query<{ transaction_id: string; id: string }>(
        "SELECT t.transaction_id, t.id::text AS id FROM referral_trackings t JOIN referral_programs p ON p.id = t.program_id WHERE p.program_key = $1",
        [key],
      )
      .finally(() => client.end());
    expect(kills).toBeGreaterThan(0);
    expect(answered.size).toBe(CALLS);
    expect(rows).toHaveLength(CALLS);
    for (const row of rows) expect(answered.get(row.transaction_id)).toBe(row.id);
    const invariants = await checkInvariants(cluster.url);
    console.log(
      `\nfault | calls | failed attempts by code (retried) | invariant checks passed\n` +
        `replica SIGKILLed ${kills} times | ${CALLS} | ${JSON.stringify(attemptsByCode)} | ${invariants.length}`,
    );
  }, 300_000);
});
