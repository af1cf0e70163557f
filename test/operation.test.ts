import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../src/interceptors/auth.ts";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { createLogger } from "../src/platform/logger.ts";
import { Metrics, startMetricsServer } from "../src/platform/metrics.ts";
import { makeCertificates } from "./support/certificates.ts";
import { createProgram } from "./support/fixtures.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";
import { PayoutProvider, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";

const token = (name: string, role: string) => ({ name, role, secret: `secret-${name}-${Math.random()}` });
const callers = [token("dashboard", "reader"), token("checkout", "writer"), token("ops", "admin")];
const tokens = callers.map((c) => ({ name: c.name, role: c.role as "reader" | "writer" | "admin", sha256: sha256(c.secret) }));
const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });

describe("authentication and roles", () => {
  let t: TestServer;
  let programKey: string;
  let code: string;
  beforeAll(async () => {
    t = await startTestServer({ server: { auth: { tokens, openHealthAndReflection: true } } });
    const admin = bearer(callers[2]!.secret);
    programKey = unique("auth");
    await t.grpc.createProgram(
      { program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD" } },
      admin,
    );
    code = (await t.grpc.createCode({ programKey, userId: "u" }, admin)).code!.code;
  });
  afterAll(async () => {
    await t?.close();
  });

  /** One RPC of each class: read, write, admin. */
  const calls = {
    read: (options: object) => t.grpc.getProgram({ programKey }, options),
    validate: (options: object) => t.grpc.validateCode({ code }, options),
    earnings: (options: object) => t.grpc.getUserEarnings({ userId: "u" }, options),
    events: (options: object) => t.grpc.listEvents({ programKey, pageSize: 1 }, options),
    stream: async (options: object) => {
      const controller = new AbortController();
      try {
        for await (const batch of t.grpc.streamEvents({ programKey }, { ...options, signal: controller.signal })) return batch;
      } finally {
        controller.abort();
      }
    },
    write: (options: object) => t.grpc.createCode({ programKey, userId: unique("w") }, options),
    track: (options: object) => t.grpc.trackReferral({ code, referredUserId: unique("r"), transactionId: unique("t") }, options),
    admin: (options: object) =>
      t.grpc.updateProgram({ program: { programKey, holdDays: 1 }, updateMask: create(FieldMaskSchema, { paths: ["hold_days"] }) }, options),
    payouts: (options: object) => t.grpc.listPayouts({ pageSize: 1 }, options),
    payoutAccount: (options: object) =>
      t.grpc.setPayoutAccount({ account: { userId: unique("payee"), provider: PayoutProvider.MANUAL, accountRef: "bank transfer, details on file" } }, options),
    // XTS: ISO 4217's code for tests; no other test pays in it.
    pay: (options: object) => t.grpc.createPayouts({ currency: "XTS", requestId: unique("run") }, options),
  };
  const needs = {
    read: "reader", validate: "reader", earnings: "reader", events: "reader", stream: "reader", payouts: "reader",
    write: "writer", track: "writer", payoutAccount: "writer",
    admin: "admin", pay: "admin",
  } as const;
  const rank = { reader: 0, writer: 1, admin: 2 } as const;

  it.each(callers.flatMap((caller) => Object.keys(calls).map((call) => [caller.name, caller.role, call] as const)))(
    "%s (%s) calling a %s RPC",
    async (_name, role, call) => {
      const caller = callers.find((c) => c.role === role)!;
      const attempt = calls[call as keyof typeof calls](bearer(caller.secret));
      if (rank[role as keyof typeof rank] >= rank[needs[call as keyof typeof needs]]) {
        await expect(attempt).resolves.toBeDefined();
      } else {
        expect(await callError(attempt)).toMatchObject({ code: Code.PermissionDenied, info: { reason: "PERMISSION_DENIED" } });
      }
    },
  );

  it("a missing, malformed or unknown token is UNAUTHENTICATED", async () => {
    for (const options of [{}, { headers: { authorization: "Basic abc" } }, bearer("not-a-token")]) {
      for (const call of [calls.read, calls.events, calls.stream]) {
        expect(await callError(call(options))).toMatchObject({ code: Code.Unauthenticated, info: { reason: "UNAUTHENTICATED" } });
      }
    }
  });

  it("health and reflection stay open, or require a token when configured, on both ports", async () => {
    const urls = (server: TestServer) => [server.baseUrl, `http://127.0.0.1:${server.grpcJsPort}`];
    for (const baseUrl of urls(t)) {
      const health = createClient(Health, createGrpcTransport({ baseUrl }));
      expect((await health.check({})).status).toBe(1);
    }
    const closed = await startTestServer({ server: { auth: { tokens, openHealthAndReflection: false } } });
    try {
      for (const baseUrl of urls(closed)) {
        const closedHealth = createClient(Health, createGrpcTransport({ baseUrl }));
        expect(ConnectError.from(await closedHealth.check({}).catch((e: unknown) => e)).code).toBe(Code.Unauthenticated);
        expect((await closedHealth.check({}, bearer(callers[0]!.secret))).status).toBe(1);
      }
    } finally {
      await closed.close();
    }
  });
});

describe("TLS", () => {
  const certs = makeCertificates();

  it("serves over TLS", async () => {
    const t = await startTestServer({ server: { tls: { cert: certs.serverCert, key: certs.serverKey } } });
    try {
      const client = createClient(
        ReferralCodeService,
        createGrpcTransport({ baseUrl: `https://localhost:${t.port}`, nodeOptions: { ca: certs.ca } }),
      );
      await expect(client.listPrograms({ pageSize: 1 })).resolves.toBeDefined();
    } finally {
      await t.close();
    }
  });

  it("with a client CA, requires a client certificate (mutual TLS)", async () => {
    const t = await startTestServer({ server: { tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca } } });
    try {
      const baseUrl = `https://localhost:${t.port}`;
      const withCert = createClient(
        ReferralCodeService,
        createGrpcTransport({ baseUrl, nodeOptions: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } }),
      );
      await expect(withCert.listPrograms({ pageSize: 1 })).resolves.toBeDefined();
      const without = createClient(ReferralCodeService, createGrpcTransport({ baseUrl, nodeOptions: { ca: certs.ca } }));
      const error = ConnectError.from(await without.listPrograms({ pageSize: 1 }).catch((e: unknown) => e));
      // The TLS handshake is refused; clients see it as a transport failure.
      expect([Code.Unavailable, Code.Internal]).toContain(error.code);
      expect(error.message).toMatch(/certificate|alert|handshake|socket|closed/i);
    } finally {
      await t.close();
    }
  });
});

describe("limits", () => {
  it("an oversize request is RESOURCE_EXHAUSTED", async () => {
    const t = await startTestServer({ server: { limits: { maxRequestBytes: 4096 } } });
    try {
      const error = await callError(t.grpc.validateCode({ code: "A".repeat(8000) }));
      expect(error.code).toBe(Code.ResourceExhausted);
      await expect(t.grpc.validateCode({ code: "SMALL-CODE" })).resolves.toBeDefined();
    } finally {
      await t.close();
    }
  });

  it("past max calls in flight, a call is answered RESOURCE_EXHAUSTED at once", async () => {
    const t = await startTestServer({ server: { limits: { maxCallsInFlight: 2 } } });
    try {
      const program = await createProgram(t);
      const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "held" });
      // Two UpdateCode calls wait on a row lock held here; the third call finds the server full.
      const blocked = await t.db.transaction(async (tx) => {
        await tx.query(sql.type(z.object({}))`SELECT 1 FROM referral_codes WHERE code = ${code!.code} FOR UPDATE`);
        const waiting = [1, 2].map((n) =>
          t.grpc.updateCode({ code: { code: code!.code, metadata: { n: String(n) } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) }),
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        const started = Date.now();
        const refused = await callError(t.grpc.getProgram({ programKey: program.programKey }));
        return { waiting, refused, elapsed: Date.now() - started };
      });
      expect(blocked.refused).toMatchObject({ code: Code.ResourceExhausted, info: { reason: "OVERLOADED" } });
      await Promise.all(blocked.waiting);
      await expect(t.grpc.getProgram({ programKey: program.programKey })).resolves.toBeDefined();
    } finally {
      await t.close();
    }
  });
});

describe("observability", () => {
  let t: TestServer;
  const lines: Record<string, unknown>[] = [];
  const metrics = new Metrics();
  let metricsUrl: string;
  let closeMetrics: () => void;
  beforeAll(async () => {
    const logger = createLogger("info", (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
    t = await startTestServer({ server: { logger, metrics, auth: { tokens, openHealthAndReflection: true } } });
    metrics.watchPool(t.db);
    const served = await startMetricsServer(metrics, { port: 0, host: "127.0.0.1", ready: () => true });
    metricsUrl = `http://127.0.0.1:${served.port}`;
    closeMetrics = () => served.server.close();
  });
  afterAll(async () => {
    closeMetrics?.();
    await t?.close();
  });

  it("logs one JSON line per call with method, code, duration and caller, never the code itself", async () => {
    const admin = bearer(callers[2]!.secret);
    const program = await createProgram(t, {}).catch(() => undefined);
    expect(program).toBeUndefined(); // no token: refused, and logged
    const key = unique("obs");
    await t.grpc.createProgram({ program: { programKey: key, name: key, rewardKind: RewardKind.FIXED, rewardAmountMinor: 1n, rewardCurrency: "USD" } }, admin);
    const { code } = await t.grpc.createCode({ programKey: key, userId: "logged-user" }, admin);
    const calls = lines.filter((line) => line.message === "call");
    expect(calls.find((line) => line.method === "CreateProgram" && line.code === "UNAUTHENTICATED")).toBeDefined();
    expect(calls.find((line) => line.method === "CreateCode")).toMatchObject({ code: "OK", caller: "ops", service: "referral.v1.ReferralCodeService" });
    expect(typeof calls[0]?.duration_ms).toBe("number");
    expect(JSON.stringify(lines)).not.toContain(code!.code);
    expect(JSON.stringify(lines)).not.toContain(callers[2]!.secret);
  });

  it("exposes Prometheus metrics: calls by method and code, latency, pool and query timings", async () => {
    await t.grpc.getProgram({ programKey: "no-such-program" }, bearer(callers[0]!.secret)).catch(() => undefined);
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    const sample = (name: string, labels: string) =>
      Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    expect(sample("rpc_requests_total", 'method="GetProgram",code="NOT_FOUND"')).toBeGreaterThanOrEqual(1);
    expect(sample("rpc_duration_seconds_count", 'method="GetProgram"')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^db_pool_connections_in_use \d+$/m);
    expect(text).toMatch(/^db_pool_waiting_requests \d+$/m);
    expect(Number(/^db_query_duration_seconds_count (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(0);
    expect((await fetch(`${metricsUrl}/readyz`)).status).toBe(200);
  });
});
