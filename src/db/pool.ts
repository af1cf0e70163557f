import {
  createPool,
  createTypeParserPreset,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  SchemaValidationError,
} from "slonik";
import { deadlineQueryInterceptor } from "./call-deadline.ts";
import { HostSelector, mapUris, parseDatabaseUrl } from "./hosts.ts";
import { hostsDriverFactory } from "./hosts-driver.ts";

export type PoolOptions = {
  /** Most connections this process opens. */
  maxPoolSize: number;
  /** Connections opened at start and kept open while idle (default 0: opened on demand). */
  minPoolSize?: number;
  /** Server-side cap on any one statement, in milliseconds. */
  statementTimeoutMs: number;
  /** More interceptors (metrics), run after the row parser. */
  interceptors?: readonly Interceptor[];
  /**
   * Run the service's hot statements (`sql.prepared`) as named prepared
   * statements, planned once per connection (default true). Off, they are
   * sent unnamed like every other statement: for poolers that cannot keep a
   * prepared statement with its session (PgBouncer before 1.21 in transaction
   * pooling).
   */
  preparedStatements?: boolean;
};

/** Sends named statements unnamed: planned on every execution, on any connection. */
const unnamedStatements: Interceptor = {
  name: "unnamed-statements",
  transformQuery: (_context, query) => ({ sql: query.sql, values: query.values }),
};

/**
 * Validates every row of a `sql.type(schema)` query against its schema; without
 * this interceptor Slonik does not check `sql.type` at all.
 */
function createResultParserInterceptor(): Interceptor {
  return {
    name: "result-parser",
    transformRow: (context, query, row) => {
      const parser = context.resultParser;
      if (!parser) return row;
      const result = parser["~standard"].validate(row);
      if (result instanceof Promise) {
        throw new TypeError("row schemas must be synchronous");
      }
      if (result.issues) {
        throw new SchemaValidationError(query, row, result.issues);
      }
      return result.value as QueryResultRow;
    },
  };
}

/** Type parsers: int8 as bigint (money), timestamptz as Date. */
function typeParsers() {
  return [
    ...createTypeParserPreset().filter((parser) => parser.name !== "timestamptz"),
    { name: "timestamptz", parse: parseTimestamptz },
  ];
}

const TIMESTAMPTZ = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/;

/**
 * PostgreSQL's timestamptz text as a Date. `new Date(text)` would read years
 * 0001–0099 as 1901–2099; the fields are read one by one instead.
 */
function parseTimestamptz(value: string): Date {
  const m = TIMESTAMPTZ.exec(value);
  if (m === null) return new Date(value);
  const [, year, month, day, hour, minute, second, fraction = "", sign, offsetH, offsetM = "0", offsetS = "0"] = m;
  const date = new Date(0);
  date.setUTCFullYear(Number(year), Number(month) - 1, Number(day));
  date.setUTCHours(Number(hour), Number(minute), Number(second), Number(fraction.padEnd(3, "0").slice(0, 3)));
  const offsetMs = (Number(offsetH) * 3600 + Number(offsetM) * 60 + Number(offsetS)) * 1000;
  return new Date(date.getTime() - (sign === "+" ? offsetMs : -offsetMs));
}

/**
 * The connection URI with `plan_cache_mode=force_generic_plan` added to its
 * session options. PostgreSQL would otherwise keep planning the named
 * statements afresh with each call's parameters (the generic estimate of an
 * `unnest` over a parameter array looks dearer than the custom plans), paying
 * the planning they are prepared to save (docs/performance.md). Only named
 * statements are affected: unnamed ones are always planned with their values.
 */
function withGenericPlans(connectionUri: string): string {
  const url = new URL(connectionUri);
  const options = url.searchParams.get("options");
  url.searchParams.set("options", [options, "-c plan_cache_mode=force_generic_plan"].filter(Boolean).join(" "));
  return url.toString();
}

/**
 * The service's pool. `connectionUri` may name several hosts, libpq style
 * (hosts.ts): each connection then opens on the one that fits its
 * `target_session_attrs`, and follows the primary through a failover.
 */
export async function createDatabasePool(connectionUri: string, options: PoolOptions): Promise<DatabasePool> {
  const preparedStatements = options.preparedStatements !== false;
  const parsed = parseDatabaseUrl(connectionUri);
  const hosts = preparedStatements ? mapUris(parsed, withGenericPlans) : parsed;
  const selector = new HostSelector(hosts);
  return createPool(hosts.uris[0], {
    driverFactory: selector.chooses ? hostsDriverFactory(selector) : undefined,
    interceptors: [
      createResultParserInterceptor(),
      deadlineQueryInterceptor(),
      ...(preparedStatements ? [] : [unnamedStatements]),
      ...(options.interceptors ?? []),
    ],
    typeParsers: typeParsers(),
    maxPoolSize: options.maxPoolSize,
    minPoolSize: options.minPoolSize,
    statementTimeout: options.statementTimeoutMs,
    captureStackTrace: false,
    connectionTimeout: 5_000,
    // Slonik's default runs DISCARD ALL on every release: a round trip per
    // query. The service leaves no session state behind (transactions end
    // before release; the deadline interceptor sets nothing), so the
    // connection goes back as it is.
    resetConnection: async () => {},
  });
}
