import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { access, chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, listening } from "../test/support/database.ts";

/** Where Debian's package puts PgBouncer (`apt-get install pgbouncer`; .ci/run does it). */
export const PGBOUNCER = process.env.PGBOUNCER_BIN ?? "/usr/sbin/pgbouncer";

/** The settings the topology runs with (docs/scaling.md quotes them). */
export type BouncerSettings = {
  /** Server connections per database and user pair. */
  defaultPoolSize: number;
  /** Client connections PgBouncer accepts in all. */
  maxClientConn: number;
};

export type Bouncer = {
  /** postgres:// URI of the database through PgBouncer. */
  url: string;
  port: number;
  settings: BouncerSettings;
  /** PgBouncer's own log. */
  log(): Promise<string>;
  stop(): Promise<void>;
};

/**
 * PgBouncer in transaction mode in front of the PostgreSQL at `databaseUrl`,
 * on a free port, with a generated configuration in a temporary directory.
 * It runs as the `postgres` system user (PgBouncer refuses root).
 *
 * `ignore_startup_parameters`: node-postgres sends the pool's
 * statement_timeout and idle_in_transaction_session_timeout as startup
 * parameters, which PgBouncer 1.18 would refuse; it drops them instead, so
 * the server-side cap comes from the database's own setting (see
 * docs/scaling.md).
 */
export async function startPgBouncer(databaseUrl: string, settings: BouncerSettings): Promise<Bouncer> {
  const upstream = new URL(databaseUrl);
  const database = decodeURIComponent(upstream.pathname.slice(1));
  const user = decodeURIComponent(upstream.username);
  const dir = await mkdtemp(path.join(tmpdir(), "referral-pgbouncer-"));
  const port = await freePort();
  const config = [
    "[databases]",
    `${database} = host=${upstream.hostname} port=${upstream.port} dbname=${database} user=${user} password=${decodeURIComponent(upstream.password)}`,
    "",
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust",
    `auth_file = ${path.join(dir, "userlist.txt")}`,
    "pool_mode = transaction",
    `default_pool_size = ${settings.defaultPoolSize}`,
    `max_client_conn = ${settings.maxClientConn}`,
    "server_reset_query =",
    "ignore_startup_parameters = statement_timeout,idle_in_transaction_session_timeout",
    `logfile = ${path.join(dir, "pgbouncer.log")}`,
    `pidfile = ${path.join(dir, "pgbouncer.pid")}`,
    "",
  ].join("\n");
  await writeFile(path.join(dir, "pgbouncer.ini"), config);
  await writeFile(path.join(dir, "userlist.txt"), `"${user}" ""\n`);
  const uid = Number(spawnSync("id", ["-u", "postgres"]).stdout.toString().trim());
  const gid = Number(spawnSync("id", ["-g", "postgres"]).stdout.toString().trim());
  for (const file of ["", "pgbouncer.ini", "userlist.txt"]) await chown(path.join(dir, file), uid, gid);

  const child: ChildProcess = spawn(PGBOUNCER, [path.join(dir, "pgbouncer.ini")], { uid, gid, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const log = () => readFile(path.join(dir, "pgbouncer.log"), "utf8").catch(() => "");
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${stderr}${await log()}`);
    if (await listening(port)) break;
    if (attempt > 100) throw new Error(`pgbouncer did not listen on ${port}: ${stderr}${await log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = new URL(databaseUrl);
  url.port = String(port);
  return {
    url: url.toString(),
    port,
    settings,
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whether the PgBouncer binary is there. */
export async function havePgBouncer(): Promise<boolean> {
  return access(PGBOUNCER).then(
    () => true,
    () => false,
  );
}
