import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, inject } from "vitest";
import type { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { describeReferralRaces } from "./support/referral-races.ts";
import { spawnServer, type ServerProcess } from "./support/server-process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

/**
 * Every race runs through two servers sharing the database: this process's
 * and a second `node src/main.ts` process. Calls alternate between them.
 * (faults/scale-out.test.ts runs the same races through three replicas behind
 * PgBouncer.)
 */
let t: TestServer;
let second: ServerProcess;
let clients: Client<typeof ReferralCodeService>[];
beforeAll(async () => {
  t = await startTestServer({ poolSize: 20 });
  second = await spawnServer(inject("databaseUrl"), { DATABASE_POOL_SIZE: "20" });
  clients = [t.grpc, second.grpc];
});
afterAll(async () => {
  await t?.close();
  expect(await second?.stop()).toBe(0);
});

describeReferralRaces("TrackReferral races (two server processes, one database)", () => ({
  grpc: t.grpc,
  db: t.db,
  databaseUrl: inject("databaseUrl"),
  client: (i) => clients[i % clients.length]!,
}));
