import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Frames one protobuf message as a gRPC request body (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

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
    "-H", "content-type: application/grpc",
    "-H", "te: trailers",
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
