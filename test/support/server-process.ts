import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ReferralCodeService } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import { freePort } from "./database.ts";

export type ServerProcess = {
  child: ChildProcess;
  port: number;
  /** The @grpc/grpc-js port. */
  grpcPort: number;
  /** The /metrics and /readyz port. */
  metricsPort: number;
  grpc: Client<typeof ReferralCodeService>;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
};

/** `node src/main.ts` as its own process on a free port, over `databaseUrl` (empty: embedded PostgreSQL). */
export async function spawnServer(databaseUrl: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ["src/main.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: "127.0.0.1", METRICS_PORT: "0", GRPC_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const { grpc_port: grpcPort, metrics_port: metricsPort } = await new Promise<{ grpc_port: number; metrics_port: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 60_000);
    child.once("exit", (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.includes('"message":"listening"')) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { grpc_port: number; metrics_port: number });
      }
    });
  });
  return {
    child,
    port,
    grpcPort,
    metricsPort,
    grpc: createClient(ReferralCodeService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` })),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      return code;
    },
  };
}
