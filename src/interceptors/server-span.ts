import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { type Context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import { runInTracedCall } from "../platform/trace-context.ts";
import type { Tracing } from "../platform/tracing.ts";

/** The trace id of the call's span (the call log writes it); unset when tracing is off. */
export const traceIdKey = createContextKey<string | undefined>(undefined, { description: "trace id" });

/** gRPC's OK, which Connect's Code leaves out. */
const OK = 0 as Code;

/**
 * Codes that mean the server failed, the only ones that set a server span's
 * status to ERROR (OpenTelemetry's gRPC conventions): a refusal such as
 * NOT_FOUND or FAILED_PRECONDITION is an answer, recorded in
 * rpc.grpc.status_code only.
 */
const SERVER_FAILURES: ReadonlySet<Code> = new Set([Code.Unknown, Code.DeadlineExceeded, Code.Unimplemented, Code.Internal, Code.Unavailable, Code.DataLoss]);

function endSpan(span: Span, code: Code): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (SERVER_FAILURES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
  span.end();
}

/**
 * A server-streaming call's messages, each produced inside the call's trace
 * context (so the statements that read them are the span's children); the
 * span ends with the stream: at its end, its error, or when the caller goes.
 */
async function* tracedStream<T>(messages: AsyncIterable<T>, span: Span, context: Context): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  let code: Code | undefined;
  try {
    for (;;) {
      const step = await runInTracedCall(context, () => iterator.next());
      if (step.done) {
        code = OK;
        return;
      }
      yield step.value;
    }
  } catch (error) {
    code = ConnectError.from(error).code;
    throw error;
  } finally {
    if (code === undefined) {
      // The consumer stopped reading: the caller cancelled, or the server is closing.
      code = Code.Canceled;
      await iterator.return?.();
    }
    endSpan(span, code);
  }
}

/**
 * A SERVER span for every call of ReferralCodeService, in the caller's trace
 * when it sends a W3C `traceparent`: `referral.v1.ReferralCodeService/TrackReferral`,
 * with rpc.system, rpc.service, rpc.method and rpc.grpc.status_code. The
 * call's work runs in the span's context, so each SQL statement it runs
 * becomes a child span (src/db/query-spans.ts). Health and reflection calls
 * (probes every few seconds) are not traced.
 */
export function serverSpanInterceptor(tracing: Tracing): Interceptor {
  return (next) => async (request) => {
    if (request.service.typeName !== ReferralCodeService.typeName) return next(request);
    const parent = tracing.callerContext(request.header);
    const span = tracing.tracer.startSpan(
      `${request.service.typeName}/${request.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "grpc", "rpc.service": request.service.typeName, "rpc.method": request.method.name },
      },
      parent,
    );
    const context = trace.setSpan(parent, span);
    request.contextValues.set(traceIdKey, span.spanContext().traceId);
    let response;
    try {
      response = await runInTracedCall(context, () => next(request));
    } catch (error) {
      endSpan(span, ConnectError.from(error).code);
      throw error;
    }
    if (!response.stream) {
      endSpan(span, OK);
      return response;
    }
    return { ...response, message: tracedStream(response.message, span, context) };
  };
}
