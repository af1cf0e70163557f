import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { callerKey } from "./auth.ts";
import { traceIdKey } from "./server-span.ts";
import type { Logger } from "../platform/logger.ts";
import { grpcCodeName } from "../platform/grpc-codes.ts";
import type { Metrics } from "../platform/metrics.ts";

/**
 * One JSON log line and the metrics of every call: method, gRPC code,
 * duration, caller, and the trace id when tracing is on. Request and response
 * bodies are never logged (they hold codes and user ids); neither are tokens.
 */
export function callLogInterceptor(logger: Logger, metrics: Metrics): Interceptor {
  // prom-client hashes a labels object on every update; each (method, code)
  // pair's child is looked up once instead.
  const counted = new Map<string, { inc(): void }>();
  const timed = new Map<string, { observe(seconds: number): void }>();
  const countCall = (method: string, code: string) => {
    const key = `${method} ${code}`;
    let child = counted.get(key);
    if (child === undefined) counted.set(key, (child = metrics.requests.labels({ method, code })));
    child.inc();
  };
  const timeCall = (method: string, seconds: number) => {
    let child = timed.get(method);
    if (child === undefined) timed.set(method, (child = metrics.latency.labels({ method })));
    child.observe(seconds);
  };
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
      countCall(method, code);
      timeCall(method, seconds);
      logger.info("call", {
        service: request.service.typeName,
        method,
        code,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        caller: request.contextValues.get(callerKey),
        protocol: request.header.get("content-type")?.split(";")[0],
        trace_id: request.contextValues.get(traceIdKey),
      });
    }
  };
}
