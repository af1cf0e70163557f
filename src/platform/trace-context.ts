import { AsyncLocalStorage } from "node:async_hooks";
import { type Context, trace } from "@opentelemetry/api";

/**
 * The trace context of the call whose work is running, for the spans of its
 * SQL statements. Kept apart from the SDK (src/platform/tracing.ts), which is
 * loaded only when tracing is on.
 */
const calls = new AsyncLocalStorage<Context>();

/** Runs a call's work with `context` (its span's) as the parent of the spans it starts. */
export function runInTracedCall<T>(context: Context, work: () => T): T {
  return calls.run(context, work);
}

/**
 * Runs work shared by many calls (a poller that one of them happens to
 * start) outside the current call's trace, so that it adds no spans to it.
 */
export function outsideTracedCall<T>(work: () => T): T {
  return calls.exit(work);
}

/**
 * The context of the call whose work is running here, while its span is
 * open and recording (a sampled call that has not ended): the parent for a
 * child span.
 */
export function currentTracedCall(): Context | undefined {
  const context = calls.getStore();
  return context !== undefined && trace.getSpan(context)?.isRecording() ? context : undefined;
}
