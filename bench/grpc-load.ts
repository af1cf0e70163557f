/**
 * bench/grpc-load.c, a C unary gRPC load generator that, unlike h2load, sends
 * a different request on every call (TrackReferral needs distinct referred
 * users and transaction ids), at a fraction of a Node client's CPU per call.
 */
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const source = join(import.meta.dirname, "grpc-load.c");
let built: Promise<string | null> | undefined;

/**
 * Compiles bench/grpc-load.c (once per process, into a temporary directory)
 * and returns the binary's path, installing libnghttp2-dev first if its header
 * is missing and apt-get exists; null if it still cannot be built.
 */
export function buildGrpcLoad(): Promise<string | null> {
  built ??= (async () => {
    try {
      if (!existsSync("/usr/include/nghttp2/nghttp2.h") && (await succeeds("sh", ["-c", "command -v apt-get"]))) {
        await succeeds("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnghttp2-dev"]);
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
      String(options.connections),
      String(options.streams),
      String(options.seconds),
    ]);
    const result = JSON.parse(stdout) as { calls: number; failed: number; seconds: number; callsPerSecond: number; framesExhausted: boolean };
    if (result.failed !== 0) throw new Error(`grpc-load saw failed calls: ${stdout}`);
    if (result.framesExhausted) throw new Error(`grpc-load ran out of frames (give it more): ${stdout}`);
    return result.callsPerSecond;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
