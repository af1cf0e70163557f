import { AsyncLocalStorage } from "node:async_hooks";
import type { Interceptor as SlonikInterceptor } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { cancelQueriesAtDeadline } from "./cancel-at-deadline.ts";

/** The deadline (epoch ms) of the call whose work is running, for the database layer. */
const callDeadline = new AsyncLocalStorage<number>();

export function deadlineExceeded(): DomainError {
  return new DomainError("DEADLINE_EXCEEDED", "the call's deadline passed before its work finished");
}

/** Runs `work` under the call deadline `deadline` (epoch ms): its queries stay inside it. */
export function withinCallDeadline<T>(deadline: number, work: () => T): T {
  return callDeadline.run(deadline, work);
}

/**
 * Runs `work` outside the current call's deadline: for a query shared by
 * several calls (a coalesced read), which one caller's deadline must not cut.
 * Each caller still waits only until its own deadline.
 */
export function outsideCallDeadline<T>(work: () => T): T {
  return callDeadline.exit(work);
}

/** The deadline (epoch ms) of the call whose work is running here, if any. */
export function currentCallDeadline(): number | undefined {
  return callDeadline.getStore();
}

/**
 * Keeps a call's queries inside its deadline: no query starts after it, the
 * wait for a pool connection counts against it, and a query still running
 * when it passes is cancelled in PostgreSQL (the protocol's CancelRequest,
 * see cancel-at-deadline.ts), lock waits included. Nothing is set on the
 * session, so nothing can stay behind on a connection, pooled here or by
 * PgBouncer, and no round trip is added to any call.
 */
export function deadlineQueryInterceptor(): SlonikInterceptor {
  cancelQueriesAtDeadline(currentCallDeadline);
  const check = () => {
    const deadline = callDeadline.getStore();
    if (deadline !== undefined && Date.now() >= deadline) throw deadlineExceeded();
    return null;
  };
  return { name: "call-deadline", afterPoolConnection: check, beforeQueryExecution: check };
}
