import { AsyncLocalStorage } from "node:async_hooks";
import type { Interceptor } from "@connectrpc/connect";
import type { Interceptor as SlonikInterceptor } from "slonik";
import { cancelQueriesAtDeadline } from "./db/cancel-at-deadline.ts";
import { DomainError } from "./errors.ts";

/** The deadline (epoch ms) of the call whose work is running, for the database layer. */
const callDeadline = new AsyncLocalStorage<number>();

const GRPC_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The caller's timeout in ms from grpc-timeout (gRPC, gRPC-Web) or connect-timeout-ms (Connect). */
export function requestTimeoutMs(header: Headers): number | undefined {
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (grpc) return Number(grpc[1]) * (GRPC_UNITS[grpc[2]!] ?? 1);
  const connect = /^\d{1,10}$/.exec(header.get("connect-timeout-ms") ?? "");
  return connect ? Number(connect[0]) : undefined;
}

/**
 * Runs `work` outside the current call's deadline: for a query shared by
 * several calls (a coalesced read), which one caller's deadline must not cut.
 * Each caller still waits only until its own deadline.
 */
export function outsideCallDeadline<T>(work: () => T): T {
  return callDeadline.exit(work);
}

function deadlineExceeded(): DomainError {
  return new DomainError("DEADLINE_EXCEEDED", "the call's deadline passed before its work finished");
}

/**
 * Every call runs under a deadline: the caller's, capped by `maxMs`, which also
 * applies when the caller sets none. The caller is answered DEADLINE_EXCEEDED
 * when it passes, even if the database does not answer at all; the database
 * interceptor below keeps the call's queries inside the same deadline.
 */
export function deadlineInterceptor(maxMs: number): Interceptor {
  return (next) => (request) => {
    const timeoutMs = Math.min(requestTimeoutMs(request.header) ?? maxMs, maxMs);
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      // A synchronous throw here rejects the promise (before any timer is set).
      const work = callDeadline.run(deadline, () => next(request));
      const timer = setTimeout(() => reject(deadlineExceeded()), timeoutMs);
      work.then(
        (response) => {
          clearTimeout(timer);
          resolve(response);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  };
}

/** The deadline (epoch ms) of the call whose work is running here, if any. */
export function currentCallDeadline(): number | undefined {
  return callDeadline.getStore();
}

/**
 * Keeps a call's queries inside its deadline: no query starts after it, the
 * wait for a pool connection counts against it, and a query still running
 * when it passes is cancelled in PostgreSQL (the protocol's CancelRequest,
 * see src/db/cancel-at-deadline.ts), lock waits included. Nothing is set on
 * the session, so nothing can stay behind on a connection, pooled here or by
 * PgBouncer, and no round trip is added to any call.
 */
export function deadlineQueryInterceptor(): SlonikInterceptor {
  cancelQueriesAtDeadline(currentCallDeadline);
  return {
    name: "call-deadline",
    afterPoolConnection: () => {
      const deadline = callDeadline.getStore();
      if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
      return null;
    },
    beforeQueryExecution: () => {
      const deadline = callDeadline.getStore();
      if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
      return null;
    },
  };
}
