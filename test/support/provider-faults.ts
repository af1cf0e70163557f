import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Faults a fake provider (fake-stripe.ts, fake-wise.ts) injects into one
 * request each. "After" faults let the request do its work first, so the
 * client cannot know whether it happened:
 * - `error-after`: the work is done, then a 500 is answered;
 * - `hang`: no answer at all, ever (the client's timeout fires), with the work done or not;
 * - `reset`: the answer's headers and half its body, then the connection is reset.
 * `respond` answers instead of doing the work (a 400, a 402, a 429 with Retry-After).
 */
export type Fault =
  | { kind: "error-after" }
  | { kind: "hang"; afterWork: boolean }
  | { kind: "reset" }
  | { kind: "respond"; status: number; body: unknown; headers?: Record<string, string> };

export type Answer = { status: number; body: unknown; headers?: Record<string, string> };

type Rule = { method: string; path: RegExp; fault: Fault };

/** Faults waiting for a request; each is used once, by the first request that matches. */
export class FaultPlan {
  #rules: Rule[] = [];

  inject(method: string, path: RegExp, fault: Fault): void {
    this.#rules.push({ method, path, fault });
  }

  take(method: string, path: string): Fault | undefined {
    const at = this.#rules.findIndex((rule) => rule.method === method && rule.path.test(path));
    if (at < 0) return undefined;
    return this.#rules.splice(at, 1)[0]!.fault;
  }
}

export function send(res: http.ServerResponse, answer: Answer): void {
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...answer.headers });
  res.end(text);
}

/** The status line, the headers and half of the body; then the TCP connection is reset. */
export function resetMidBody(res: http.ServerResponse, answer: Answer): void {
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...answer.headers });
  res.write(text.slice(0, Math.floor(text.length / 2)), () => {
    setTimeout(() => res.socket?.resetAndDestroy(), 20);
  });
}

export type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

export type Listening = { url: string; close(): Promise<void> };

/** An HTTP server on 127.0.0.1 and a free port; close() also drops hanging requests. */
export async function listen(handler: Handler): Promise<Listening> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => handler(req, Buffer.concat(chunks).toString("utf8"), res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
