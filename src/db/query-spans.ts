import { type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { Query, Interceptor as SlonikInterceptor } from "slonik";
import { currentTracedCall } from "../platform/trace-context.ts";
import type { Tracing } from "../platform/tracing.ts";

type Statement = { operation: string; summary: string };

const KEYWORD = /^\s*(?:--[^\n]*\n\s*|\/\*[\s\S]*?\*\/\s*)*([A-Za-z]+)/;
/** The first write of a WITH statement (not FOR UPDATE, FOR NO KEY UPDATE or DO UPDATE). */
const WRITE = /(?<!(?:FOR|KEY|DO)\s+)\b(INSERT|UPDATE|DELETE|MERGE)\b/i;
const NAME = String.raw`((?:"[^"]+"|[A-Za-z_][\w$]*)(?:\.(?:"[^"]+"|[A-Za-z_][\w$]*))?)`;
/**
 * The first table a statement names: after INTO or UPDATE, or after FROM or
 * JOIN unless it is a function (`unnest(…)`), a column (`p.id`), or the FROM
 * of `extract(epoch FROM x)` or `IS DISTINCT FROM`.
 */
const TABLE = new RegExp(
  String.raw`\b(?:INTO|UPDATE)\s+${NAME}|(?<!\(\s*\w+\s+|DISTINCT\s+)\b(?:FROM|JOIN)\s+${NAME}\b(?!\s*\(|\.)`,
  "i",
);
/** Summaries are kept per statement text; the service has a few dozen. */
const MAX_SUMMARIES = 1000;

/**
 * "SELECT referral_codes": the statement's operation (for a WITH, its first
 * write, if any) and the first table it names (after that write), as OpenTelemetry's
 * db.query.summary has them. Read from the text alone, which holds
 * placeholders, never values.
 */
function summarize(text: string): Statement {
  let operation = (KEYWORD.exec(text)?.[1] ?? "").toUpperCase();
  let from = 0;
  if (operation === "WITH") {
    const write = WRITE.exec(text);
    operation = write === null ? "SELECT" : write[1]!.toUpperCase();
    from = write?.index ?? 0;
  }
  const found = TABLE.exec(from === 0 ? text : text.slice(from));
  const table = found?.[1] ?? found?.[2];
  return { operation, summary: table === undefined ? operation : `${operation} ${table}` };
}

/**
 * A CLIENT span for every statement a traced call runs, child of the call's
 * span: named by the prepared statement's name where it has one
 * (`record_conversion`), else by its summary (`SELECT referral_codes`), with
 * OpenTelemetry's database attributes. db.query.text is the statement as
 * sent, with `$1` placeholders: parameter values never reach a span.
 * Statements outside any call (health probes, pollers, pruning) get none.
 * Install it last, so that no later hook can stop a started span from ending.
 */
export function querySpanInterceptor(tracing: Tracing): SlonikInterceptor {
  const open = new Map<string, Span>();
  const summaries = new Map<string, Statement>();
  const describe = (query: Query): Statement => {
    let statement = summaries.get(query.sql);
    if (statement === undefined) {
      if (summaries.size >= MAX_SUMMARIES) summaries.clear();
      summaries.set(query.sql, (statement = summarize(query.sql)));
    }
    return statement;
  };
  const finish = (queryId: string, rows: number) => {
    const span = open.get(queryId);
    if (span === undefined) return null;
    open.delete(queryId);
    span.setAttribute("db.response.returned_rows", rows);
    span.end();
    return null;
  };
  return {
    name: "query-spans",
    beforeQueryExecution: (context, query) => {
      const parent = currentTracedCall();
      if (parent === undefined) return null;
      const { operation, summary } = describe(query);
      // The name given to sql.prepared, also when the pool sends it unnamed.
      const name = context.originalQuery.name ?? query.name;
      const span = tracing.tracer.startSpan(
        name ?? summary,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "db.query.summary": summary,
            "db.query.text": query.sql,
          },
        },
        parent,
      );
      open.set(context.queryId, span);
      return null;
    },
    afterQueryExecution: (context, _query, result) => finish(context.queryId, result.rowCount),
    // The statement ran; the rows were not what the caller expected (`one` found none, say).
    dataIntegrityError: (context, _query, _error, result) => finish(context.queryId, result.rowCount),
    queryExecutionError: (context, _query, error) => {
      const span = open.get(context.queryId);
      if (span === undefined) return null;
      open.delete(context.queryId);
      const sqlState = sqlStateOf(error);
      if (sqlState !== undefined) span.setAttribute("db.response.status_code", sqlState);
      span.setAttribute("error.type", sqlState ?? error.name);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.name });
      span.end();
      return null;
    },
  };
}

/** PostgreSQL's SQLSTATE of a failed statement (Slonik keeps the driver's error as its cause). */
function sqlStateOf(error: Error): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
