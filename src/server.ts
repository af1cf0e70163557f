import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DatabasePool } from "slonik";
import { type Clock, systemClock } from "./clock.ts";
import { type CodeGenerator, randomCode } from "./codes/generator.ts";
import { errorMappingInterceptor } from "./error-mapping.ts";
import { HealthMonitor } from "./health.ts";
import type { Logger } from "./logger.ts";
import { routes } from "./routes.ts";

export type ServerOptions = {
  db: DatabasePool;
  logger: Logger;
  /** Where the service reads the time (tests move it). */
  clock?: Clock;
  /** Random part of generated codes (tests may force collisions). */
  generateCode?: CodeGenerator;
  /** How often health probes the database. */
  healthIntervalMs?: number;
};

export type ReferralServer = {
  health: HealthMonitor;
  /** Starts listening; resolves with the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /**
   * Stops: health turns NOT_SERVING, sessions get GOAWAY, calls in flight
   * finish for up to `graceMs`, then remaining sessions are destroyed.
   */
  close(graceMs?: number): Promise<void>;
};

/**
 * One cleartext HTTP/2 port serving gRPC, gRPC-Web and Connect for
 * ReferralCodeService, grpc.health.v1 and server reflection. The caller owns
 * the pool; the server never closes it.
 */
export function createServer(options: ServerOptions): ReferralServer {
  const health = new HealthMonitor(options.db, options.logger, options.healthIntervalMs);
  const handler = connectNodeAdapter({
    routes: routes({
      db: options.db,
      clock: options.clock ?? systemClock,
      generateCode: options.generateCode ?? randomCode,
      health,
    }),
    interceptors: [errorMappingInterceptor(options.logger)],
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  return {
    health,
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
    async close(graceMs = 10_000) {
      health.drain();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const timer = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      health.stop();
    },
  };
}
