import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import { type CodeGenerator, randomCode } from "./codes/generator.ts";
import { createCodeHandlers } from "./codes/handlers.ts";
import { EventFeed } from "./events/feed.ts";
import { createEventHandlers } from "./events/handlers.ts";
import { EventLog } from "./events/log.ts";
import { DEFAULT_EVENT_RETENTION_DAYS, EventPruner } from "./events/retention.ts";
import { file_google_rpc_error_details } from "./gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "./gen/google/rpc/status_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { ReferralCodeService } from "./gen/referral/v1/referral_code_service_pb.js";
import { type AuthOptions, authInterceptor } from "./interceptors/auth.ts";
import { callLogInterceptor } from "./interceptors/call-log.ts";
import { deadlineInterceptor } from "./interceptors/deadline.ts";
import { errorMappingInterceptor } from "./interceptors/error-mapping.ts";
import { inFlightLimitInterceptor } from "./interceptors/in-flight-limit.ts";
import { serverSpanInterceptor } from "./interceptors/server-span.ts";
import { wellFormedTextInterceptor } from "./interceptors/well-formed-text.ts";
import { writeSignalInterceptor } from "./interceptors/write-signal.ts";
import { type Clock, DAY_MS, systemClock } from "./platform/clock.ts";
import { HealthMonitor, healthImpl } from "./platform/health.ts";
import type { Logger } from "./platform/logger.ts";
import { Metrics } from "./platform/metrics.ts";
import type { Tracing } from "./platform/tracing.ts";
import type { PayoutProviders } from "./payouts/accounts.ts";
import { createPayoutHandlers } from "./payouts/handlers.ts";
import { manualProvider } from "./payouts/providers/manual.ts";
import { PayoutWorker } from "./payouts/worker.ts";
import { createProgramHandlers } from "./programs/handlers.ts";
import { createReferralHandlers } from "./referrals/handlers.ts";
import { StatsFolder } from "./stats/fold.ts";
import { createStatsHandlers } from "./stats/handlers.ts";
import { DEFAULT_MAX_BACKDATE_DAYS } from "./referrals/requests.ts";
import { DEFAULT_LIMITS, type Limits, type TlsOptions } from "./transport/options.ts";
import { createTransports } from "./transport/server.ts";

export type AppOptions = {
  db: DatabasePool;
  /**
   * Where plain reads go (GetX, ListX, GetUserEarnings, statistics): a pool on
   * a hot standby (DATABASE_READ_URL). Default `db`. ValidateCode, every
   * write and the event log stay on `db`.
   */
  readDb?: DatabasePool;
  /**
   * A few connections of their own for operators' program changes
   * (CreateProgram, UpdateProgram), so that deactivating a program that is
   * being abused does not queue behind that program's conversions for a
   * connection of `db`. Default `db`.
   */
  operatorDb?: DatabasePool;
  logger: Logger;
  /** Where the service reads the time (tests move it). */
  clock?: Clock;
  /** Random part of generated codes (tests may force collisions). */
  generateCode?: CodeGenerator;
  /** How many days before the call a conversion's occurred_at may lie (0: none). */
  maxBackdateDays?: number;
  /** How often health probes the database. */
  healthIntervalMs?: number;
  metrics?: Metrics;
  auth?: AuthOptions;
  limits?: Partial<Limits>;
  tls?: TlsOptions;
  events?: EventOptions;
  /** How often a replica folds new events into the statistics (default 250 ms; 0: never, another replica does). */
  statsFoldIntervalMs?: number;
  /**
   * A server span per call (its SQL statements' spans come from the pool's
   * interceptor, src/db/query-spans.ts). Unset: tracing is off.
   */
  tracing?: Tracing;
  payouts?: PayoutOptions;
};

type PayoutOptions = {
  /** The configured providers (src/payouts/providers/registry.ts); unset: manual payouts only. */
  providers?: PayoutProviders;
  /** How often this replica's worker looks for payouts to send (default 1 s; 0: never, another replica does). */
  workerIntervalMs?: number;
  /** How long a claimed payout is one worker's before another sends it again (default 120 s). */
  leaseSeconds?: number;
  /** Wait before retrying an ambiguous payout, doubled per try (default 10 s). */
  retryBaseMs?: number;
};

type EventOptions = {
  /** A direct connection to PostgreSQL for LISTEN (null: poll only, the default). */
  listenUrl?: string | null;
  /** Longest time between two polls of the log (default 250 ms). */
  pollIntervalMs?: number;
  /** Heartbeat of a stream with nothing to send (default 5 s). */
  heartbeatMs?: number;
  /** How long events are kept (default 30 days). */
  retentionSeconds?: number;
  /** How often a replica tries to prune (default 60 s). */
  pruneIntervalMs?: number;
};

export type App = {
  health: HealthMonitor;
  metrics: Metrics;
  /** Starts the main port; resolves with the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /** Also serves the gRPC protocol through @grpc/grpc-js on a second port. */
  listenGrpcJs(port: number, host?: string): Promise<number>;
  /**
   * Stops: health turns NOT_SERVING, sessions get GOAWAY, calls in flight
   * finish for up to `graceMs`, then remaining sessions are destroyed.
   */
  close(graceMs?: number): Promise<void>;
};

/**
 * The service as it is served: ReferralCodeService (one handler module per
 * resource; the event log's feed and pruner) and grpc.health.v1 on both
 * ports, behind one chain of interceptors. The caller owns the pool; the app
 * never closes it.
 */
export function createApp(options: AppOptions): App {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const metrics = options.metrics ?? new Metrics();
  const health = new HealthMonitor(options.db, options.logger, options.healthIntervalMs);
  const deps = {
    db: options.db,
    reads: options.readDb ?? options.db,
    operators: options.operatorDb ?? options.db,
    clock: options.clock ?? systemClock,
    generateCode: options.generateCode ?? randomCode,
    maxBackdateDays: options.maxBackdateDays ?? DEFAULT_MAX_BACKDATE_DAYS,
  };
  const events = options.events ?? {};
  const log = new EventLog(options.db);
  const feed = new EventFeed({
    log,
    db: options.db,
    logger: options.logger,
    metrics,
    listenUrl: events.listenUrl ?? null,
    pollIntervalMs: events.pollIntervalMs,
  });
  const pruner = new EventPruner({
    db: options.db,
    logger: options.logger,
    retentionSeconds: events.retentionSeconds ?? (DEFAULT_EVENT_RETENTION_DAYS * DAY_MS) / 1000,
    intervalMs: events.pruneIntervalMs ?? 60_000,
  });
  const payouts = options.payouts ?? {};
  const providers: PayoutProviders = payouts.providers ?? new Map([["MANUAL", manualProvider]]);
  const payoutWorker = new PayoutWorker({
    db: options.db,
    logger: options.logger,
    clock: deps.clock,
    providers,
    intervalMs: payouts.workerIntervalMs ?? 1000,
    leaseSeconds: payouts.leaseSeconds ?? 120,
    retryBaseMs: payouts.retryBaseMs ?? 10_000,
  });
  const referralCodeService: ServiceImpl<typeof ReferralCodeService> = {
    ...createProgramHandlers(deps),
    ...createCodeHandlers(deps),
    ...createReferralHandlers(deps),
    ...createEventHandlers({ log, feed, heartbeatMs: events.heartbeatMs ?? 5000 }),
    ...createStatsHandlers(deps),
    ...createPayoutHandlers({ ...deps, providers }),
  };
  const folder = new StatsFolder({ db: options.db, logger: options.logger, metrics, intervalMs: options.statsFoldIntervalMs ?? 250 });
  const transports = createTransports({
    services: [
      { service: ReferralCodeService, impl: referralCodeService },
      { service: Health, impl: healthImpl(health, [ReferralCodeService.typeName]) },
    ],
    // Outermost first: the span covers the whole call and gives the log its
    // trace id; the log sees the final code of every call, including refusals
    // by the limit and authentication.
    interceptors: [
      ...(options.tracing === undefined ? [] : [serverSpanInterceptor(options.tracing)]),
      callLogInterceptor(options.logger, metrics),
      errorMappingInterceptor(options.logger),
      deadlineInterceptor(limits.maxDeadlineMs),
      inFlightLimitInterceptor(limits.maxCallsInFlight),
      authInterceptor(options.auth ?? { tokens: [], openHealthAndReflection: true }),
      wellFormedTextInterceptor(),
      writeSignalInterceptor(() => feed.changed()),
    ],
    limits,
    tls: options.tls,
    // Error details too, so reflection clients can decode ErrorInfo and BadRequest.
    reflectionFiles: [file_google_rpc_status, file_google_rpc_error_details],
  });

  return {
    health,
    metrics,
    async listen(port, host) {
      await health.start();
      pruner.start();
      if (options.statsFoldIntervalMs !== 0) folder.start();
      payoutWorker.start();
      return transports.listen(port, host);
    },
    listenGrpcJs: (port, host) => transports.listenGrpcJs(port, host),
    async close(graceMs = 10_000) {
      health.drain();
      // Streams end cleanly now; their consumers resume on another replica.
      feed.close();
      await Promise.all([pruner.stop(), folder.stop(), payoutWorker.stop()]);
      await transports.close(graceMs);
      health.stop();
    },
  };
}
