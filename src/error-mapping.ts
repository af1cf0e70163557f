import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  ConnectionError,
  StatementCancelledError,
  StatementTimeoutError,
} from "slonik";
import { DomainError, toConnectError } from "./errors.ts";
import type { Logger } from "./logger.ts";

/** SQLSTATEs of conflicts worth retrying: serialization failure, deadlock. */
const RETRYABLE_SQLSTATES = new Set(["40001", "40P01"]);
/** SQLSTATEs of a database going away: admin/crash shutdown, cannot connect now. */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"]);

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

function sqlState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = current.cause;
  }
  return undefined;
}

/**
 * What the caller receives for any error a handler throws: domain errors with
 * their reason, database trouble as UNAVAILABLE / DEADLINE_EXCEEDED / ABORTED,
 * and anything else as a bare INTERNAL, logged here. No SQL text, stack or
 * driver message ever reaches a caller.
 */
export function toCallerError(error: unknown, logger: Logger, procedure: string): ConnectError {
  if (error instanceof DomainError) return toConnectError(error);
  if (error instanceof ConnectError) return error;
  const state = sqlState(error);
  if (state !== undefined && RETRYABLE_SQLSTATES.has(state)) {
    return toConnectError(new DomainError("CONFLICT", "the request conflicted with a concurrent one; retry it"));
  }
  if (error instanceof StatementTimeoutError || error instanceof StatementCancelledError) {
    return toConnectError(new DomainError("DEADLINE_EXCEEDED", "the database did not answer in time"));
  }
  if (isConnectionFailure(error)) {
    logger.warn("database unavailable", { procedure, error: String(error) });
    return toConnectError(new DomainError("DATABASE_UNAVAILABLE", "the database is unavailable; retry later"));
  }
  logger.error("internal error", { procedure, error });
  return new ConnectError("internal error", Code.Internal);
}

export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    try {
      return await next(request);
    } catch (error) {
      throw toCallerError(error, logger, request.method.name);
    }
  };
}
