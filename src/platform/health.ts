import { EventEmitter, on } from "node:events";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { sql, type DatabasePool } from "slonik";
import { z } from "zod";
import { Health, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import type { Logger } from "./logger.ts";

/**
 * The serving status behind grpc.health.v1: NOT_SERVING while the database is
 * unreachable or the server drains, SERVING otherwise. Probes the database
 * every `intervalMs`; Watch streams every change.
 */
export class HealthMonitor {
  readonly #db: DatabasePool;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #changes = new EventEmitter();
  #databaseUp = false;
  #draining = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: DatabasePool, logger: Logger, intervalMs = 1000) {
    this.#db = db;
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#changes.setMaxListeners(0);
  }

  get status(): Status {
    return this.#databaseUp && !this.#draining ? Status.SERVING : Status.NOT_SERVING;
  }

  /** Probes once now, then every interval. */
  async start(): Promise<void> {
    await this.probe();
    this.#timer = setInterval(() => void this.probe(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The server is shutting down: NOT_SERVING from now on. */
  drain(): void {
    this.#set(() => {
      this.#draining = true;
    });
  }

  /**
   * One probe: SELECT 1 within the probe interval (at least a second). A
   * database that does not answer in time (frozen, or every connection busy)
   * counts as down.
   */
  async probe(): Promise<void> {
    const timeoutMs = Math.max(1000, this.#intervalMs);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    const up = await Promise.race([this.#db.oneFirst(sql.type(z.object({ ok: z.number() }))`SELECT 1 AS ok`), timedOut])
      .then(() => true)
      .catch((error: unknown) => {
        if (this.#databaseUp) this.#logger.warn("database unreachable", { error: String(error) });
        return false;
      })
      .finally(() => clearTimeout(timer));
    this.#set(() => {
      this.#databaseUp = up;
    });
  }

  #set(change: () => void): void {
    const before = this.status;
    change();
    if (this.status !== before) this.#changes.emit("change", this.status);
  }

  /** The current status, then each change, until `signal` aborts. */
  async *watch(signal: AbortSignal): AsyncGenerator<Status> {
    yield this.status;
    try {
      for await (const [status] of on(this.#changes, "change", { signal })) yield status as Status;
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  }
}

/** The grpc.health.v1.Health implementation over a monitor. */
export function healthImpl(monitor: HealthMonitor, serviceNames: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  return {
    check(request) {
      if (!known.has(request.service)) throw new ConnectError(`unknown service ${request.service}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: monitor.status });
    },
    async *watch(request, context) {
      if (!known.has(request.service)) {
        yield create(HealthCheckResponseSchema, { status: Status.SERVICE_UNKNOWN });
        return;
      }
      let last: Status | undefined;
      for await (const status of monitor.watch(context.signal)) {
        if (status !== last) yield create(HealthCheckResponseSchema, { status });
        last = status;
      }
    },
  };
}
