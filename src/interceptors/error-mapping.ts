import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { StatementCancelledError, StatementTimeoutError } from "slonik";
import { DomainError, toConnectError } from "../api/reasons.ts";
import { isConnectionFailure, sqlState } from "../db/errors.ts";
import type { Logger } from "../platform/logger.ts";

/** SQLSTATEs of conflicts worth retrying: serialization failure, deadlock. */
const RETRYABLE_SQLSTATES = new Set(["40001", "40P01"]);

/**
 * What the caller receives for any error a handler throws: domain errors with
 * their reason, database trouble as UNAVAILABLE / DEADLINE_EXCEEDED / ABORTED,
 * and anything else as a bare INTERNAL, logged here. No SQL text, stack or
 * driver message ever reaches a caller.
 */
function toCallerError(error: unknown, logger: Logger, procedure: string): ConnectError {
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

/** A stream's messages, with an error raised while streaming mapped like any other. */
async function* mappedStream<T>(messages: AsyncIterable<T>, logger: Logger, procedure: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw toCallerError(error, logger, procedure);
  }
}

export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    try {
      const response = await next(request);
      return response.stream ? { ...response, message: mappedStream(response.message, logger, request.method.name) } : response;
    } catch (error) {
      throw toCallerError(error, logger, request.method.name);
    }
  };
}
