import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DatabasePool } from "slonik";
import { inject } from "vitest";
import { type ErrorInfo, ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { ReferralCodeService } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import { createDatabasePool } from "../../src/db/pool.ts";
import { querySpanInterceptor } from "../../src/db/query-spans.ts";
import type { Clock } from "../../src/platform/clock.ts";
import type { CodeGenerator } from "../../src/codes/generator.ts";
import { silentLogger } from "../../src/platform/logger.ts";
import { type App, type AppOptions, createApp } from "../../src/app.ts";
import { createGrpcJsClient } from "./grpc-js-client.ts";

export type TestServer = {
  server: App;
  db: DatabasePool;
  port: number;
  baseUrl: string;
  /** Connect-ES client over the gRPC protocol. */
  grpc: Client<typeof ReferralCodeService>;
  /** Connect-ES client over the Connect protocol. */
  connect: Client<typeof ReferralCodeService>;
  /** Connect-ES client over gRPC-Web. */
  grpcWeb: Client<typeof ReferralCodeService>;
  /** @grpc/grpc-js client, on the Connect port. */
  grpcJs: ReturnType<typeof createGrpcJsClient>;
  /** The server's own @grpc/grpc-js port, and a grpc-js client on it. */
  grpcJsPort: number;
  grpcJsPortClient: ReturnType<typeof createGrpcJsClient>;
  close(): Promise<void>;
};

/** The real server on a free port, over the suite's migrated database. */
export async function startTestServer(
  options: {
    databaseUrl?: string;
    poolSize?: number;
    /** Named prepared statements (the default), or every statement unnamed. */
    preparedStatements?: boolean;
    clock?: Clock;
    generateCode?: CodeGenerator;
    /** Anything else createApp takes (auth, limits, logger, metrics, max backdate days, tracing). */
    server?: Partial<AppOptions>;
  } = {},
): Promise<TestServer> {
  const tracing = options.server?.tracing;
  const db = await createDatabasePool(options.databaseUrl ?? inject("databaseUrl"), {
    maxPoolSize: options.poolSize ?? 10,
    statementTimeoutMs: 30_000,
    preparedStatements: options.preparedStatements,
    // With tracing, the SQL spans too, as src/main.ts installs them.
    interceptors: tracing === undefined ? [] : [querySpanInterceptor(tracing)],
  });
  const server = createApp({
    db,
    logger: silentLogger,
    healthIntervalMs: 200,
    clock: options.clock,
    generateCode: options.generateCode,
    ...options.server,
  });
  const port = await server.listen(0);
  const grpcJsPort = await server.listenGrpcJs(0);
  const baseUrl = `http://127.0.0.1:${port}`;
  const grpcJs = createGrpcJsClient(ReferralCodeService, `127.0.0.1:${port}`);
  const grpcJsPortClient = createGrpcJsClient(ReferralCodeService, `127.0.0.1:${grpcJsPort}`);
  return {
    server,
    db,
    port,
    baseUrl,
    grpc: createClient(ReferralCodeService, createGrpcTransport({ baseUrl })),
    connect: createClient(ReferralCodeService, createConnectTransport({ baseUrl, httpVersion: "2" })),
    grpcWeb: createClient(ReferralCodeService, createGrpcWebTransport({ baseUrl, httpVersion: "2" })),
    grpcJs,
    grpcJsPort,
    grpcJsPortClient,
    async close() {
      grpcJs.close();
      grpcJsPortClient.close();
      await server.close(1000);
      await db.end();
    },
  };
}

/** The ConnectError a call fails with, and its ErrorInfo. */
export async function callError(call: Promise<unknown>): Promise<{ code: Code; message: string; info: ErrorInfo | undefined }> {
  try {
    await call;
  } catch (error) {
    const connectError = ConnectError.from(error);
    return { code: connectError.code, message: connectError.rawMessage, info: connectError.findDetails(ErrorInfoSchema)[0] };
  }
  throw new Error("expected the call to fail");
}

/** A short unique suffix, so tests sharing one database never collide. */
export function unique(prefix = "t"): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
