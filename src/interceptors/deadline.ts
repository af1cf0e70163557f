import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { deadlineExceeded, withinCallDeadline } from "../db/call-deadline.ts";

const GRPC_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The caller's timeout in ms from grpc-timeout (gRPC, gRPC-Web) or connect-timeout-ms (Connect). */
function requestTimeoutMs(header: Headers): number | undefined {
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (grpc) return Number(grpc[1]) * (GRPC_UNITS[grpc[2]!] ?? 1);
  const connect = /^\d{1,10}$/.exec(header.get("connect-timeout-ms") ?? "");
  return connect ? Number(connect[0]) : undefined;
}

/**
 * The caller's deadline (epoch ms) as a transport already knows it: grpc-js
 * hands it over parsed, so it needs no header. Unset: read from the headers.
 */
export const callerDeadlineKey = createContextKey<number | undefined>(undefined, { description: "caller deadline (epoch ms)" });

/**
 * Every call runs under a deadline: the caller's, capped by `maxMs`, which also
 * applies when the caller sets none. The caller is answered DEADLINE_EXCEEDED
 * when it passes, even if the database does not answer at all; the pool's
 * deadline interceptor (src/db/call-deadline.ts) keeps the call's queries
 * inside the same deadline.
 */
export function deadlineInterceptor(maxMs: number): Interceptor {
  return (next) => (request) => {
    const now = Date.now();
    const callerDeadline = request.contextValues.get(callerDeadlineKey);
    const callerTimeoutMs = callerDeadline === undefined ? requestTimeoutMs(request.header) : Math.max(0, callerDeadline - now);
    const timeoutMs = Math.min(callerTimeoutMs ?? maxMs, maxMs);
    return new Promise((resolve, reject) => {
      // A synchronous throw here rejects the promise (before any timer is set).
      const work = withinCallDeadline(now + timeoutMs, () => next(request));
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
