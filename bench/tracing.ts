/**
 * npm run bench:tracing: what tracing costs. Two copies of the service on one
 * database, one without tracing (no OTLP endpoint: the default) and one
 * tracing every call (OTEL_TRACES_SAMPLER=always_on, a span per call and per
 * SQL statement) to a local OTLP/HTTP receiver that accepts everything;
 * ValidateCode (h2load) and TrackReferral (bench/grpc-load.c) on the grpc-js
 * port, rounds alternating off/on so drift cancels. See docs/performance.md.
 *
 *   BENCH_SECONDS   seconds per round (default 5)
 *   BENCH_ROUNDS    off/on rounds per call (default 3)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded PostgreSQL
 */
import { rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { ValidateCodeRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { buildGrpcLoad, conversionFrames, grpcLoadCallsPerSecond } from "./grpc-load.ts";
import { grpcFrame, h2loadCallsPerSecond } from "./h2load.ts";
import { fmt, median, seedBenchProgram, startBenchService } from "./harness.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

/** A collector that accepts every export and counts the spans in it (by their ids' key). */
async function startReceiver() {
  let spans = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      spans += Buffer.concat(chunks).toString("latin1").split('"spanId"').length - 1;
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans: () => spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function main() {
  const grpcLoad = await buildGrpcLoad();
  if (grpcLoad === null) throw new Error("bench/grpc-load.c could not be built: it needs cc and libnghttp2-dev (apt-get install libnghttp2-dev)");
  const receiver = await startReceiver();
  const off = await startBenchService(process.env.BENCH_DATABASE_URL ?? "", "referral-bench-untraced");
  const on = await startBenchService(off.databaseUrl, "referral-bench-traced", {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
    OTEL_TRACES_SAMPLER: "always_on",
  });
  const body = path.join(tmpdir(), `validate-tracing-${process.pid}.bin`);
  try {
    const { codes } = await seedBenchProgram(off.serviceUrl, 1000, off.databaseUrl);
    writeFileSync(body, grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code: codes[0]! }))));
    const validatePath = "/referral.v1.ReferralCodeService/ValidateCode";
    const trackPath = "/referral.v1.ReferralCodeService/TrackReferral";
    const rates = { validate: { off: [] as number[], on: [] as number[] }, track: { off: [] as number[], on: [] as number[] } };
    for (let r = 0; r < rounds; r++) {
      for (const [name, service] of [["off", off], ["on", on]] as const) {
        rates.validate[name].push(await h2loadCallsPerSecond(`${service.grpcUrl}${validatePath}`, body, { seconds, connections: 8, streams: 16 }));
        const frames = conversionFrames(codes, `tracing-${name}-${r}`, seconds);
        rates.track[name].push(await grpcLoadCallsPerSecond(grpcLoad, service.address, trackPath, frames, { seconds, connections: 4, streams: 8 }));
      }
    }
    for (const service of [off, on]) {
      for (const method of ["ValidateCode", "TrackReferral"]) {
        const failed = await service.failedCalls(method);
        if (failed > 0) throw new Error(`${failed} ${method} calls failed: the figures would not count`);
      }
    }
    // The last spans leave within the exporter's 5 s batching delay.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} off/on rounds of ${seconds}s (medians)`);
    for (const [label, { off: untraced, on: traced }] of [["ValidateCode ", rates.validate], ["TrackReferral", rates.track]] as const) {
      console.log(
        `${label}  tracing off ${fmt(median(untraced))} calls/s   on (every call sampled) ${fmt(median(traced))} calls/s   ratio on/off ${fmt(median(traced) / median(untraced))}   rounds off ${untraced.map(fmt).join(", ")}; on ${traced.map(fmt).join(", ")}`,
      );
    }
    const tracedCalls = [...rates.validate.on, ...rates.track.on].reduce((sum, rate) => sum + rate * seconds, 0);
    console.log(`traced calls ≈ ${fmt(tracedCalls)}; spans received by the local collector (calls and statements): ${fmt(receiver.spans())}`);
  } finally {
    rmSync(body, { force: true });
    await on.close();
    await off.close();
    await receiver.close();
  }
}

await main();
