import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { access, appendFile, chmod, chown, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../test/support/database.ts";

const run = promisify(execFile);

/** Debian's pg_auto_failover (`apt-get install postgresql-15-auto-failover`; .ci/run does it). */
const PG_AUTOCTL = process.env.PG_AUTOCTL_BIN ?? "/usr/bin/pg_autoctl";
/** Debian's PostgreSQL 15 binaries, which the package's monitor extension is built for. */
const PG_BIN = "/usr/lib/postgresql/15/bin";
const EXTENSION = "/usr/share/postgresql/15/extension/pgautofailover.control";
const DATABASE = "referrals";

/**
 * How fast the monitor declares a silent node dead and hands over, in
 * milliseconds (PostgreSQL's `pgautofailover.*` settings on the monitor).
 *
 * A node is failed over when its keeper has not reported for
 * `nodeConsideredUnhealthyTimeout` AND the monitor's own health check has
 * failed `healthCheckMaxRetries + 1` times; keepers report every second, so
 * the timeout sits at two reports. The promoted standby stays read-only for
 * `primaryDemoteTimeout` so a primary that is only cut off can demote itself
 * first (its keeper's `networkPartitionTimeout`, in seconds, is shorter).
 */
export const FAILOVER_SETTINGS = {
  healthCheckPeriod: 1000,
  healthCheckTimeout: 1000,
  healthCheckMaxRetries: 1,
  healthCheckRetryDelay: 250,
  nodeConsideredUnhealthyTimeout: 2000,
  primaryDemoteTimeout: 1500,
  startupGracePeriod: 1000,
  /** Keeper side (`pg_autoctl config set timeout.*`), in seconds. */
  networkPartitionTimeout: 1,
  postgresqlRestartFailureTimeout: 5,
  postgresqlRestartFailureMaxRetries: 2,
} as const;

/** One data node of the formation, as the monitor knows it. */
export type FailoverNode = {
  name: string;
  nodeId: number;
  host: string;
  port: number;
  dataDir: string;
  reportedState: string;
  goalState: string;
};

/** The replication settings of a running primary. */
type ReplicationSettings = {
  synchronousStandbyNames: string;
  synchronousCommit: string;
  /** `application_name: sync_state` of each standby in pg_stat_replication. */
  standbys: string[];
};

export type Formation = {
  /** The multi-host URI `pg_autoctl show uri --formation default` prints. */
  url: string;
  database: string;
  /** The monitor's database, as user autoctl_node. */
  monitorUrl: string;
  /** The temporary directory everything lives in (data dirs, logs, pg_autoctl config). */
  dir: string;
  /** The node the monitor has as primary (reported and assigned `primary` or `wait_primary`). */
  primary(): Promise<FailoverNode>;
  /** The node the monitor has as standby (any other node). */
  standby(): Promise<FailoverNode>;
  nodes(): Promise<FailoverNode[]>;
  /**
   * SIGKILL the current primary's keeper, postmaster and backends at once (one
   * process group): the machine dies, and nothing restarts PostgreSQL.
   * `killedAt` is performance.now() just before the signal.
   */
  killPrimary(): Promise<{ node: FailoverNode; killedAt: number }>;
  /**
   * Waits until the monitor reports a primary other than `exclude` and it
   * takes writes (not in recovery, not default read-only).
   */
  waitForPrimary(exclude?: FailoverNode, timeoutMs?: number): Promise<FailoverNode>;
  /** Starts `node`'s keeper again and waits for primary + secondary with synchronous replication. */
  rejoin(node: FailoverNode, timeoutMs?: number): Promise<void>;
  replication(node: FailoverNode): Promise<ReplicationSettings>;
  /** Connection settings for `pg` (which takes one host) to reach `node`'s application database. */
  connection(node: FailoverNode): pg.ClientConfig;
  /** The monitor's events and every keeper log, for a failure message. */
  diagnostics(): Promise<string>;
  destroy(): Promise<void>;
};

export async function havePgAutoFailover(): Promise<boolean> {
  try {
    await Promise.all([access(PG_AUTOCTL), access(path.join(PG_BIN, "pg_ctl")), access(EXTENSION)]);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const postgresUser = () => ({
  uid: Number(spawnSync("id", ["-u", "postgres"]).stdout.toString().trim()),
  gid: Number(spawnSync("id", ["-g", "postgres"]).stdout.toString().trim()),
});

/** Formations not yet destroyed, so an exiting test process still kills their keepers. */
const live = new Set<() => void>();
process.once("exit", () => {
  for (const kill of live) kill();
});

const PREFIX = "referral-autofailover-";
/** Set in the environment of every process a formation starts, and inherited by postgres. */
const MARKER = "REFERRAL_AUTOFAILOVER_DIR";

/**
 * SIGKILLs every process whose environment carries `dir` as MARKER: keepers,
 * their renamed helpers ("pg_autoctl: start/stop postgres"), postmasters and
 * backends, wherever they were reparented.
 */
function killProcessesOf(dir: string): void {
  const needle = Buffer.from(`${MARKER}=${dir}\0`);
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`).includes(needle)) process.kill(pid, "SIGKILL");
    } catch {
      // gone, or not ours to read
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Kills the processes of formations whose test process died without
 * destroy() (a SIGKILLed worker leaves detached keepers behind) and removes
 * their directories. Each formation's directory names its owner's pid.
 */
async function removeOrphans(): Promise<void> {
  for (const entry of await readdir(tmpdir()).catch(() => [])) {
    if (!entry.startsWith(PREFIX)) continue;
    const dir = path.join(tmpdir(), entry);
    // No owner.pid yet: a formation being created right now.
    const owner = Number(await readFile(path.join(dir, "owner.pid"), "utf8").catch(() => "0"));
    if (!(owner > 0) || alive(owner)) continue;
    killProcessesOf(dir);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * A pg_auto_failover formation on this machine: a monitor and two data nodes
 * with synchronous replication, each `pg_autoctl run` a child process group
 * of its own, as user postgres, in one temporary directory, listening on
 * 127.0.0.1 on free ports.
 */
export async function startFailoverFormation(): Promise<Formation> {
  const { uid, gid } = postgresUser();
  await removeOrphans();
  const dir = await mkdtemp(path.join(tmpdir(), PREFIX));
  await writeFile(path.join(dir, "owner.pid"), String(process.pid));
  await chown(dir, uid, gid);
  await chmod(dir, 0o700);
  // pg_autoctl keeps its configuration, state and pid files under the XDG directories.
  const env = {
    PATH: `${PG_BIN}:/usr/bin:/bin`,
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, "config"),
    XDG_DATA_HOME: path.join(dir, "share"),
    XDG_RUNTIME_DIR: path.join(dir, "run"),
    PGCONNECT_TIMEOUT: "2",
    [MARKER]: dir,
  };
  const keepers = new Map<string, ChildProcess>();
  const dataDir = (name: string) => path.join(dir, name);
  const logFile = (name: string) => path.join(dir, `${name}.log`);

  const autoctl = async (args: string[], log?: string) => {
    try {
      const { stdout } = await run(PG_AUTOCTL, args, { uid, gid, env, cwd: dir, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (error) {
      const { stderr } = error as { stderr?: string };
      if (log !== undefined) await appendFile(log, stderr ?? "").catch(() => undefined);
      throw new Error(`pg_autoctl ${args.join(" ")} failed: ${String(stderr ?? error).slice(-4000)}`, { cause: error });
    }
  };
  /** `pg_autoctl run` in a process group of its own, its output appended to <name>.log. */
  const startKeeper = async (name: string) => {
    const log = await open(logFile(name), "a");
    await log.chown(uid, gid);
    const child = spawn(PG_AUTOCTL, ["run", "--pgdata", dataDir(name)], { uid, gid, env, cwd: dir, detached: true, stdio: ["ignore", log.fd, log.fd] });
    await log.close();
    child.on("error", () => undefined);
    keepers.set(name, child);
  };
  const killKeeper = (name: string) => {
    const child = keepers.get(name);
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    keepers.delete(name);
  };
  /** Every process group we started, and any process left over from this formation (see killProcessesOf). */
  const killEverything = () => {
    for (const name of [...keepers.keys()]) killKeeper(name);
    killProcessesOf(dir);
  };
  live.add(killEverything);

  const [monitorPort, port1, port2] = [await freePort(), await freePort(), await freePort()];
  const monitorUrl = `postgres://autoctl_node@127.0.0.1:${monitorPort}/pg_auto_failover`;
  const query = async <Row extends pg.QueryResultRow>(config: pg.ClientConfig, text: string) => {
    const client = new pg.Client({ ...config, connectionTimeoutMillis: 2000 });
    client.on("error", () => undefined);
    await client.connect();
    try {
      return (await client.query<Row>(text)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  const nodes = async (): Promise<FailoverNode[]> => {
    const rows = await query<{ nodeid: string; nodename: string; nodehost: string; nodeport: number; reportedstate: string; goalstate: string }>(
      { connectionString: monitorUrl },
      "SELECT nodeid, nodename, nodehost, nodeport, reportedstate::text, goalstate::text FROM pgautofailover.node WHERE formationid = 'default' ORDER BY nodeid",
    );
    return rows.map((row) => ({
      name: row.nodename,
      nodeId: Number(row.nodeid),
      host: row.nodehost,
      port: row.nodeport,
      dataDir: dataDir(row.nodename),
      reportedState: row.reportedstate,
      goalState: row.goalstate,
    }));
  };
  const isPrimary = (node: FailoverNode) => ["primary", "wait_primary"].includes(node.goalState) && node.reportedState === node.goalState;
  const connection = (node: FailoverNode): pg.ClientConfig => ({ host: node.host, port: node.port, user: "postgres", database: DATABASE });

  const diagnostics = async () => {
    const events = await autoctl(["show", "events", "--pgdata", dataDir("monitor"), "--count", "30"]).catch((error: Error) => error.message);
    const state = await autoctl(["show", "state", "--pgdata", dataDir("monitor")]).catch((error: Error) => error.message);
    const logs = await Promise.all(
      ["monitor", "node1", "node2"].map(async (name) => `--- ${name}.log (tail)\n${(await readFile(logFile(name), "utf8").catch(() => "")).slice(-6000)}`),
    );
    return [state, events, ...logs].join("\n");
  };

  /** Polls `check` every 100 ms until it returns a value, or throws with the formation's diagnostics. */
  const until = async <T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> => {
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const value = await check();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      if (performance.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last error: ${String(last)})\n${await diagnostics()}`);
      }
      await sleep(100);
    }
  };

  const replication = async (node: FailoverNode): Promise<ReplicationSettings> => {
    const [row] = await query<{ names: string; commit: string; standbys: string[] }>(
      connection(node),
      "SELECT current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit, " +
        "ARRAY(SELECT application_name || ': ' || sync_state FROM pg_stat_replication ORDER BY 1) AS standbys",
    );
    return { synchronousStandbyNames: row!.names, synchronousCommit: row!.commit, standbys: row!.standbys };
  };

  /** primary + secondary as both reported and assigned, and the primary waiting on the standby's commits. */
  const waitForSynchronousPair = (timeoutMs: number) =>
    until("a primary and a synchronous secondary", timeoutMs, async () => {
      const all = await nodes();
      const primary = all.find((node) => node.reportedState === "primary" && node.goalState === "primary");
      const standby = all.find((node) => node.reportedState === "secondary" && node.goalState === "secondary");
      if (all.length !== 2 || primary === undefined || standby === undefined) return undefined;
      const settings = await replication(primary);
      const quorum = settings.standbys.some((line) => /: (sync|quorum)$/.test(line));
      return settings.synchronousStandbyNames !== "" && quorum ? primary : undefined;
    });

  const formation: Formation = {
    url: "",
    database: DATABASE,
    monitorUrl,
    dir,
    nodes,
    primary: async () => {
      const found = (await nodes()).find(isPrimary);
      if (found === undefined) throw new Error(`no primary in the formation:\n${await diagnostics()}`);
      return found;
    },
    standby: async () => {
      const all = await nodes();
      const primary = all.find(isPrimary);
      const found = all.find((node) => node !== primary && node.goalState !== "primary" && node.goalState !== "wait_primary");
      if (found === undefined) throw new Error(`no standby in the formation:\n${await diagnostics()}`);
      return found;
    },
    killPrimary: async () => {
      const node = await formation.primary();
      const child = keepers.get(node.name);
      const postmaster = Number((await readFile(path.join(node.dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
      const killedAt = performance.now();
      // The keeper, its postgres controller and the postmaster with its backends share one process group.
      if (child?.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      try {
        process.kill(postmaster, "SIGKILL");
      } catch {
        // went with the group
      }
      keepers.delete(node.name);
      return { node, killedAt };
    },
    waitForPrimary: (exclude, timeoutMs = 60_000) =>
      until(`a writable primary other than ${exclude?.name ?? "(none)"}`, timeoutMs, async () => {
        const found = (await nodes()).find((node) => isPrimary(node) && node.name !== exclude?.name);
        if (found === undefined) return undefined;
        const [row] = await query<{ writable: boolean }>(
          connection(found),
          "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable",
        );
        return row?.writable === true ? found : undefined;
      }),
    rejoin: async (node, timeoutMs = 60_000) => {
      await startKeeper(node.name);
      await waitForSynchronousPair(timeoutMs);
    },
    replication,
    connection,
    diagnostics,
    destroy: async () => {
      for (const name of [...keepers.keys()]) {
        const child = keepers.get(name);
        if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(-child.pid, "SIGTERM");
          } catch {
            // gone
          }
        }
      }
      await sleep(500);
      killEverything();
      live.delete(killEverything);
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };

  try {
    const ssl = "--no-ssl";
    await autoctl(
      ["create", "monitor", "--pgdata", dataDir("monitor"), "--pgport", String(monitorPort), "--pgctl", path.join(PG_BIN, "pg_ctl")]
        .concat(["--hostname", "127.0.0.1", "--auth", "trust", ssl]),
      logFile("monitor"),
    );
    // The monitor has no --listen; its postgres is started with pg_autoctl's listen_addresses.
    await autoctl(["config", "set", "--pgdata", dataDir("monitor"), "postgresql.listen_addresses", "127.0.0.1"]);
    const s = FAILOVER_SETTINGS;
    await appendFile(
      path.join(dataDir("monitor"), "postgresql.conf"),
      [
        "",
        "# faults/auto-failover.ts: fail over within seconds",
        `pgautofailover.health_check_period = ${s.healthCheckPeriod}`,
        `pgautofailover.health_check_timeout = ${s.healthCheckTimeout}`,
        `pgautofailover.health_check_max_retries = ${s.healthCheckMaxRetries}`,
        `pgautofailover.health_check_retry_delay = ${s.healthCheckRetryDelay}`,
        `pgautofailover.node_considered_unhealthy_timeout = ${s.nodeConsideredUnhealthyTimeout}`,
        `pgautofailover.primary_demote_timeout = ${s.primaryDemoteTimeout}`,
        `pgautofailover.startup_grace_period = ${s.startupGracePeriod}`,
        "",
      ].join("\n"),
    );
    await startKeeper("monitor");
    await until("the monitor", 30_000, async () => (await query({ connectionString: monitorUrl }, "SELECT 1")).length === 1 || undefined);

    for (const [name, port] of [
      ["node1", port1],
      ["node2", port2],
    ] as const) {
      await autoctl(
        ["create", "postgres", "--pgdata", dataDir(name), "--pgport", String(port), "--pgctl", path.join(PG_BIN, "pg_ctl")]
          .concat(["--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", ssl, "--name", name])
          .concat(["--monitor", `${monitorUrl}?sslmode=prefer`, "--dbname", DATABASE]),
        logFile(name),
      );
      for (const [key, value] of [
        ["timeout.network_partition_timeout", s.networkPartitionTimeout],
        ["timeout.postgresql_restart_failure_timeout", s.postgresqlRestartFailureTimeout],
        ["timeout.postgresql_restart_failure_max_retries", s.postgresqlRestartFailureMaxRetries],
      ] as const) {
        await autoctl(["config", "set", "--pgdata", dataDir(name), key, String(value)]);
      }
      await startKeeper(name);
      if (name === "node1") {
        await until("node1 as single", 30_000, async () => (await nodes()).some((node) => node.reportedState === "single") || undefined);
      }
    }
    await waitForSynchronousPair(60_000);
    formation.url = (await autoctl(["show", "uri", "--pgdata", dataDir("monitor"), "--formation", "default"])).trim();
    return formation;
  } catch (error) {
    const detail = await diagnostics().catch(() => "");
    await formation.destroy();
    throw new Error(`${(error as Error).message}\n${detail}`, { cause: error });
  }
}
