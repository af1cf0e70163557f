import type { Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { type Event, EventType } from "../src/gen/referral/v1/resources_pb.js";
import { checkInvariants } from "../faults/invariants.ts";
import { createProgram } from "./support/fixtures.ts";
import { logSettled } from "./support/events.ts";
import { nextId } from "./support/referrals.ts";
import { spawnServer, type ServerProcess } from "./support/server-process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

/**
 * The event log under concurrent writers: two server processes (and this
 * one) take conversions, code updates and reversals at once, while other
 * transactions write events and stay open for random times before they
 * commit. Stream consumers on different replicas must each see every event
 * once, in one order, and exactly the changes the tables hold.
 */
let t: TestServer;
let second: ServerProcess;
let doomed: ServerProcess;
beforeAll(async () => {
  const databaseUrl = inject("databaseUrl");
  t = await startTestServer({ poolSize: 20, server: { events: { listenUrl: databaseUrl, heartbeatMs: 500 } } });
  second = await spawnServer(databaseUrl, { DATABASE_POOL_SIZE: "20" });
  doomed = await spawnServer(databaseUrl);
});
afterAll(async () => {
  await t?.close();
  expect(await second?.stop()).toBe(0);
  await doomed?.stop();
});

/** A consumer: follows a stream, remembers its cursor, and can move to another replica from it. */
class Consumer {
  readonly events: Event[] = [];
  cursor = "";
  readonly #programKey: string;
  #controller = new AbortController();
  #running: Promise<void> | undefined;

  constructor(programKey: string) {
    this.#programKey = programKey;
  }

  follow(client: Client<typeof ReferralCodeService>): void {
    this.#controller = new AbortController();
    const signal = this.#controller.signal;
    this.#running = (async () => {
      try {
        for await (const batch of client.streamEvents({ programKey: this.#programKey, afterCursor: this.cursor }, { signal })) {
          this.events.push(...batch.events);
          this.cursor = batch.cursor;
        }
      } catch (error) {
        if (!signal.aborted) throw error;
      }
    })();
  }

  /** Resolves when the stream ends; rejects if it failed (for a killed replica: expected). */
  ended(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.#controller.abort();
    await this.#running;
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const key = (e: Event) => `${e.type}:${e.subject.case === "referral" ? e.subject.value.id : e.subject.case === "code" ? e.subject.value.code : e.programKey}`;

describe("the event stream under concurrent writers on several replicas", () => {
  it("gives every consumer every event once, in one order, matching the tables", { timeout: 180_000 }, async () => {
    const program = await createProgram(t, { maxCodesPerUser: 50 });
    const programKey = program.programKey;
    const writers = [t.grpc, second.grpc];

    const steady = [new Consumer(programKey), new Consumer(programKey), new Consumer(programKey)];
    steady[0]!.follow(t.grpc);
    steady[1]!.follow(second.grpc);
    steady[2]!.follow(t.grpc);
    const resuming = new Consumer(programKey);
    resuming.follow(t.grpc);
    const moving = new Consumer(programKey);
    moving.follow(doomed.grpc);

    const { codes } = await t.grpc.batchCreateCodes({ programKey, userIds: Array.from({ length: 40 }, (_, i) => `referrer-${i}`) });
    // Transactions that write events and stay open while others commit:
    // their events carry older transaction ids than events committed
    // before them.
    const db = new pg.Pool({ connectionString: inject("databaseUrl"), max: 8 });
    let heldOpen = 0;
    const holdOpen = async (i: number) => {
      const client = await db.connect();
      try {
        await client.query("BEGIN");
        await client.query("UPDATE referral_codes SET metadata = jsonb_build_object('held', $1::text), updated_at = now() WHERE code = $2", [
          String(i),
          codes[i % codes.length]!.code,
        ]);
        await client.query("SELECT pg_sleep($1)", [Math.random() * 0.4]);
        await client.query("COMMIT");
        heldOpen++;
      } finally {
        client.release();
      }
    };

    const tracked: string[] = [];
    const convert = async (i: number) => {
      const code = codes[i % codes.length]!.code;
      const { referral } = await writers[i % 2]!.trackReferral({ code, referredUserId: nextId("friend"), transactionId: nextId("txn") });
      tracked.push(referral!.id);
      if (i % 7 === 0) await writers[(i + 1) % 2]!.reverseReferral({ id: referral!.id, reason: "refund" });
    };
    let updated = 0;
    const update = async (i: number) => {
      await writers[i % 2]!.updateCode({ code: { code: codes[(i * 3) % codes.length]!.code, metadata: { round: String(i) } }, updateMask: { paths: ["metadata"] } });
      updated++;
    };

    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      work.push(convert(i));
      if (i % 10 === 0) work.push(update(i));
      if (i % 15 === 0) work.push(holdOpen(i));
      if (i === 100) {
        // One consumer leaves midway and comes back later from its cursor.
        work.push(resuming.stop().then(() => new Promise((resolve) => setTimeout(resolve, 300))).then(() => resuming.follow(second.grpc)));
      }
      if (i === 150) {
        // The replica under another consumer dies; it resumes on a live one.
        doomed.child.kill("SIGKILL");
        work.push(
          moving.ended().then(
            () => moving.follow(t.grpc),
            () => moving.follow(t.grpc),
          ),
        );
      }
      if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await Promise.all(work);
    await db.end();

    // What the log holds, read once to the end.
    await logSettled(t.grpc);
    const logged: Event[] = [];
    let cursor = "";
    for (;;) {
      const page = await t.grpc.listEvents({ programKey, afterCursor: cursor, pageSize: 1000 });
      logged.push(...page.events);
      cursor = page.nextCursor;
      if (page.events.length < 1000) break;
    }
    const consumers = [...steady, resuming, moving];
    await until(() => consumers.every((c) => c.events.length >= logged.length), "every consumer to catch up");
    await new Promise((resolve) => setTimeout(resolve, 600));
    for (const consumer of consumers) {
      await consumer.stop();
      expect(consumer.events.map((e) => e.id)).toEqual(logged.map((e) => e.id));
      expect(consumer.events).toEqual(logged);
    }

    // The log is exactly what the tables say happened.
    const count = (type: EventType) => logged.filter((e) => e.type === type).length;
    expect(new Set(logged.map((e) => e.id)).size).toBe(logged.length);
    const onceEach = logged.filter((e) => e.type !== EventType.CODE_UPDATED);
    expect(new Set(onceEach.map(key)).size).toBe(onceEach.length);
    expect(count(EventType.PROGRAM_CREATED)).toBe(1);
    expect(count(EventType.CODE_CREATED)).toBe(codes.length);
    expect(count(EventType.CODE_UPDATED)).toBe(updated + heldOpen);
    const created = logged.filter((e) => e.type === EventType.REFERRAL_CREATED).map((e) => (e.subject.case === "referral" ? e.subject.value.id : ""));
    expect(new Set(created)).toEqual(new Set(tracked));
    const reversed = logged.filter((e) => e.type === EventType.REFERRAL_REVERSED).map((e) => (e.subject.case === "referral" ? e.subject.value.id : ""));
    const { referrals } = await t.grpc.listReferrals({ programKey, pageSize: 1000 });
    expect(new Set(reversed)).toEqual(new Set(referrals.filter((r) => r.reversedAt !== undefined).map((r) => r.id)));
    expect(reversed.length).toBe(Math.ceil(300 / 7));
    await checkInvariants(inject("databaseUrl"));
  });
});
