import { type Context, ROOT_CONTEXT, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { Logger } from "./logger.ts";

/** OTEL_TRACES_SAMPLER's values, as the OpenTelemetry environment specification names them. */
type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";

export type TracingSettings = {
  /** Where spans are POSTed as OTLP JSON (…/v1/traces). */
  url: string;
  /** Sent with every export (authentication for a hosted collector, say). */
  headers: Record<string, string>;
  serviceName: string;
  sampler: SamplerName;
  /** The share of root traces the *traceidratio samplers keep (0–1). */
  samplerRatio: number;
};

/** How long a shutdown waits for the last spans to leave (the exporter retries within it). */
const SHUTDOWN_WAIT_MS = 5000;
/** At most one warning per this many ms while exports fail. */
const EXPORT_WARNING_INTERVAL_MS = 60_000;

const headerGetter: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};

/**
 * The process's tracing: a tracer whose spans are batched and exported over
 * OTLP/HTTP in the background, and the W3C trace-context propagator. Nothing
 * is registered globally: whoever traces is handed this object; with no
 * endpoint configured it does not exist, and this module is not even loaded.
 */
export class Tracing {
  readonly tracer: Tracer;
  readonly #provider: TracerProvider;
  readonly #propagator = new W3CTraceContextPropagator();

  constructor(provider: TracerProvider) {
    this.#provider = provider;
    this.tracer = provider.getTracer("referral-code-service");
  }

  /** The context a call's span starts in: the caller's `traceparent` (and `tracestate`), if valid. */
  callerContext(headers: Headers): Context {
    return this.#propagator.extract(ROOT_CONTEXT, headers, headerGetter);
  }

  /** Exports every span ended so far (a failed export is logged, not thrown). */
  async flush(): Promise<void> {
    await this.#provider.forceFlush().catch(() => {});
  }

  /** Exports what is left, waiting at most a few seconds (the collector may be down). */
  async shutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#provider.shutdown().catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS))),
    ]);
    clearTimeout(timer);
  }
}

function samplerFor(settings: TracingSettings): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(settings.samplerRatio);
  switch (settings.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio() });
  }
}

/**
 * The OTLP exporter, warning (at most once a minute) when exports fail: spans
 * are dropped then, calls are never held back by it.
 */
function reportingExporter(settings: TracingSettings, logger: Logger): SpanExporter {
  const exporter = new OTLPTraceExporter({ url: settings.url, headers: settings.headers });
  let warnedAt = -Infinity;
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS && Date.now() - warnedAt >= EXPORT_WARNING_INTERVAL_MS) {
          warnedAt = Date.now();
          logger.warn("trace export failed; spans are dropped until the collector answers", {
            url: settings.url,
            error: String(result.error?.message ?? result.error),
          });
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush(),
  };
}

/**
 * Starts exporting spans to `settings.url`. Spans wait in a bounded queue
 * (2,048; beyond it they are dropped) and leave in batches of up to 512
 * every `exportDelayMs` (default 5 s), off the calls' path.
 */
export function startTracing(settings: TracingSettings, logger: Logger, options: { exportDelayMs?: number } = {}): Tracing {
  const provider = new TracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ "service.name": settings.serviceName })),
    sampler: samplerFor(settings),
    spanProcessors: [new BatchSpanProcessor({ exporter: reportingExporter(settings, logger), scheduledDelayMillis: options.exportDelayMs ?? 5000 })],
  });
  return new Tracing(provider);
}
