import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  ConnectionError,
  StatementCancelledError,
  StatementTimeoutError,
} from "slonik";

// How the database fails: connections that went away, and SQLSTATEs.

/**
 * SQLSTATEs of a database going away: admin/crash shutdown, cannot connect
 * now, and 25006 (read_only_sql_transaction): a write reached a server that
 * is no longer the primary after a failover, so its session is dropped and
 * the next one opens on the new primary (hosts.ts).
 */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006", "25006"]);

/** Socket errors of a connection to the database that went away. */
const NETWORK_ERRORS = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND"]);

/** Whether the error, or one it wraps, is the database connection failing. */
export function isConnectionFailure(error: unknown): boolean {
  if (
    error instanceof ConnectionError ||
    error instanceof BackendTerminatedError ||
    error instanceof BackendTerminatedUnexpectedlyError ||
    error instanceof StatementTimeoutError ||
    error instanceof StatementCancelledError
  ) {
    return true;
  }
  const state = sqlState(error);
  if (state !== undefined && UNAVAILABLE_SQLSTATES.has(state)) return true;
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_ERRORS.has(code)) return true;
    if (/Connection terminated|connection ended|Client has encountered a connection error/i.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/** The SQLSTATE of the error, or of one it wraps. */
export function sqlState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = current.cause;
  }
  return undefined;
}
