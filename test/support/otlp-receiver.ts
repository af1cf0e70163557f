import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** An attribute as OTLP JSON writes it. */
type OtlpAttribute = { key: string; value: { stringValue?: string; intValue?: string | number; boolValue?: boolean } };

/** A span as OTLP JSON writes it (ids in hex, kind as a number: 2 SERVER, 3 CLIENT). */
export type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpAttribute[];
  status?: { code?: number; message?: string };
};

type ExportRequest = {
  resourceSpans?: { resource?: { attributes?: OtlpAttribute[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
};

type Answer = "accept" | "reject" | "refuse" | "hang";

/** One attribute's value, as a string or number. */
export function attribute(span: OtlpSpan, key: string): string | number | boolean | undefined {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  if (value === undefined) return undefined;
  if (value.intValue !== undefined) return Number(value.intValue);
  return value.stringValue ?? value.boolValue;
}

/**
 * A local OTLP/HTTP receiver: POST /v1/traces with OTLP JSON, as a collector
 * takes it. `answer` sets what it does with the next requests: accept (200),
 * reject (400, which the exporter drops), refuse (503, which it retries), or
 * hang (never answer).
 */
export async function startOtlpReceiver() {
  const bodies: string[] = [];
  let requests = 0;
  let answer: Answer = "accept";
  const server: Server = createServer((request, response) => {
    if (request.method !== "POST" || request.url !== "/v1/traces") {
      response.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      requests++;
      if (answer === "hang") return;
      if (answer === "reject") {
        response.writeHead(400, { "content-type": "application/json" }).end("{}");
        return;
      }
      if (answer === "refuse") {
        response.writeHead(503, { "retry-after": "1" }).end();
        return;
      }
      bodies.push(Buffer.concat(chunks).toString("utf8"));
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    /** Export requests received, whatever the answer. */
    get requests() {
      return requests;
    },
    /** The bodies of accepted exports, as sent. */
    bodies,
    /** Every span accepted so far. */
    spans(): OtlpSpan[] {
      return bodies.flatMap((body) =>
        ((JSON.parse(body) as ExportRequest).resourceSpans ?? []).flatMap((r) => (r.scopeSpans ?? []).flatMap((s) => s.spans ?? [])),
      );
    },
    /** service.name of the accepted exports' resources. */
    serviceNames(): string[] {
      return bodies.flatMap((body) =>
        ((JSON.parse(body) as ExportRequest).resourceSpans ?? []).map(
          (r) => r.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "",
        ),
      );
    },
    set answer(value: Answer) {
      answer = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
