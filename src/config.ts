import { readFileSync } from "node:fs";
import { z } from "zod";
import { DatabaseUrlError, parseDatabaseUrl } from "./db/hosts.ts";
import { parseTokens, type TokenEntry } from "./interceptors/auth.ts";
import type { LogLevel } from "./platform/logger.ts";
import type { TracingSettings } from "./platform/tracing.ts";
import { DEFAULT_EVENT_RETENTION_DAYS } from "./events/retention.ts";
import { DEFAULT_MAX_BACKDATE_DAYS } from "./referrals/requests.ts";
import type { PayoutProviderSettings } from "./payouts/providers/registry.ts";
import { DEFAULT_LIMITS } from "./transport/options.ts";

const port = z.coerce.number().int().min(0).max(65535);
const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" });

/** A PostgreSQL URI, with one host or several (libpq's `h1:p1,h2:p2` and `target_session_attrs`). */
const databaseUrl = z.string().superRefine((value, ctx) => {
  try {
    parseDatabaseUrl(value);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: error instanceof DatabaseUrlError ? `must be a postgres:// URI: ${error.message}` : "must be a postgres:// URI" });
  }
});

/** OTLP headers as the OpenTelemetry specification writes them: `k=v,k=v`, values percent-encoded. */
const otlpHeaders = z.string().transform((value, ctx) => {
  const headers: Record<string, string> = {};
  for (const entry of value.split(",")) {
    const at = entry.indexOf("=");
    const name = entry.slice(0, at).trim();
    if (at < 1 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      ctx.addIssue({ code: "custom", message: "must be name=value pairs separated by commas" });
      return z.NEVER;
    }
    try {
      headers[name.toLowerCase()] = decodeURIComponent(entry.slice(at + 1).trim());
    } catch {
      ctx.addIssue({ code: "custom", message: `the value of ${name} is not percent-encoded properly` });
      return z.NEVER;
    }
  }
  return headers;
});

/** Every setting, from the environment; see the configuration table in README.md. */
const configSchema = z.object({
  PORT: port.default(8080),
  GRPC_PORT: z.union([z.literal("off"), port]).default(50051),
  HOST: z.string().min(1).default("0.0.0.0"),
  DATABASE_URL: databaseUrl.optional(),
  DATABASE_MIGRATIONS_URL: databaseUrl.optional(),
  DATABASE_LISTEN_URL: z.union([z.literal("off"), databaseUrl]).optional(),
  DATABASE_READ_URL: databaseUrl.optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(1000).default(10),
  DATABASE_OPERATOR_POOL_SIZE: z.coerce.number().int().min(0).max(100).default(2),
  DATABASE_PREPARED_STATEMENTS: z.enum(["true", "false"]).default("true"),
  DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  EMBEDDED_POSTGRES_DIR: z.string().min(1).default("./.data"),
  EMBEDDED_POSTGRES_PORT: port.default(54329),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  METRICS_PORT: port.default(9464),
  METRICS_HOST: z.string().min(1).default("0.0.0.0"),
  AUTH_TOKENS: z
    .string()
    .default("")
    .transform((value, ctx) => {
      try {
        return parseTokens(value);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    }),
  AUTH_OPEN_HEALTH: z.enum(["true", "false"]).default("true"),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  TLS_CLIENT_CA_FILE: z.string().optional(),
  MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(DEFAULT_LIMITS.maxRequestBytes),
  MAX_CONCURRENT_STREAMS: z.coerce.number().int().min(1).max(10_000).default(DEFAULT_LIMITS.maxConcurrentStreams),
  MAX_HEADER_BYTES: z.coerce.number().int().min(1024).max(1024 * 1024).default(DEFAULT_LIMITS.maxHeaderBytes),
  MAX_CALLS_IN_FLIGHT: z.coerce.number().int().min(1).max(100_000).default(DEFAULT_LIMITS.maxCallsInFlight),
  MAX_DEADLINE_MS: z.coerce.number().int().min(10).max(600_000).default(DEFAULT_LIMITS.maxDeadlineMs),
  MAX_BACKDATE_DAYS: z.coerce.number().int().min(0).max(3650).default(DEFAULT_MAX_BACKDATE_DAYS),
  EVENT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(DEFAULT_EVENT_RETENTION_DAYS),
  STATS_FOLD_INTERVAL_MS: z.coerce.number().int().min(0).max(600_000).default(250),
  OTEL_SDK_DISABLED: z.stringbool({ truthy: ["true"], falsy: ["false"] }).default(false),
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl.optional(),
  OTEL_EXPORTER_OTLP_HEADERS: otlpHeaders.optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: otlpHeaders.optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default("referral-code-service"),
  OTEL_TRACES_SAMPLER: z
    .enum(["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"])
    .default("parentbased_always_on"),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  STRIPE_SECRET_KEY: z.string().regex(/^(sk|rk)_\S+$/, "must be a Stripe secret or restricted key (sk_… or rk_…)").optional(),
  STRIPE_API_URL: httpUrl.optional(),
  WISE_API_TOKEN: z.string().regex(/^\S+$/, "must be one token, without spaces").optional(),
  WISE_PROFILE_ID: z.string().regex(/^[1-9]\d{0,18}$/, "must be a Wise profile id (a number)").optional(),
  WISE_API_URL: httpUrl.default("https://api.wise.com"),
  PAYOUT_PROVIDER_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  PAYOUT_WORKER_INTERVAL_MS: z.coerce.number().int().min(0).max(600_000).default(1000),
});

/** Settings whose values are secrets: an error names them without their value. */
const SECRET = /^(AUTH_TOKENS|OTEL_EXPORTER_OTLP_(TRACES_)?HEADERS|STRIPE_SECRET_KEY|WISE_API_TOKEN)$/;

export type Config = {
  port: number;
  /** Second port serving the gRPC protocol through @grpc/grpc-js; null: off. */
  grpcPort: number | null;
  host: string;
  databaseUrl: string | undefined;
  /** Where migrations run (they hold a session advisory lock); undefined: databaseUrl. */
  databaseMigrationsUrl: string | undefined;
  /**
   * Where the event feed LISTENs for other replicas' changes: "off" (poll
   * only, as behind a transaction pooler), a URI, or undefined: the database's own.
   */
  databaseListenUrl: string | undefined;
  /** A hot standby for plain reads (GetX, ListX, earnings, statistics); undefined: databaseUrl. */
  databaseReadUrl: string | undefined;
  databasePoolSize: number;
  /** Connections kept for CreateProgram and UpdateProgram; 0: they share the pool. */
  databaseOperatorPoolSize: number;
  /** Hot statements as named prepared statements (off behind PgBouncer < 1.21 in transaction pooling). */
  databasePreparedStatements: boolean;
  statementTimeoutMs: number;
  embeddedPostgresDir: string;
  embeddedPostgresPort: number;
  logLevel: LogLevel;
  shutdownGraceMs: number;
  metricsPort: number;
  metricsHost: string;
  authTokens: TokenEntry[];
  authOpenHealth: boolean;
  tls: { cert: Buffer; key: Buffer; clientCa?: Buffer } | undefined;
  maxRequestBytes: number;
  maxConcurrentStreams: number;
  maxHeaderBytes: number;
  maxCallsInFlight: number;
  maxDeadlineMs: number;
  /** How many days before the call a conversion's occurred_at may lie (0: none). */
  maxBackdateDays: number;
  /** Events older than this many days are pruned. */
  eventRetentionDays: number;
  /** How often this replica folds new events into the statistics; 0: never (another replica does). */
  statsFoldIntervalMs: number;
  /** Where and how spans are exported; null: tracing is off (no endpoint, or OTEL_SDK_DISABLED). */
  tracing: TracingSettings | null;
  /** Stripe and Wise credentials and endpoints; a provider without credentials is null (not configured). */
  payoutProviders: PayoutProviderSettings;
  /** How often this replica sends due payouts; 0: never (other replicas do). */
  payoutWorkerIntervalMs: number;
};

/** Thrown with one line naming the variable and what is wrong with it. */
export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? "environment");
    const shown = SECRET.test(name) ? "" : `=${JSON.stringify(env[name] ?? "")}`;
    throw new ConfigError(`invalid configuration: ${name}${shown}: ${issue?.message}`);
  }
  const c = parsed.data;
  return {
    grpcPort: c.GRPC_PORT === "off" ? null : c.GRPC_PORT,
    metricsPort: c.METRICS_PORT,
    metricsHost: c.METRICS_HOST,
    authTokens: c.AUTH_TOKENS,
    authOpenHealth: c.AUTH_OPEN_HEALTH === "true",
    tls: loadTls(c.TLS_CERT_FILE, c.TLS_KEY_FILE, c.TLS_CLIENT_CA_FILE),
    maxRequestBytes: c.MAX_REQUEST_BYTES,
    maxConcurrentStreams: c.MAX_CONCURRENT_STREAMS,
    maxHeaderBytes: c.MAX_HEADER_BYTES,
    maxCallsInFlight: c.MAX_CALLS_IN_FLIGHT,
    maxDeadlineMs: c.MAX_DEADLINE_MS,
    maxBackdateDays: c.MAX_BACKDATE_DAYS,
    eventRetentionDays: c.EVENT_RETENTION_DAYS,
    statsFoldIntervalMs: c.STATS_FOLD_INTERVAL_MS,
    databaseListenUrl: c.DATABASE_LISTEN_URL,
    databaseReadUrl: c.DATABASE_READ_URL,
    port: c.PORT,
    host: c.HOST,
    databaseUrl: c.DATABASE_URL,
    databaseMigrationsUrl: c.DATABASE_MIGRATIONS_URL,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    databaseOperatorPoolSize: c.DATABASE_OPERATOR_POOL_SIZE,
    databasePreparedStatements: c.DATABASE_PREPARED_STATEMENTS === "true",
    statementTimeoutMs: c.DATABASE_STATEMENT_TIMEOUT_MS,
    embeddedPostgresDir: c.EMBEDDED_POSTGRES_DIR,
    embeddedPostgresPort: c.EMBEDDED_POSTGRES_PORT,
    logLevel: c.LOG_LEVEL,
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    tracing: tracingSettings(c),
    payoutProviders: payoutProviderSettings(c),
    payoutWorkerIntervalMs: c.PAYOUT_WORKER_INTERVAL_MS,
  };
}

/** Stripe needs its key; Wise needs its token and the profile that pays, both or neither. */
function payoutProviderSettings(c: z.infer<typeof configSchema>): PayoutProviderSettings {
  if ((c.WISE_API_TOKEN === undefined) !== (c.WISE_PROFILE_ID === undefined)) {
    throw new ConfigError(
      c.WISE_API_TOKEN === undefined
        ? "invalid configuration: WISE_PROFILE_ID needs WISE_API_TOKEN"
        : "invalid configuration: WISE_API_TOKEN needs WISE_PROFILE_ID",
    );
  }
  return {
    stripe: c.STRIPE_SECRET_KEY === undefined ? null : { secretKey: c.STRIPE_SECRET_KEY, apiUrl: c.STRIPE_API_URL },
    wise:
      c.WISE_API_TOKEN === undefined || c.WISE_PROFILE_ID === undefined
        ? null
        : { apiToken: c.WISE_API_TOKEN, profileId: c.WISE_PROFILE_ID, apiUrl: c.WISE_API_URL },
    timeoutMs: c.PAYOUT_PROVIDER_TIMEOUT_MS,
  };
}

/**
 * OpenTelemetry's standard variables: the traces endpoint as given, or the
 * base endpoint with /v1/traces; with neither (or OTEL_SDK_DISABLED=true),
 * tracing is off.
 */
function tracingSettings(c: z.infer<typeof configSchema>): TracingSettings | null {
  const base = c.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base === undefined ? undefined : `${base.replace(/\/+$/, "")}/v1/traces`);
  if (c.OTEL_SDK_DISABLED || url === undefined) return null;
  return {
    url,
    headers: { ...c.OTEL_EXPORTER_OTLP_HEADERS, ...c.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
    serviceName: c.OTEL_SERVICE_NAME,
    sampler: c.OTEL_TRACES_SAMPLER,
    samplerRatio: c.OTEL_TRACES_SAMPLER_ARG,
  };
}

function readSetting(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(`invalid configuration: ${name}=${JSON.stringify(path)}: cannot read it (${(error as NodeJS.ErrnoException).code})`);
  }
}

function loadTls(certFile?: string, keyFile?: string, clientCaFile?: string): Config["tls"] {
  if (certFile === undefined && keyFile === undefined) {
    if (clientCaFile !== undefined) throw new ConfigError("invalid configuration: TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    return undefined;
  }
  if (certFile === undefined) throw new ConfigError("invalid configuration: TLS_CERT_FILE is required with TLS_KEY_FILE");
  if (keyFile === undefined) throw new ConfigError("invalid configuration: TLS_KEY_FILE is required with TLS_CERT_FILE");
  return {
    cert: readSetting("TLS_CERT_FILE", certFile),
    key: readSetting("TLS_KEY_FILE", keyFile),
    clientCa: clientCaFile === undefined ? undefined : readSetting("TLS_CLIENT_CA_FILE", clientCaFile),
  };
}
