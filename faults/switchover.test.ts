import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMigrations } from "../src/db/migrate.ts";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { spawnServer, type ServerProcess } from "../test/support/server-process.ts";
import { type FaultCluster, startFaultCluster } from "./cluster.ts";

/**
 * Two PostgreSQL servers behind one multi-host DATABASE_URL, one taking
 * writes and one read-only (`default_transaction_read_only`, as a server
 * being demoted, or a standby, refuses writes with SQLSTATE 25006). The test
 * swaps them under a running service: the writes that reach the old primary
 * fail UNAVAILABLE, their sessions are dropped, and new sessions open on the
 * new primary.
 */
let first: FaultCluster;
let second: FaultCluster;
let service: ServerProcess;

async function setReadOnly(cluster: FaultCluster, readOnly: boolean): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    await client.query(`ALTER SYSTEM SET default_transaction_read_only = ${readOnly ? "on" : "off"}`);
    await client.query("SELECT pg_reload_conf()");
  } finally {
    await client.end();
  }
}

async function programsOn(cluster: FaultCluster, programKey: string): Promise<number> {
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ count: number }>("SELECT count(*)::int AS count FROM referral_programs WHERE program_key = $1", [programKey]);
    return rows[0]!.count;
  } finally {
    await client.end();
  }
}

const newProgram = (programKey: string) => ({
  program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD" },
});

beforeAll(async () => {
  [first, second] = [await startFaultCluster(), await startFaultCluster()];
  await runMigrations(second.url);
  await setReadOnly(second, true);
  const hosts = `${first.url.replace(`127.0.0.1:${first.port}`, `127.0.0.1:${first.port},127.0.0.1:${second.port}`)}?target_session_attrs=read-write`;
  service = await spawnServer(hosts, { DATABASE_POOL_SIZE: "4", DATABASE_OPERATOR_POOL_SIZE: "0" });
}, 120_000);

afterAll(async () => {
  await service?.stop();
  await first?.destroy();
  await second?.destroy();
});

describe("the primary turns read-only and another host takes writes (a switchover)", () => {
  it("writes on the old primary's sessions fail UNAVAILABLE, those sessions are dropped, and writes land on the new primary", async () => {
    // Every pool connection opened, on the first host (the one taking writes).
    const before = `switch-before-${Date.now()}`;
    await Promise.all(Array.from({ length: 8 }, (_, i) => service.grpc.createProgram(newProgram(`${before}-${i}`))));
    expect(await programsOn(first, `${before}-0`)).toBe(1);

    await setReadOnly(second, false);
    await setReadOnly(first, true);
    const after = `switch-after-${Date.now()}`;
    const failures: string[] = [];
    let created = false;
    for (let attempt = 0; attempt < 20 && !created; attempt++) {
      created = await service.grpc.createProgram(newProgram(after)).then(
        () => true,
        (error: unknown) => {
          failures.push(Code[ConnectError.from(error).code] ?? "Unknown");
          return false;
        },
      );
    }
    expect(created).toBe(true);
    expect(failures.length).toBeGreaterThan(0);
    expect(new Set(failures)).toEqual(new Set(["Unavailable"]));
    expect(await programsOn(second, after)).toBe(1);
    expect(await programsOn(first, after)).toBe(0);
    console.log(`\nswitchover | failed attempts before the write landed on the new primary: ${failures.length} (${[...new Set(failures)].join(", ")})`);
  });
});
