import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Frames one protobuf message as a gRPC request body (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

const grpcHeaders = ["-H", "content-type: application/grpc", "-H", "te: trailers"];

/**
 * Unary gRPC calls per second from h2load (Debian's nghttp2-client) over
 * `connections` × `streams` for `seconds`, all with the body in `bodyFile`.
 * Failed requests fail the measurement, unless they are at most
 * `toleratedFailures` of them (a share), which are then reported on stderr.
 */
export async function h2loadCallsPerSecond(
  url: string,
  bodyFile: string,
  options: { seconds: number; connections: number; streams: number; toleratedFailures?: number },
) {
  const { stdout } = await run("h2load", [
    "-D", String(options.seconds),
    "-c", String(options.connections),
    "-m", String(options.streams),
    "-t", "1",
    ...grpcHeaders,
    "-d", bodyFile,
    url,
  ], { maxBuffer: 16 * 1024 * 1024 });
  const rate = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout);
  const failed = /requests: (\d+) total, .* (\d+) failed, (\d+) errored/.exec(stdout);
  if (!rate) throw new Error(`unexpected h2load output:\n${stdout}`);
  if (failed && (failed[2] !== "0" || failed[3] !== "0")) {
    const share = Number(failed[2]) / Number(failed[1]);
    if (!(share <= (options.toleratedFailures ?? 0))) throw new Error(`h2load saw failures:\n${stdout}`);
    process.stderr.write(`h2load: ${failed[2]} of ${failed[1]} requests failed (${failed[3]} errored), within the tolerated share\n`);
  }
  return Number(rate[1]);
}

/**
 * Latency at a fixed rate: h2load sends `rate` calls per second for `seconds`
 * over `connections` connections (`--rps`, each connection its share, whatever
 * the answers: an open loop as long as fewer than 256 calls per connection are
 * in flight), and logs each call's time from its request to its end; p50, p99
 * and max in ms. A load generator in C has no pauses of its own to add, as a
 * Node client's garbage collections did (~9 ms each on this machine).
 */
export async function h2loadLatency(url: string, bodyFile: string, options: { seconds: number; rate: number; connections: number }) {
  const log = path.join(tmpdir(), `h2load-latency-${process.pid}-${Date.now()}.log`);
  try {
    const { stdout } = await run("h2load", [
      "-D", String(options.seconds),
      "-c", String(options.connections),
      "-m", "256",
      "--rps", String(options.rate / options.connections),
      "-t", "1",
      ...grpcHeaders,
      "-d", bodyFile,
      `--log-file=${log}`,
      url,
    ], { maxBuffer: 16 * 1024 * 1024 });
    const failed = /requests: (\d+) total, .* (\d+) failed, (\d+) errored/.exec(stdout);
    // Each line: start time (µs since the epoch), HTTP status, µs to the end of the response.
    const lines = readFileSync(log, "utf8").trim().split("\n").filter(Boolean);
    const ms = lines.map((line) => Number(line.split("\t")[2]) / 1000).sort((a, b) => a - b);
    const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] ?? Number.NaN;
    return {
      p50: at(0.5),
      p99: at(0.99),
      max: ms.at(-1) ?? Number.NaN,
      calls: ms.length,
      failures: failed ? Number(failed[2]) + Number(failed[3]) : Number.NaN,
      achievedRate: ms.length / options.seconds,
    };
  } finally {
    rmSync(log, { force: true });
  }
}
