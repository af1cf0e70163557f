import { Code } from "@connectrpc/connect";
import type { ClientReadableStream } from "@grpc/grpc-js";
import http2 from "node:http2";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { StreamEventsRequestSchema, StreamEventsResponseSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runMigrations } from "../src/db/migrate.ts";
import { createDatabase, dropDatabase } from "./support/database.ts";
import { type Event, EventType, PayoutStatus, CodeStatus } from "../src/gen/referral/v1/resources_pb.js";
import { logSettled } from "./support/events.ts";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ server: { events: { heartbeatMs: 300 } } });
});
afterAll(async () => {
  await t?.close();
});

/** Every event of one program, read page by page with ListEvents once the log holds every write so far. */
async function eventsOf(programKey: string, pageSize = 100): Promise<Event[]> {
  await logSettled(t.grpc);
  const events: Event[] = [];
  let cursor = "";
  for (;;) {
    const page = await t.grpc.listEvents({ afterCursor: cursor, programKey, pageSize });
    expect(page.nextCursor).not.toBe("");
    events.push(...page.events);
    cursor = page.nextCursor;
    if (page.events.length < pageSize) return events;
  }
}

/** The first batch of a stream, which is then cancelled. */
async function firstBatch(client: TestServer["grpc"], request: MessageInitShape<typeof StreamEventsRequestSchema>) {
  const controller = new AbortController();
  try {
    for await (const batch of client.streamEvents(request, { signal: controller.signal })) return batch;
  } finally {
    controller.abort();
  }
  throw new Error("the stream ended without a batch");
}

describe("the event log", () => {
  it("records each change once, with the resource as the change left it", async () => {
    const { program, code } = await programWithCode(t, { budgetMinor: 1_000_000_000_000_000n });
    const key = program.programKey;
    const { program: updated } = await t.grpc.updateProgram({ program: { programKey: key, name: `${program.name} v2` }, updateMask: { paths: ["name"] } });
    const { codes } = await t.grpc.batchCreateCodes({ programKey: key, userIds: ["b1", "b2", "b3"] });
    const { code: suspended } = await t.grpc.updateCode({ code: { code: code.code, status: CodeStatus.SUSPENDED }, updateMask: { paths: ["status"] } });
    await t.grpc.updateCode({ code: { code: code.code, status: CodeStatus.ACTIVE }, updateMask: { paths: ["status"] } });
    const { referral } = await track(t, code.code, { transactionAmountMinor: 999_999_999_999_999n });
    const { referrals: paid } = await t.grpc.updatePayoutStatus({ referralIds: [referral!.id], payoutStatus: PayoutStatus.PAID, payoutReference: "tr_1" });
    const { referral: reversed } = await t.grpc.reverseReferral({ id: referral!.id, reason: "refund" });

    const events = await eventsOf(key);
    expect(events.map((e) => e.type)).toEqual([
      EventType.PROGRAM_CREATED,
      EventType.CODE_CREATED,
      EventType.PROGRAM_UPDATED,
      EventType.CODE_CREATED,
      EventType.CODE_CREATED,
      EventType.CODE_CREATED,
      EventType.CODE_UPDATED,
      EventType.CODE_UPDATED,
      EventType.REFERRAL_CREATED,
      EventType.REFERRAL_PAYOUT_STATUS_CHANGED,
      EventType.REFERRAL_REVERSED,
    ]);
    expect(events.every((e) => e.programKey === key)).toBe(true);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(events[0]!.subject).toEqual({ case: "program", value: program });
    expect(events[1]!.subject).toEqual({ case: "code", value: code });
    expect(events[2]!.subject).toEqual({ case: "program", value: updated });
    expect(events.slice(3, 6).map((e) => e.subject.value)).toEqual(codes);
    expect(events[6]!.subject).toEqual({ case: "code", value: suspended });
    expect(events[8]!.subject).toEqual({ case: "referral", value: referral });
    expect(events[9]!.subject).toEqual({ case: "referral", value: paid[0] });
    expect(events[10]!.subject).toEqual({ case: "referral", value: reversed });
  });

  it("writes nothing for a validate_only call, a replay or a refused conversion", async () => {
    const { program, code } = await programWithCode(t, { maxRewardsPerReferrer: 1 });
    const before = await eventsOf(program.programKey);
    const transactionId = nextId("txn");
    await track(t, code.code, { validateOnly: true });
    const first = await track(t, code.code, { transactionId, referredUserId: "friend-1" });
    await track(t, code.code, { transactionId, referredUserId: "friend-1" });
    const refused = await callError(track(t, code.code, { referredUserId: "friend-2" }));
    expect(refused.info?.reason).toBe("REWARD_LIMIT_REACHED");
    const after = await eventsOf(program.programKey);
    expect(after.slice(before.length).map((e) => [e.type, e.subject.value])).toEqual([[EventType.REFERRAL_CREATED, first.referral]]);
  });

  it("pages by cursor: each event once, in order, whatever the page size and type filter", async () => {
    const { program, code } = await programWithCode(t);
    for (let i = 0; i < 7; i++) await track(t, code.code);
    const all = await eventsOf(program.programKey, 1000);
    expect(await eventsOf(program.programKey, 2)).toEqual(all);
    const referrals = all.filter((e) => e.type === EventType.REFERRAL_CREATED);
    expect(referrals).toHaveLength(7);
    const page = await t.grpc.listEvents({ programKey: program.programKey, types: [EventType.REFERRAL_CREATED], pageSize: 1000 });
    expect(page.events).toEqual(referrals);
    // Resuming from an event's own cursor gives the events after it.
    const resumed = await t.grpc.listEvents({ programKey: program.programKey, afterCursor: all[3]!.cursor, pageSize: 1000 });
    expect(resumed.events).toEqual(all.slice(4));
    // An empty page still moves the cursor, and resuming from it finds nothing old.
    const empty = await t.grpc.listEvents({ programKey: program.programKey, afterCursor: resumed.nextCursor });
    expect(empty.events).toEqual([]);
    expect(empty.nextCursor).not.toBe("");
  });

  it("refuses a malformed or altered cursor and bad filters with INVALID_ARGUMENT", async () => {
    await logSettled(t.grpc);
    const { events } = await t.grpc.listEvents({ pageSize: 1 });
    const cursor = events[0]!.cursor;
    const altered = Buffer.from(cursor, "base64url");
    altered[16] = altered[16]! ^ 1;
    for (const bad of ["nonsense", altered.toString("base64url"), `${cursor}A`, "x".repeat(100)]) {
      const error = await callError(t.grpc.listEvents({ afterCursor: bad }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.info?.metadata).toEqual({ field: "after_cursor" });
      const streamed = await callError(firstBatch(t.grpc, { afterCursor: bad }));
      expect(streamed.info?.metadata).toEqual({ field: "after_cursor" });
    }
    expect((await callError(t.grpc.listEvents({ types: [EventType.UNSPECIFIED] }))).info?.metadata).toEqual({ field: "types[0]" });
    expect((await callError(t.grpc.listEvents({ pageSize: 1001 }))).info?.metadata).toEqual({ field: "page_size" });
    expect((await callError(t.grpc.listEvents({ programKey: "Not A Key" }))).info?.metadata).toEqual({ field: "program_key" });
  });
});

describe("StreamEvents", () => {
  it("catches up, then delivers new events as they commit, with heartbeats between", async () => {
    const { program, code } = await programWithCode(t);
    const controller = new AbortController();
    const stream = t.grpc.streamEvents({ programKey: program.programKey }, { signal: controller.signal });
    const received: Event[] = [];
    let heartbeats = 0;
    const done = (async () => {
      try {
        for await (const batch of stream) {
          expect(batch.cursor).not.toBe("");
          if (batch.events.length === 0) heartbeats++;
          received.push(...batch.events);
          if (received.length >= 5 && heartbeats > 0) break;
        }
      } finally {
        controller.abort();
      }
    })();
    for (let i = 0; i < 3; i++) await track(t, code.code);
    await done;
    expect(received.slice(0, 5)).toEqual(await eventsOf(program.programKey));
    expect(heartbeats).toBeGreaterThan(0);
  });

  it("ends DEADLINE_EXCEEDED at the caller's deadline", async () => {
    const started = Date.now();
    const error = await callError(
      (async () => {
        for await (const _ of t.grpc.streamEvents({ programKey: "no-such-program" }, { timeoutMs: 700 })) continue;
      })(),
    );
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
  });

  it("gives a consumer slower than the log every event once, in order, with no buffer growing for it", async () => {
    const { program } = await programWithCode(t);
    const dropped = async () => (await t.server.metrics.eventBatchesDropped.get()).values[0]?.value ?? 0;
    const droppedBefore = await dropped();
    // A gRPC client over plain HTTP/2 that stops reading: its 64 KiB window
    // fills, the server stops writing to it, and the stream's queue of
    // batches drops the oldest instead of growing.
    const session = http2.connect(t.baseUrl);
    const call = session.request({
      ":method": "POST",
      ":path": "/referral.v1.ReferralCodeService/StreamEvents",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const request = toBinary(StreamEventsRequestSchema, create(StreamEventsRequestSchema, { programKey: program.programKey }));
    const frame = Buffer.alloc(5 + request.length);
    frame.writeUInt32BE(request.length, 1);
    frame.set(request, 5);
    call.end(frame);
    const writes = 20;
    const received: Event[] = [];
    let buffer = Buffer.alloc(0);
    let wanted = Number.POSITIVE_INFINITY;
    let arrived = () => {};
    call.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
        const length = buffer.readUInt32BE(1);
        received.push(...fromBinary(StreamEventsResponseSchema, buffer.subarray(5, 5 + length)).events);
        buffer = buffer.subarray(5 + length);
      }
      if (received.length >= wanted) arrived();
    });
    call.pause();
    for (let i = 0; i < writes; i++) {
      await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: Array.from({ length: 500 }, (_, j) => `slow-${i}-${j}`) });
    }
    // The feed hands batches out as other tests' transactions let it.
    const deadline = Date.now() + 20_000;
    while ((await dropped()) <= droppedBefore && Date.now() < deadline) {
      await t.grpc.updateProgram({ program: { programKey: program.programKey, metadata: { at: String(Date.now()) } }, updateMask: { paths: ["metadata"] } });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await dropped()).toBeGreaterThan(droppedBefore);
    // Then it reads again: the stream catches up from the log.
    const logged = await eventsOf(program.programKey, 1000);
    const all = new Promise<void>((resolve) => {
      arrived = resolve;
      wanted = logged.length;
      if (received.length >= wanted) resolve();
    });
    call.resume();
    await all;
    call.close();
    session.close();
    expect(received.map((e) => e.id)).toEqual(logged.map((e) => e.id));
  });

  it("is served on every port and protocol", async () => {
    const { program } = await programWithCode(t);
    const expected = await eventsOf(program.programKey);
    for (const client of [t.connect, t.grpcWeb, t.grpc]) {
      expect((await firstBatch(client, { programKey: program.programKey })).events).toEqual(expected);
    }
    const viaGrpcJs = await new Promise<unknown[]>((resolve, reject) => {
      const client = t.grpcJsPortClient.client as unknown as Record<string, (request: unknown) => ClientReadableStream<{ events: unknown[] }>>;
      const call = client.streamEvents!({ programKey: program.programKey });
      call.on("data", (batch) => {
        call.cancel();
        resolve(batch.events);
      });
      call.on("error", (error: { code: number }) => (error.code === 1 ? undefined : reject(error)));
    });
    expect(viaGrpcJs).toHaveLength(expected.length);
  });
});

describe("StreamEvents and the server's life", () => {
  it("ends cleanly when the server shuts down, and the consumer resumes elsewhere from its cursor", async () => {
    const a = await startTestServer();
    const b = await startTestServer();
    try {
      const { program, code } = await programWithCode(a);
      let cursor = "";
      const seen: Event[] = [];
      // The stream ends without an error once `a` closes.
      const ended = (async () => {
        for await (const batch of a.grpc.streamEvents({ programKey: program.programKey })) {
          seen.push(...batch.events);
          cursor = batch.cursor;
          if (seen.length === 2) void a.server.close(5000);
        }
      })();
      await ended;
      expect(seen.map((e) => e.type)).toEqual([EventType.PROGRAM_CREATED, EventType.CODE_CREATED]);
      await track(b, code.code);
      await logSettled(b.grpc);
      const resumed = await firstBatch(b.grpc, { afterCursor: cursor, programKey: program.programKey });
      expect(resumed.events.map((e) => e.type)).toEqual([EventType.REFERRAL_CREATED]);
    } finally {
      await b.close();
      await a.db.end().catch(() => {});
    }
  });

  it("prunes events past the retention; an older cursor fails OUT_OF_RANGE / CURSOR_EXPIRED, never skipping", async () => {
    const databaseUrl = await createDatabase(inject("adminUrl"));
    await runMigrations(databaseUrl);
    const p = await startTestServer({ databaseUrl, server: { events: { retentionSeconds: 3, pruneIntervalMs: 200 } } });
    try {
      const { code } = await programWithCode(p);
      await logSettled(p.grpc);
      const first = (await p.grpc.listEvents({})).events[0]!;
      const deadline = Date.now() + 20_000;
      while ((await p.grpc.listEvents({})).events.length > 0) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // One call at a time: a call made before the previous one is awaited could fail unobserved.
      for (const call of [() => p.grpc.listEvents({ afterCursor: first.cursor }), () => firstBatch(p.grpc, { afterCursor: first.cursor })]) {
        expect(await callError(call())).toMatchObject({ code: Code.OutOfRange, info: { reason: "CURSOR_EXPIRED" } });
      }
      // An empty cursor starts at the oldest retained event.
      const { referral } = await track(p, code.code);
      await logSettled(p.grpc, 10_000).catch(() => {});
      expect((await p.grpc.listEvents({})).events.map((e) => e.subject.value)).toContainEqual(referral);
    } finally {
      await p.close();
      await dropDatabase(inject("adminUrl"), databaseUrl);
    }
  });
});
