import {
  createPool,
  createTypeParserPreset,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
  SchemaValidationError,
} from "slonik";
import { deadlineQueryInterceptor } from "../deadline.ts";

export type PoolOptions = {
  /** Most connections this process opens. */
  maxPoolSize: number;
  /** Server-side cap on any one statement, in milliseconds. */
  statementTimeoutMs: number;
  /** More interceptors (metrics), run after the row parser. */
  interceptors?: readonly Interceptor[];
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
    { name: "timestamptz", parse: (value: string) => new Date(value) },
  ];
}

export async function createDatabasePool(connectionUri: string, options: PoolOptions): Promise<DatabasePool> {
  return createPool(connectionUri, {
    interceptors: [
      createResultParserInterceptor(),
      deadlineQueryInterceptor(options.statementTimeoutMs),
      ...(options.interceptors ?? []),
    ],
    typeParsers: typeParsers(),
    maxPoolSize: options.maxPoolSize,
    statementTimeout: options.statementTimeoutMs,
    captureStackTrace: false,
    connectionTimeout: 5_000,
    // Slonik's default runs DISCARD ALL on every release: a round trip per
    // query. The service leaves no session state behind (transactions end
    // before release; the deadline interceptor resets what it sets), so the
    // connection goes back as it is.
    resetConnection: async () => {},
  });
}
