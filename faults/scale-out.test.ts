import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import type { DatabasePool } from "slonik";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../src/db/pool.ts";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { createProgram } from "../test/support/fixtures.ts";
import { asConnectClient, createGrpcJsClient } from "../test/support/grpc-js-client.ts";
import { describeReferralRaces } from "../test/support/referral-races.ts";
import { spawnServer, type ServerProcess } from "../test/support/server-process.ts";
import { callError } from "../test/support/server.ts";
import { type FaultCluster, startFaultCluster } from "./cluster.ts";
import { checkInvariants } from "./invariants.ts";
import { type Bouncer, havePgBouncer, PGBOUNCER, startPgBouncer } from "./pgbouncer.ts";

/**
 * The production topology in small: three replicas (`node src/main.ts`)
 * whose DATABASE_URL is PgBouncer in transaction mode in front of one
 * PostgreSQL, called through ONE @grpc/grpc-js channel balancing round robin
 * over the three. The conversion races of test/referral-races.test.ts run
 * through it; then the calls' spread, the invariants in SQL, and the
 * per-call deadline behind PgBouncer are checked.
 */
const REPLICAS = 3;
const POOL_SIZE = 16;
/** Server connections PgBouncer opens (per database and user). */
const BOUNCER = { defaultPoolSize: 10, maxClientConn: 100 };
/** The server-side cap, set on the database since PgBouncer drops startup parameters. */
const SERVER_STATEMENT_TIMEOUT = "10s";

const bouncerFound = await havePgBouncer();
if (!bouncerFound) {
  console.log(`\n!!! SKIPPING the scale-out topology test: no PgBouncer at ${PGBOUNCER} (apt-get install pgbouncer; .ci/run does) !!!\n`);
}

let cluster: FaultCluster;
let bouncer: Bouncer;
let replicas: ServerProcess[] = [];
let channel: ReturnType<typeof createGrpcJsClient>;
let db: DatabasePool;
/** Every call made through the balanced channel, by outcome. */
const tally: { calls: number; outcomes: Record<string, number> } = { calls: 0, outcomes: {} };
let rr: Client<typeof ReferralCodeService>;

/** `client` with every call counted in `tally` by its gRPC code. */
function counted(client: Client<typeof ReferralCodeService>): Client<typeof ReferralCodeService> {
  const count = (outcome: string) => (tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + 1);
  return new Proxy(client, {
    get(target, name) {
      const method = Reflect.get(target, name) as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        tally.calls++;
        try {
          const response = await method(...args);
          count("OK");
          return response;
        } catch (error) {
          count(Code[ConnectError.from(error).code] ?? "Unknown");
          throw error;
        }
      };
    },
  });
}

/** rpc_requests_total of one method on one replica, from its /metrics. */
async function handled(replica: ServerProcess, method: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${replica.metricsPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^rpc_requests_total\{(.*)\} (\d+)$/.exec(line);
    if (match && match[1]!.includes(`method="${method}"`)) total += Number(match[2]);
  }
  return total;
}

beforeAll(async () => {
  if (!bouncerFound) return;
  cluster = await startFaultCluster();
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query(`ALTER DATABASE faults SET statement_timeout = '${SERVER_STATEMENT_TIMEOUT}'`).finally(() => admin.end());
  bouncer = await startPgBouncer(cluster.url, BOUNCER);
  // Started at once: migrations run once (on PostgreSQL itself, whose session
  // advisory lock PgBouncer could not keep), the pools go through PgBouncer.
  replicas = await Promise.all(
    Array.from({ length: REPLICAS }, () =>
      spawnServer(bouncer.url, { DATABASE_POOL_SIZE: String(POOL_SIZE), DATABASE_MIGRATIONS_URL: cluster.url, DATABASE_LISTEN_URL: cluster.url, DATABASE_PREPARED_STATEMENTS: "false" }),
    ),
  );
  const target = `ipv4:${replicas.map((r) => `127.0.0.1:${r.grpcPort}`).join(",")}`;
  channel = createGrpcJsClient(ReferralCodeService, target, grpc.credentials.createInsecure(), {
    "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  });
  rr = counted(asConnectClient(ReferralCodeService, channel));
  db = await createDatabasePool(cluster.url, { maxPoolSize: 2, statementTimeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  channel?.close();
  const exits = await Promise.all(replicas.map((r) => r.stop()));
  await db?.end();
  await bouncer?.stop();
  await cluster?.destroy();
  expect(exits.every((code) => code === 0)).toBe(true);
});

describe.skipIf(!bouncerFound)(`${REPLICAS} replicas → PgBouncer (transaction pooling) → PostgreSQL, one round_robin channel`, () => {
  describeReferralRaces("TrackReferral races", () => ({ grpc: rr, db, databaseUrl: cluster.url, client: () => rr }));

  it("a short deadline leaves no shortened statement_timeout on PgBouncer's server connections", async () => {
    const program = await createProgram({ grpc: rr });
    const { code } = await rr.createCode({ programKey: program.programKey, userId: "deadline-owner" });
    // 300 calls with deadlines far below the server's cap, 10 at a time, over
    // every replica and pool connection (the old session-level SET/RESET
    // left 999 ms and 985 ms on two of the ten server connections here).
    let answered = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        for (let i = 0; i < 30; i++) {
          await rr.getCode({ code: code!.code }, { timeoutMs: 1000 }).then(() => answered++, () => undefined);
        }
      }),
    );
    expect(answered).toBeGreaterThan(0);

    // Hold every server connection at once (one transaction each) and read its setting.
    const clients = Array.from({ length: BOUNCER.defaultPoolSize }, () => new pg.Client({ connectionString: bouncer.url }));
    try {
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => c.query("BEGIN")));
      const rows = await Promise.all(
        clients.map((c) => c.query<{ statement_timeout: string; pid: number }>("SELECT current_setting('statement_timeout') AS statement_timeout, pg_backend_pid() AS pid")),
      );
      const settings = rows.map((r) => r.rows[0]!);
      expect(new Set(settings.map((s) => s.pid)).size).toBe(BOUNCER.defaultPoolSize);
      expect(settings.map((s) => s.statement_timeout)).toEqual(settings.map(() => SERVER_STATEMENT_TIMEOUT));
      await Promise.all(clients.map((c) => c.query("COMMIT")));
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }

    // A call with a long deadline waits 1.5 s on a lock and still succeeds.
    const locker = new pg.Client({ connectionString: cluster.url });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM referral_codes WHERE code = $1 FOR UPDATE", [code!.code]);
      const waiting = rr.updateCode(
        { code: { code: code!.code, metadata: { waited: "yes" } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) },
        { timeoutMs: 20_000 },
      );
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await locker.query("COMMIT");
      expect((await waiting).code?.metadata).toEqual({ waited: "yes" });
    } finally {
      await locker.end();
    }
  });

  it("behind PgBouncer, PostgreSQL ends the query of a call whose deadline passed", async () => {
    const program = await createProgram({ grpc: rr });
    const { code } = await rr.createCode({ programKey: program.programKey, userId: "cancel-owner" });
    const locker = new pg.Client({ connectionString: cluster.url });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM referral_codes WHERE code = $1 FOR UPDATE", [code!.code]);
      const error = await callError(
        rr.updateCode({ code: { code: code!.code, metadata: { a: "b" } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) }, { timeoutMs: 300 }),
      );
      expect(error.code).toBe(Code.DeadlineExceeded);
      // Still holding the lock, far inside the server's 10 s cap: only a cancel can have ended it.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const { rows } = await locker.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%UPDATE referral_codes SET%' AND pid <> pg_backend_pid()",
      );
      expect(rows[0]!.n).toBe(0);
      await locker.query("COMMIT");
    } finally {
      await locker.end();
    }
  });

  it("the calls spread over all three replicas, and every invariant holds", async () => {
    const perReplica = await Promise.all(replicas.map((r) => handled(r, "TrackReferral")));
    const total = perReplica.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(2000);
    for (const n of perReplica) expect(n, `TrackReferral per replica: ${perReplica.join(", ")}`).toBeGreaterThan(total / (REPLICAS * 2));
    const invariants = await checkInvariants(cluster.url);
    const { OK: ok = 0, ...errors } = tally.outcomes;
    console.log(
      `\nfault | calls | errors by code | invariant checks passed\n` +
        `${REPLICAS} replicas (pool ${POOL_SIZE} each) → PgBouncer transaction pooling (default_pool_size ${BOUNCER.defaultPoolSize}) → PostgreSQL; ` +
        `TrackReferral per replica ${perReplica.join("/")} | ${tally.calls} (${ok} OK) | ${JSON.stringify(errors)} | ${invariants.length}`,
    );
  });
});
