import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import { connect } from "node:http2";
import { grpcFrame } from "./h2load.ts";

/**
 * Calls one unary method over plain node:http2 streams (gRPC framing, no
 * compression), on `connections` HTTP/2 connections taken in turn. A load
 * generator shares the machine with what it measures: a grpc-js client spent
 * about 210 µs of CPU per call (27 % of the machine at 1,250 TrackReferral
 * calls/s, 44 % at 2,000 ValidateCode calls/s), this one a fraction of it,
 * as h2load and pgbench do for their sides. A call fails unless it ends
 * with grpc-status 0; it resolves with the response message's bytes (the
 * payload of the one gRPC frame), for the callers that read it.
 */
export function unaryCaller<I extends DescMessage, O extends DescMessage>(address: string, method: DescMethodUnary<I, O>, connections = 4) {
  const sessions = Array.from({ length: connections }, () => connect(`http://${address}`).on("error", () => {}));
  const path = `/${method.parent.typeName}/${method.name}`;
  const headers = { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" };
  let turn = 0;
  const call = (message: MessageInitShape<I>) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const stream = sessions[turn++ % sessions.length]!.request(headers);
      const chunks: Buffer[] = [];
      let status: unknown;
      let detail: unknown;
      const read = (fields: Record<string, unknown>) => {
        if (fields["grpc-status"] !== undefined) [status, detail] = [fields["grpc-status"], fields["grpc-message"]];
      };
      stream.on("response", read);
      stream.on("trailers", read);
      stream.on("error", reject);
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("close", () =>
        status === "0"
          ? resolve(Buffer.concat(chunks).subarray(5))
          : reject(new Error(`${path}: grpc-status ${String(status)} ${String(detail ?? "")}`)),
      );
      stream.end(grpcFrame(toBinary(method.input, create(method.input, message))));
    });
  return { call, close: () => sessions.forEach((session) => session.close()) };
}

/** Closed loop: `concurrency` callers calling back to back for `seconds`; calls per second. */
export async function closedLoop(seconds: number, concurrency: number, call: (i: number) => Promise<void>): Promise<number> {
  let done = 0;
  let next = 0;
  const end = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await call(next++);
        done++;
      }
    }),
  );
  return done / (Number(process.hrtime.bigint() - started) / 1e9);
}
