import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDatabasePool } from "../src/db/pool.ts";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../src/gen/grpc/health/v1/health_pb.js";
import { ServerReflection, ServerReflectionRequestSchema } from "../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { silentLogger } from "../src/platform/logger.ts";
import { createApp } from "../src/app.ts";
import { startTcpProxy } from "./support/tcp-proxy.ts";
import { createProgram } from "./support/fixtures.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

const run = promisify(execFile);
const buf = (...args: string[]) => run("node_modules/.bin/buf", ["curl", "--http2-prior-knowledge", ...args]);

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

/** Both ports serve health and reflection: the main (Connect) port and the grpc-js port. */
const ports = [
  ["the main port", (server: TestServer) => server.baseUrl, "connect"],
  ["the grpc-js port", (server: TestServer) => `http://127.0.0.1:${server.grpcJsPort}`, "grpc"],
] as const;

describe.each(ports)("grpc.health.v1.Health on %s", (_port, urlOf) => {
  const health = () => createClient(Health, createGrpcTransport({ baseUrl: urlOf(t) }));

  it("Check answers SERVING for the server and the service, NOT_FOUND for others", async () => {
    expect((await health().check({})).status).toBe(Status.SERVING);
    expect((await health().check({ service: "referral.v1.ReferralCodeService" })).status).toBe(Status.SERVING);
    const error = ConnectError.from(await health().check({ service: "no.such.Service" }).catch((e: unknown) => e));
    expect(error.code).toBe(Code.NotFound);
  });

  it("Watch streams SERVING, then NOT_SERVING as soon as the server drains", async () => {
    const draining = await startTestServer();
    const client = createClient(Health, createGrpcTransport({ baseUrl: urlOf(draining) }));
    const seen: Status[] = [];
    const watching = (async () => {
      for await (const response of client.watch({})) {
        seen.push(response.status);
        if (response.status === Status.SERVING) void draining.close();
        if (response.status === Status.NOT_SERVING) break;
      }
    })();
    await watching;
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
  });

  it.runIf(_port === "the main port")("reports NOT_SERVING while the database is unreachable, and SERVING again after", async () => {
    const target = new URL(inject("databaseUrl"));
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    target.port = String(proxy.port);
    const db = await createDatabasePool(target.toString(), { maxPoolSize: 2, statementTimeoutMs: 1000 });
    const server = createApp({ db, logger: silentLogger, healthIntervalMs: 60_000 });
    const port = await server.listen(0);
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      expect((await client.check({})).status).toBe(Status.SERVING);
      proxy.cut();
      await server.health.probe();
      expect((await client.check({})).status).toBe(Status.NOT_SERVING);
      proxy.restore();
      await server.health.probe();
      expect((await client.check({})).status).toBe(Status.SERVING);
    } finally {
      await server.close(100);
      await db.end().catch(() => undefined);
      await proxy.close();
    }
  });
});

describe.each(ports)("server reflection on %s", (_port, urlOf, protocol) => {
  it("buf curl lists every service with no proto files", async () => {
    const { stdout } = await buf("--protocol", protocol, "--list-services", urlOf(t));
    expect(stdout.split("\n").filter(Boolean).sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "referral.v1.ReferralCodeService",
    ]);
  });

  it("buf curl calls a method by schema from reflection, and decodes ErrorInfo", async () => {
    const program = await createProgram(t);
    const { stdout } = await buf("--protocol", protocol, "-d", JSON.stringify({ programKey: program.programKey }), `${urlOf(t)}/referral.v1.ReferralCodeService/GetProgram`);
    expect(JSON.parse(stdout)).toMatchObject({ program: { programKey: program.programKey, rewardKind: "REWARD_KIND_FIXED" } });
    const failed = await buf("--protocol", protocol, "-d", '{"programKey":"missing-program"}', `${urlOf(t)}/referral.v1.ReferralCodeService/GetProgram`).catch(
      (error: { stdout: string; stderr: string }) => error,
    );
    // Over the Connect protocol buf curl prints the ErrorInfo decoded; over
    // gRPC it prints the detail's bytes (base64), which decode to the same.
    const output = `${failed.stdout}${failed.stderr}`;
    const encoded = /"type": "google\.rpc\.ErrorInfo",\s*"value": "([A-Za-z0-9+/=]+)"/.exec(output)?.[1];
    const reason = encoded === undefined ? output : fromBinary(ErrorInfoSchema, Buffer.from(encoded, "base64")).reason;
    expect(reason).toContain("PROGRAM_NOT_FOUND");
  });

  it("v1alpha answers list_services and file_containing_symbol with the file and its imports", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: urlOf(t) }));
    async function* requests() {
      yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
      yield create(ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "referral.v1.ReferralCodeService.TrackReferral" },
      });
    }
    const responses = [];
    for await (const response of client.serverReflectionInfo(requests())) responses.push(response);
    const [services, files] = responses;
    expect(services?.messageResponse.case).toBe("listServicesResponse");
    if (files?.messageResponse.case !== "fileDescriptorResponse") throw new Error("expected file descriptors");
    const names = files.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
    expect(names[0]).toBe("referral/v1/referral_code_service.proto");
    expect(names).toEqual(expect.arrayContaining(["referral/v1/resources.proto", "google/protobuf/timestamp.proto", "google/protobuf/field_mask.proto"]));
  });
});
