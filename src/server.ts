import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DatabasePool } from "slonik";
import { type AuthOptions, authInterceptor } from "./auth.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type CodeGenerator, randomCode } from "./codes/generator.ts";
import { deadlineInterceptor } from "./deadline.ts";
import { errorMappingInterceptor } from "./error-mapping.ts";
import { HealthMonitor } from "./health.ts";
import { inFlightLimitInterceptor } from "./limits.ts";
import type { Logger } from "./logger.ts";
import { callLogInterceptor } from "./observability/call-log.ts";
import { Metrics } from "./observability/metrics.ts";
import { createGrpcJsServer } from "./grpc-js-server.ts";
import { DEFAULT_MAX_BACKDATE_DAYS } from "./referrals/validation.ts";
import { implementations, routes } from "./routes.ts";

export type Limits = {
  /** Largest request message accepted; larger ones fail RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  /** HTTP/2 streams one connection may have open at once. */
  maxConcurrentStreams: number;
  /** Largest header block accepted. */
  maxHeaderBytes: number;
  /** Product calls this process handles at once; more fail RESOURCE_EXHAUSTED. */
  maxCallsInFlight: number;
  /** Deadline of a call whose caller sets none, and cap on callers' deadlines. */
  maxDeadlineMs: number;
};

export const DEFAULT_LIMITS: Limits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 256,
  maxHeaderBytes: 16 * 1024,
  maxCallsInFlight: 1024,
  maxDeadlineMs: 30_000,
};

export type TlsOptions = {
  cert: Buffer;
  key: Buffer;
  /** CA of client certificates: when set, clients must present one (mutual TLS). */
  clientCa?: Buffer;
};

export type ServerOptions = {
  db: DatabasePool;
  logger: Logger;
  /** Where the service reads the time (tests move it). */
  clock?: Clock;
  /** Random part of generated codes (tests may force collisions). */
  generateCode?: CodeGenerator;
  /** How many days before the call a conversion's occurred_at may lie (0: none); default 30. */
  maxBackdateDays?: number;
  /** How often health probes the database. */
  healthIntervalMs?: number;
  metrics?: Metrics;
  auth?: AuthOptions;
  limits?: Partial<Limits>;
  tls?: TlsOptions;
};

export type ReferralServer = {
  health: HealthMonitor;
  metrics: Metrics;
  /** Starts listening; resolves with the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /** Also serves the gRPC protocol through @grpc/grpc-js on a second port. */
  listenGrpcJs(port: number, host?: string): Promise<number>;
  /**
   * Stops: health turns NOT_SERVING, sessions get GOAWAY, calls in flight
   * finish for up to `graceMs`, then remaining sessions are destroyed.
   */
  close(graceMs?: number): Promise<void>;
};

/**
 * One HTTP/2 port (cleartext, or TLS with optional client certificates)
 * serving gRPC, gRPC-Web and Connect for ReferralCodeService, grpc.health.v1
 * and server reflection. The caller owns the pool; the server never closes it.
 */
export function createServer(options: ServerOptions): ReferralServer {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const metrics = options.metrics ?? new Metrics();
  const health = new HealthMonitor(options.db, options.logger, options.healthIntervalMs);
  const served = implementations({
    db: options.db,
    clock: options.clock ?? systemClock,
    generateCode: options.generateCode ?? randomCode,
    maxBackdateDays: options.maxBackdateDays ?? DEFAULT_MAX_BACKDATE_DAYS,
    health,
  });
  // Outermost first: the log sees the final code of every call, including
  // refusals by the limit and authentication. Both transports run these.
  const interceptors = [
    callLogInterceptor(options.logger, metrics),
    errorMappingInterceptor(options.logger),
    deadlineInterceptor(limits.maxDeadlineMs),
    inFlightLimitInterceptor(limits.maxCallsInFlight),
    authInterceptor(options.auth ?? { tokens: [], openHealthAndReflection: true }),
  ];
  const handler = connectNodeAdapter({ routes: routes(served), readMaxBytes: limits.maxRequestBytes, interceptors });
  const grpcJs = createGrpcJsServer({ services: served, interceptors, limits, tls: options.tls });
  let grpcJsListening = false;
  const http2Options = {
    settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    maxSendHeaderBlockLength: limits.maxHeaderBytes,
  };
  const server = options.tls
    ? http2.createSecureServer(
        {
          ...http2Options,
          cert: options.tls.cert,
          key: options.tls.key,
          ca: options.tls.clientCa,
          requestCert: options.tls.clientCa !== undefined,
          rejectUnauthorized: options.tls.clientCa !== undefined,
          allowHTTP1: true,
        },
        handler,
      )
    : http2.createServer(http2Options, handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  return {
    health,
    metrics,
    async listen(port, host = "127.0.0.1") {
      await health.start();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    async listenGrpcJs(port, host = "127.0.0.1") {
      const bound = await grpcJs.listen(port, host);
      grpcJsListening = true;
      return bound;
    },
    async close(graceMs = 10_000) {
      health.drain();
      const grpcJsClosed = grpcJsListening ? grpcJs.close(graceMs) : Promise.resolve();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // GOAWAY: clients open no new streams here; streams in flight finish.
      for (const session of sessions) session.close();
      const timer = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, graceMs);
      await Promise.all([closed, grpcJsClosed]);
      clearTimeout(timer);
      health.stop();
    },
  };
}
