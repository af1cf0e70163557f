import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { createLogger } from "../src/platform/logger.ts";
import { startTracing, type Tracing } from "../src/platform/tracing.ts";
import { attribute, type OtlpSpan, startOtlpReceiver } from "./support/otlp-receiver.ts";
import { nextId, programWithCode } from "./support/referrals.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

const SERVER = 2;
const CLIENT = 3;

/** A caller's span: its W3C traceparent, trace id and span id. */
function callerSpan() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The call log's lines, parsed. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  return { logger: createLogger("info", (line) => lines.push(JSON.parse(line) as Record<string, unknown>)), lines };
}

const settings = (url: string) => ({
  url,
  headers: {},
  serviceName: "referral-tracing-test",
  sampler: "parentbased_always_on" as const,
  samplerRatio: 1,
});

describe("tracing, exporting to a local OTLP/HTTP receiver", () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let tracing: Tracing;
  let t: TestServer;
  const log = capturingLogger();

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    tracing = startTracing(settings(receiver.url), log.logger);
    t = await startTestServer({ server: { tracing, logger: log.logger } });
  });
  afterAll(async () => {
    await t?.close();
    await tracing?.shutdown();
    await receiver?.close();
  });

  /** The spans of one trace, once exported. */
  const exported = async (traceId: string): Promise<OtlpSpan[]> => {
    await tracing.flush();
    return receiver.spans().filter((span) => span.traceId === traceId);
  };

  it("a call with a traceparent gets a SERVER span in the caller's trace, its SQL statements child spans, and no parameter value is exported", async () => {
    const { program, code } = await programWithCode(t);
    const caller = callerSpan();
    const referredUserId = nextId("traced-friend");
    const transactionId = nextId("traced-txn");
    const response = await t.grpc.trackReferral(
      { code: code.code, referredUserId, transactionId, transactionAmountMinor: 4900n, currency: "USD" },
      { headers: { traceparent: caller.traceparent } },
    );
    expect(response.referral?.referredUserId).toBe(referredUserId);

    const spans = await exported(caller.traceId);
    const server = spans.find((span) => span.kind === SERVER);
    expect(server).toMatchObject({ name: "referral.v1.ReferralCodeService/TrackReferral", parentSpanId: caller.spanId });
    expect(attribute(server!, "rpc.system")).toBe("grpc");
    expect(attribute(server!, "rpc.service")).toBe("referral.v1.ReferralCodeService");
    expect(attribute(server!, "rpc.method")).toBe("TrackReferral");
    expect(attribute(server!, "rpc.grpc.status_code")).toBe(0);
    expect(server!.status?.code ?? 0).toBe(0);

    const statements = spans.filter((span) => span.kind === CLIENT);
    expect(statements.map((span) => span.name)).toEqual(expect.arrayContaining(["find_conversion_contexts", "record_conversion"]));
    for (const span of statements) {
      expect(span.parentSpanId).toBe(server!.spanId);
      expect(attribute(span, "db.system.name")).toBe("postgresql");
      expect(attribute(span, "db.operation.name")).toMatch(/^(SELECT|INSERT|UPDATE|DELETE)$/);
      expect(attribute(span, "db.query.summary")).toMatch(/^(SELECT|INSERT|UPDATE|DELETE) \w+$/);
      expect(attribute(span, "db.query.text")).toMatch(/\$1\b/);
    }
    expect(receiver.serviceNames()).toContain("referral-tracing-test");

    // Whatever was sent, none of the call's values: not the referred user,
    // the transaction, the code or the program.
    const payload = receiver.bodies.join("\n");
    for (const value of [referredUserId, transactionId, code.code, program.programKey]) expect(payload).not.toContain(value);

    const line = log.lines.find((l) => l.message === "call" && l.method === "TrackReferral" && l.trace_id === caller.traceId);
    expect(line).toMatchObject({ code: "OK", trace_id: caller.traceId });
  });

  it("a statement without a prepared name is named by its summary; a refusal is recorded, not marked as an error", async () => {
    const caller = callerSpan();
    await expect(t.grpc.getProgram({ programKey: nextId("missing") }, { headers: { traceparent: caller.traceparent } })).rejects.toThrow();
    const spans = await exported(caller.traceId);
    const server = spans.find((span) => span.kind === SERVER)!;
    expect(server.name).toBe("referral.v1.ReferralCodeService/GetProgram");
    expect(attribute(server, "rpc.grpc.status_code")).toBe(5);
    expect(server.status?.code ?? 0).toBe(0);
    const statement = spans.find((span) => span.kind === CLIENT);
    expect(statement).toMatchObject({ name: "SELECT referral_programs", parentSpanId: server.spanId });
  });

  it("the grpc-js port honours the traceparent in the metadata too", async () => {
    const { code } = await programWithCode(t);
    const caller = callerSpan();
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", caller.traceparent);
    await t.grpcJsPortClient.unary(ReferralCodeService.method.validateCode, { code: code.code }, { metadata });
    const spans = await exported(caller.traceId);
    const server = spans.find((span) => span.kind === SERVER);
    expect(server).toMatchObject({ name: "referral.v1.ReferralCodeService/ValidateCode", parentSpanId: caller.spanId });
    expect(spans.filter((span) => span.kind === CLIENT).map((span) => span.name)).toContain("find_codes_for_validation");
  });

  it("a call without a traceparent starts a trace of its own, whose id the call log carries", async () => {
    await t.grpc.listPrograms({ pageSize: 1 });
    const line = log.lines.findLast((l) => l.message === "call" && l.method === "ListPrograms");
    expect(line?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    const spans = await exported(line!.trace_id as string);
    expect(spans.find((span) => span.kind === SERVER)).toMatchObject({ name: "referral.v1.ReferralCodeService/ListPrograms" });
    expect(spans.find((span) => span.kind === SERVER)?.parentSpanId ?? "").toBe("");
  });

  it("a server-streaming call's span ends with the stream, its reads under it", async () => {
    const { program } = await programWithCode(t);
    const caller = callerSpan();
    const stream = t.grpc.streamEvents({ programKey: program.programKey }, { timeoutMs: 700, headers: { traceparent: caller.traceparent } });
    await expect(
      (async () => {
        for await (const _ of stream) continue;
      })(),
    ).rejects.toThrow(/deadline/i);
    // The server ends the stream at the deadline; its span ends then.
    await expect.poll(async () => (await exported(caller.traceId)).some((span) => span.kind === SERVER), { timeout: 5000 }).toBe(true);
    const spans = await exported(caller.traceId);
    const server = spans.find((span) => span.kind === SERVER)!;
    expect(server.name).toBe("referral.v1.ReferralCodeService/StreamEvents");
    expect(attribute(server, "rpc.grpc.status_code")).toBe(4);
    expect(server.status?.code).toBe(2);
    expect(spans.filter((span) => span.kind === CLIENT && span.parentSpanId === server.spanId).length).toBeGreaterThan(0);
  });

  it("health checks are not traced", async () => {
    const before = receiver.spans().length;
    await createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl })).check({});
    await tracing.flush();
    expect(receiver.spans().slice(before).filter((span) => span.name.startsWith("grpc.health"))).toEqual([]);
  });
});

describe("tracing off", () => {
  it("without an OTLP endpoint, tracing is off: no exporter, no span, no trace_id in the logs", async () => {
    expect(loadConfig({}).tracing).toBeNull();
    expect(loadConfig({ OTEL_SERVICE_NAME: "x", OTEL_TRACES_SAMPLER: "always_on" }).tracing).toBeNull();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SDK_DISABLED: "true" }).tracing).toBeNull();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).tracing?.url).toBe("http://collector:4318/v1/traces");

    const log = capturingLogger();
    const t = await startTestServer({ server: { logger: log.logger } });
    try {
      const caller = callerSpan();
      await t.grpc.listPrograms({ pageSize: 1 }, { headers: { traceparent: caller.traceparent } });
      const line = log.lines.find((l) => l.message === "call" && l.method === "ListPrograms");
      expect(line).toBeDefined();
      expect(line).not.toHaveProperty("trace_id");
    } finally {
      await t.close();
    }
  });

  it("a bad OTEL_* value stops the start with one line naming it, without echoing header secrets", () => {
    expect(() => loadConfig({ OTEL_TRACES_SAMPLER: "sometimes" })).toThrow(/^invalid configuration: OTEL_TRACES_SAMPLER="sometimes"/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: "api-key" })).toThrow(/^invalid configuration: OTEL_EXPORTER_OTLP_HEADERS: /);
  });
});

describe("a collector that fails", () => {
  /** Per-call latency in ms of `count` calls, 8 at a time. */
  async function timedCalls(t: TestServer, code: string, count: number): Promise<number[]> {
    const times: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next++ < count) {
          const start = performance.now();
          await t.grpc.validateCode({ code });
          times.push(performance.now() - start);
        }
      }),
    );
    return times;
  }

  it("an export the collector rejects is logged as a warning (once a minute at most)", async () => {
    const receiver = await startOtlpReceiver();
    receiver.answer = "reject";
    const { logger, lines } = capturingLogger();
    const tracing = startTracing(settings(receiver.url), logger, { exportDelayMs: 50 });
    const t = await startTestServer({ server: { tracing, logger } });
    try {
      for (let i = 0; i < 3; i++) {
        await t.grpc.listPrograms({ pageSize: 1 });
        await tracing.flush();
      }
      const warnings = lines.filter((l) => l.message === "trace export failed; spans are dropped until the collector answers");
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ level: "warn", url: receiver.url });
    } finally {
      await t.close();
      await tracing.shutdown();
      await receiver.close();
    }
  });

  for (const fault of ["refuse", "hang", "down"] as const) {
    it(`calls still succeed promptly when the collector ${fault === "refuse" ? "answers 503" : fault === "hang" ? "never answers" : "is down"}`, async () => {
      const receiver = await startOtlpReceiver();
      const url = receiver.url;
      if (fault === "down") await receiver.close();
      else receiver.answer = fault;
      const { logger } = capturingLogger();
      // Exports every 50 ms, so that many fail while the calls run.
      const tracing = startTracing(settings(url), logger, { exportDelayMs: 50 });
      const t = await startTestServer({ server: { tracing, logger } });
      try {
        const { code } = await programWithCode(t);
        const times = await timedCalls(t, code.code, 400);
        expect(times).toHaveLength(400);
        times.sort((a, b) => a - b);
        // Generous bounds for a busy CI machine; an export in the calls' path
        // would cost a 503 round trip, or the exporter's 10 s timeout.
        expect(times[Math.floor(times.length * 0.99)]).toBeLessThan(500);
        if (fault !== "down") expect(receiver.requests).toBeGreaterThan(0);
      } finally {
        await t.close();
        const start = performance.now();
        await tracing.shutdown();
        // Shutdown waits for the last export a bounded time.
        expect(performance.now() - start).toBeLessThan(7000);
        await receiver.close();
      }
    });
  }
});
