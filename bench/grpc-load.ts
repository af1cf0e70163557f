/**
 * bench/grpc-load.c, a C unary gRPC load generator that, unlike h2load, sends
 * a different request on every call (TrackReferral needs distinct referred
 * users and transaction ids), at a fraction of a Node client's CPU per call;
 * and, in its open loop, calls evenly spaced in time (h2load's --rps sends
 * them in bursts of ~20 every ~10 ms, which inflates the latency it reports).
 */
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { TrackReferralRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { grpcFrame } from "./h2load.ts";

const run = promisify(execFile);
const source = join(import.meta.dirname, "grpc-load.c");
let built: Promise<string | null> | undefined;

/**
 * Compiles bench/grpc-load.c (once per process, into a temporary directory)
 * and returns the binary's path; null if it cannot be built. Where apt-get
 * exists, Debian's libnghttp2-dev (its header) and nghttp2-client (h2load,
 * which the benches use too) are installed first if either is missing.
 */
export function buildGrpcLoad(): Promise<string | null> {
  built ??= (async () => {
    try {
      const missing = !existsSync("/usr/include/nghttp2/nghttp2.h") || !(await succeeds("sh", ["-c", "command -v h2load"]));
      if (missing && (await succeeds("sh", ["-c", "command -v apt-get"]))) {
        await succeeds("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnghttp2-dev nghttp2-client"]);
      }
      const directory = await mkdtemp(join(tmpdir(), "grpc-load-"));
      process.once("exit", () => rmSync(directory, { recursive: true, force: true }));
      const binary = join(directory, "grpc-load");
      await run("cc", ["-O2", "-o", binary, source, "-lnghttp2"]);
      return binary;
    } catch {
      return null;
    }
  })();
  return built;
}

async function succeeds(command: string, args: string[]) {
  try {
    await run(command, args, { maxBuffer: 16 * 1024 * 1024 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Unary gRPC calls per second from grpc-load over `connections` × `streams`
 * for `seconds`, the calls sending `frames` (gRPC-framed requests) in turn,
 * each once. Any failed call, or running out of frames, fails the measurement.
 */
export async function grpcLoadCallsPerSecond(
  binary: string,
  address: string,
  path: string,
  frames: Uint8Array[],
  options: { seconds: number; connections: number; streams: number },
): Promise<number> {
  const stdout = await runGrpcLoad(binary, address, path, frames, [options.connections, options.streams, options.seconds]);
  const result = JSON.parse(stdout) as { calls: number; failed: number; seconds: number; callsPerSecond: number; framesExhausted: boolean };
  if (result.failed !== 0) throw new Error(`grpc-load saw failed calls: ${stdout}`);
  if (result.framesExhausted) throw new Error(`grpc-load ran out of frames (give it more): ${stdout}`);
  return result.callsPerSecond;
}

/**
 * Latency at a fixed rate from grpc-load's open loop: `rate` calls per second,
 * evenly spaced, for `seconds`, round-robin over `connections`, each of which
 * may have at most `streams` in flight; the calls send `frames` in turn,
 * cyclically (one frame for a request that can be repeated). A call's latency
 * runs from the time it was due to its end; percentiles and max in ms, and
 * the calls that succeeded per second. Any failed call fails the measurement.
 * A call due on a connection that was full (saturated: the server fell
 * `connections` × `streams` calls behind) was never sent, so its latency is
 * unknown but longer than the backlog: the round's percentiles are then
 * Infinity (printed as "saturated", null in JSON) rather than figures that
 * leave out the slowest calls.
 */
export async function grpcLoadLatency(
  binary: string,
  address: string,
  path: string,
  frames: Uint8Array[],
  options: { seconds: number; rate: number; connections: number; streams: number },
) {
  const stdout = await runGrpcLoad(binary, address, path, frames, [options.connections, options.streams, options.seconds, options.rate]);
  const result = JSON.parse(stdout) as {
    calls: number; failed: number; saturated: number; seconds: number; rate: number;
    p50: number; p90: number; p99: number; p999: number; max: number;
  };
  if (result.failed !== 0) throw new Error(`grpc-load saw failed calls: ${stdout}`);
  const { calls, failed, saturated } = result;
  const { p50, p90, p99, p999, max } = saturated === 0 ? result : { p50: Infinity, p90: Infinity, p99: Infinity, p999: Infinity, max: Infinity };
  return { p50, p90, p99, p999, max, calls, failed, saturated, achievedRate: result.rate };
}

/** Runs grpc-load against `address` (host:port) with `frames` in a temporary file; its stdout. */
async function runGrpcLoad(binary: string, address: string, path: string, frames: Uint8Array[], rest: number[]) {
  const directory = await mkdtemp(join(tmpdir(), "grpc-load-frames-"));
  try {
    const file = join(directory, "frames");
    await writeFile(file, Buffer.concat(frames));
    const separator = address.lastIndexOf(":");
    const { stdout } = await run(binary, [
      address.slice(0, separator).replace(/^\[(.*)\]$/, "$1"),
      address.slice(separator + 1),
      path,
      file,
      ...rest.map(String),
    ]);
    return stdout;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/**
 * TrackReferral requests for a closed loop of `seconds`: each a first
 * conversion of a referred user no other measurement sends (ids made from
 * `id`), spread over `codes`, for 1,000 minor units. Enough of them for
 * ~8,000 calls/s, since grpc-load sends each once.
 */
export function conversionFrames(codes: readonly string[], id: string, seconds: number): Uint8Array[] {
  return Array.from({ length: Math.max(2000, seconds * 8000) }, (_, i) =>
    grpcFrame(
      toBinary(
        TrackReferralRequestSchema,
        create(TrackReferralRequestSchema, {
          code: codes[i % codes.length]!,
          referredUserId: `${id}-user-${i}`,
          transactionId: `${id}-txn-${i}`,
          transactionAmountMinor: 1000n,
        }),
      ),
    ),
  );
}
