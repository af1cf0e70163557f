import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { DatabasePool, Interceptor as SlonikInterceptor } from "slonik";

/** The service's Prometheus metrics, in a registry of their own. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "rpc_requests_total",
    help: "RPCs handled, by method and gRPC status code.",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: "rpc_duration_seconds",
    help: "RPC handling time, by method.",
    labelNames: ["method"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({ name: "rpc_in_flight", help: "RPCs being handled now.", registers: [this.registry] });
  readonly queryDuration = new Histogram({
    name: "db_query_duration_seconds",
    help: "Database round trip of each query, from send to result.",
    buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  readonly eventLag = new Gauge({
    name: "events_stream_lag_seconds",
    help: "Age of the oldest event this replica's event poller has not handed out yet (0: none waits).",
    registers: [this.registry],
  });
  readonly eventBatchesDropped = new Counter({
    name: "events_stream_batches_dropped_total",
    help: "Event batches dropped for streams whose consumer reads slower than the log grows (each such stream then reads the log again at its pace).",
    registers: [this.registry],
  });
  readonly statsStaleness = new Gauge({
    name: "stats_staleness_seconds",
    help: "How far behind now the program statistics are exact (now minus their as_of).",
    registers: [this.registry],
  });
  readonly eventStreams = new Gauge({ name: "events_streams_open", help: "StreamEvents calls open on this replica.", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Pool gauges, read from the pool at each scrape. */
  watchPool(pool: DatabasePool): void {
    const gauges: [string, string, (state: ReturnType<DatabasePool["state"]>) => number][] = [
      ["db_pool_connections_in_use", "Pool connections checked out.", (state) => state.acquiredConnections],
      ["db_pool_connections_idle", "Pool connections idle.", (state) => state.idleConnections],
      ["db_pool_waiting_requests", "Queries waiting for a pool connection.", (state) => state.waitingClients],
    ];
    for (const [name, help, read] of gauges) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read(pool.state()));
        },
      });
    }
  }

  /** A Slonik interceptor timing every query's round trip. */
  queryTimer(): SlonikInterceptor {
    const started = new WeakMap<object, bigint>();
    return {
      name: "query-timer",
      beforeQueryExecution: (context) => {
        started.set(context.sandbox, process.hrtime.bigint());
        return null;
      },
      afterQueryExecution: (context) => {
        const start = started.get(context.sandbox);
        if (start !== undefined) this.queryDuration.observe(Number(process.hrtime.bigint() - start) / 1e9);
        return null;
      },
    };
  }
}

/** Serves /metrics (Prometheus text) and /readyz on their own port. */
export async function startMetricsServer(
  metrics: Metrics,
  options: { port: number; host: string; ready: () => boolean },
): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    if (request.url === "/metrics") {
      metrics.registry
        .metrics()
        .then((body) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(body))
        .catch(() => response.writeHead(500).end());
      return;
    }
    if (request.url === "/readyz") {
      const ready = options.ready();
      response.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ready\n" : "not ready\n");
      return;
    }
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
