import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../src/interceptors/auth.ts";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { createLogger } from "../src/platform/logger.ts";
import { createGrpcJsClient, type GrpcCallError } from "./support/grpc-js-client.ts";
import { startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * The gRPC protocol through @grpc/grpc-js on its own port runs the same
 * implementations through the same interceptors as the Connect port.
 */
const writer = { secret: "writer-secret", name: "checkout" };
const admin = { secret: "admin-secret", name: "ops" };
const lines: Record<string, unknown>[] = [];
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    server: {
      logger: createLogger("info", (line) => lines.push(JSON.parse(line) as Record<string, unknown>)),
      auth: {
        tokens: [
          { name: writer.name, role: "writer", sha256: sha256(writer.secret) },
          { name: admin.name, role: "admin", sha256: sha256(admin.secret) },
        ],
        openHealthAndReflection: true,
      },
    },
  });
});
afterAll(async () => {
  await t?.close();
});

const as = (secret: string) => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${secret}`);
  return { metadata };
};
const failure = (call: Promise<unknown>) => call.then(() => undefined, (e: unknown) => e as GrpcCallError);

describe("the @grpc/grpc-js port", () => {
  it("serves the product with the same results as the Connect port", async () => {
    const client = t.grpcJsPortClient;
    const key = unique("gjs");
    const created = await client.unary(
      ReferralCodeService.method.createProgram,
      { program: { programKey: key, name: key, rewardKind: RewardKind.FIXED, rewardAmountMinor: 700n, rewardCurrency: "USD" } },
      as(admin.secret),
    );
    const viaConnect = await t.grpc.getProgram({ programKey: key }, { headers: { authorization: `Bearer ${admin.secret}` } });
    expect(created.program).toEqual(viaConnect.program);
    const { code } = await client.unary(ReferralCodeService.method.createCode, { programKey: key, userId: "gjs-owner" }, as(writer.secret));
    const { referral } = await client.unary(
      ReferralCodeService.method.trackReferral,
      { code: code!.code, referredUserId: "gjs-friend", transactionId: "gjs-1" },
      as(writer.secret),
    );
    expect(referral?.amountEarnedMinor).toBe(700n);
  });

  it("sends the same errors: codes, ErrorInfo, authentication and roles", async () => {
    const client = t.grpcJsPortClient;
    const missing = await failure(client.unary(ReferralCodeService.method.getProgram, { programKey: "no-such-program" }, as(writer.secret)));
    expect(missing).toMatchObject({ code: grpc.status.NOT_FOUND, errorInfo: { reason: "PROGRAM_NOT_FOUND", domain: "referral.v1" } });
    const invalid = await failure(client.unary(ReferralCodeService.method.getProgram, { programKey: "Bad Key" }, as(writer.secret)));
    expect(invalid).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, errorInfo: { metadata: { field: "program_key" } } });
    const anonymous = await failure(client.unary(ReferralCodeService.method.getProgram, { programKey: "x" }));
    expect(anonymous).toMatchObject({ code: grpc.status.UNAUTHENTICATED, errorInfo: { reason: "UNAUTHENTICATED" } });
    const denied = await failure(
      client.unary(ReferralCodeService.method.createProgram, { program: { programKey: unique("d") } }, as(writer.secret)),
    );
    expect(denied).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(lines.some((line) => line.method === "GetProgram" && line.code === "UNAUTHENTICATED")).toBe(true);
  });

  it("honours the caller's deadline", async () => {
    const started = Date.now();
    const error = await failure(
      t.grpcJsPortClient.unary(ReferralCodeService.method.listPrograms, { pageSize: 1 }, { ...as(writer.secret), deadline: Date.now() - 1 }),
    );
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("answers health checks", async () => {
    const health = createGrpcJsClient(Health, `127.0.0.1:${t.grpcJsPort}`);
    try {
      expect((await health.unary(Health.method.check, {})).status).toBe(1);
    } finally {
      health.close();
    }
  });
});
