import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/** A raw grpc-js channel calling one method with protobuf-es messages. */
export function unaryCaller<I extends DescMessage, O extends DescMessage>(address: string, method: DescMethodUnary<I, O>) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const path = `/${method.parent.typeName}/${method.name}`;
  const serialize = (message: MessageInitShape<I>) => Buffer.from(toBinary(method.input, create(method.input, message)));
  const call = (message: MessageInitShape<I>) =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(path, serialize, (bytes: Buffer) => bytes, message, (error) => (error ? reject(error) : resolve())),
    );
  return { call, close: () => client.close() };
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

/**
 * Open loop: calls sent at a fixed `rate` per second for `seconds`, whatever
 * the answers, in ticks of about a millisecond (no busy waiting, so the load
 * generator leaves the cores to the server); latency percentiles in ms.
 */
export async function openLoop(rate: number, seconds: number, call: () => Promise<void>) {
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let failures = 0;
  const total = Math.round(rate * seconds);
  const start = process.hrtime.bigint();
  let sent = 0;
  while (sent < total) {
    const elapsedNs = Number(process.hrtime.bigint() - start);
    const due = Math.min(total, Math.floor((elapsedNs / 1e9) * rate) + 1);
    for (; sent < due; sent++) {
      const at = process.hrtime.bigint();
      pending.push(
        call().then(
          () => void latencies.push(Number(process.hrtime.bigint() - at) / 1e6),
          () => void failures++,
        ),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  const percentile = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  const achievedRate = total / (Number(process.hrtime.bigint() - start) / 1e9);
  return { p50: percentile(0.5), p99: percentile(0.99), max: latencies.at(-1) ?? Number.NaN, failures, sent: total, achievedRate };
}
