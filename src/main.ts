import { ConfigError, loadConfig } from "./config.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "./db/embedded-postgres.ts";
import { runMigrations } from "./db/migrate.ts";
import { createDatabasePool } from "./db/pool.ts";
import { querySpanInterceptor } from "./db/query-spans.ts";
import { DAY_MS } from "./platform/clock.ts";
import { createLogger } from "./platform/logger.ts";
import { HealthCheckResponse_ServingStatus as HealthStatus } from "./gen/grpc/health/v1/health_pb.js";
import { Metrics, startMetricsServer } from "./platform/metrics.ts";
import { createApp } from "./app.ts";
import { buildPayoutProviders } from "./payouts/providers/registry.ts";

/** The process: configuration, database (embedded unless DATABASE_URL), migrations, server, shutdown. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.embeddedPostgresDir,
      port: config.embeddedPostgresPort,
      database: "referrals",
      logger,
    });
    databaseUrl = embedded.connectionString;
    logger.info("embedded postgres started", { dir: config.embeddedPostgresDir, port: config.embeddedPostgresPort });
  }

  // Behind PgBouncer in transaction mode, the migration runner's session
  // advisory lock would not stay on one server connection: DATABASE_MIGRATIONS_URL
  // then names PostgreSQL itself.
  const applied = await runMigrations(embedded === undefined ? (config.databaseMigrationsUrl ?? databaseUrl) : databaseUrl);
  logger.info("migrations applied", { applied });

  // Only with an OTLP endpoint configured is the OpenTelemetry SDK even loaded.
  const tracing = config.tracing === null ? undefined : (await import("./platform/tracing.ts")).startTracing(config.tracing, logger);
  if (config.tracing !== null) logger.info("tracing", { url: config.tracing.url, sampler: config.tracing.sampler });
  const metrics = new Metrics();
  const poolOptions = {
    maxPoolSize: config.databasePoolSize,
    statementTimeoutMs: config.statementTimeoutMs,
    preparedStatements: config.databasePreparedStatements,
    interceptors: [metrics.queryTimer(), ...(tracing === undefined ? [] : [querySpanInterceptor(tracing)])],
  };
  const db = await createDatabasePool(databaseUrl, poolOptions);
  metrics.watchPool(db);
  // Open and waiting: an operator's call to a busy replica opens no connection first.
  const operatorPoolSize = config.databaseOperatorPoolSize;
  const operatorDb =
    operatorPoolSize === 0 ? undefined : await createDatabasePool(databaseUrl, { ...poolOptions, maxPoolSize: operatorPoolSize, minPoolSize: operatorPoolSize });
  // Plain reads on a hot standby, when one is named.
  const readDb = config.databaseReadUrl === undefined ? undefined : await createDatabasePool(config.databaseReadUrl, poolOptions);
  const server = createApp({
    db,
    readDb,
    operatorDb,
    logger,
    metrics,
    auth: { tokens: config.authTokens, openHealthAndReflection: config.authOpenHealth },
    tls: config.tls,
    maxBackdateDays: config.maxBackdateDays,
    statsFoldIntervalMs: config.statsFoldIntervalMs,
    tracing,
    payouts: {
      providers: buildPayoutProviders(config.payoutProviders),
      workerIntervalMs: config.payoutWorkerIntervalMs,
      // A claim outlives a send (at most three requests to the provider, each
      // within the timeout), so no two workers send one payout at once.
      leaseSeconds: (4 * config.payoutProviders.timeoutMs) / 1000,
    },
    events: {
      // LISTEN needs a session of its own: behind a transaction pooler, set
      // DATABASE_LISTEN_URL to PostgreSQL itself, or "off" to poll only.
      listenUrl: config.databaseListenUrl === "off" ? null : (config.databaseListenUrl ?? databaseUrl),
      retentionSeconds: (config.eventRetentionDays * DAY_MS) / 1000,
    },
    limits: {
      maxRequestBytes: config.maxRequestBytes,
      maxConcurrentStreams: config.maxConcurrentStreams,
      maxHeaderBytes: config.maxHeaderBytes,
      maxCallsInFlight: config.maxCallsInFlight,
      maxDeadlineMs: config.maxDeadlineMs,
    },
  });
  if (config.authTokens.length === 0) {
    logger.warn("no AUTH_TOKENS configured: the service is open to every caller that can reach it");
  }
  const port = await server.listen(config.port, config.host);
  const grpcPort = config.grpcPort === null ? null : await server.listenGrpcJs(config.grpcPort, config.host);
  const metricsServer = await startMetricsServer(metrics, {
    port: config.metricsPort,
    host: config.metricsHost,
    ready: () => server.health.status === HealthStatus.SERVING,
  });
  logger.info("listening", { host: config.host, port, grpc_port: grpcPort, tls: config.tls !== undefined, metrics_port: metricsServer.port });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    await server.close(config.shutdownGraceMs);
    // The spans of the last calls, sent before the process goes.
    await tracing?.shutdown();
    metricsServer.server.close();
    await db.end();
    await readDb?.end();
    await operatorDb?.end();
    await embedded?.stop();
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((error: unknown) => {
  process.stderr.write(`${JSON.stringify({ level: "error", message: "failed to start", error: String(error) })}\n`);
  process.exit(1);
});
