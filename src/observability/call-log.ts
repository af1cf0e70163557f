import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey } from "../auth.ts";
import type { Logger } from "../logger.ts";
import { grpcCodeName } from "./codes.ts";
import type { Metrics } from "./metrics.ts";

/**
 * One JSON log line and the metrics of every call: method, gRPC code, duration
 * and caller. Request and response bodies are never logged (they hold codes
 * and user ids); neither are tokens.
 */
export function callLogInterceptor(logger: Logger, metrics: Metrics): Interceptor {
  return (next) => async (request) => {
    const start = process.hrtime.bigint();
    metrics.inFlight.inc();
    let code = "OK";
    try {
      return await next(request);
    } catch (error) {
      code = grpcCodeName(ConnectError.from(error).code);
      throw error;
    } finally {
      metrics.inFlight.dec();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const method = request.method.name;
      metrics.requests.inc({ method, code });
      metrics.latency.observe({ method }, seconds);
      logger.info("call", {
        service: request.service.typeName,
        method,
        code,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        caller: request.contextValues.get(callerKey),
        protocol: request.header.get("content-type")?.split(";")[0],
      });
    }
  };
}
