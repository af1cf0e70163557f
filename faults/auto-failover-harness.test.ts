import { performance } from "node:perf_hooks";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FailoverNode, type Formation, FAILOVER_SETTINGS, havePgAutoFailover, PG_AUTOCTL, startFailoverFormation } from "./auto-failover.ts";

/**
 * The pg_auto_failover harness itself, with plain `pg` clients: a writer
 * inserts rows one at a time (autocommit) while the primary's machine dies;
 * every row the old primary acknowledged must be on the promoted standby.
 * Then the old primary rejoins as standby and the same happens the other way.
 */
const found = await havePgAutoFailover();
if (!found) {
  console.log(
    `\n!!! SKIPPING the pg_auto_failover harness test: no ${PG_AUTOCTL} with PostgreSQL 15 (apt-get install postgresql-15-auto-failover; .ci/run does) !!!\n`,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Ack = { id: number; port: number; at: number };

/**
 * Inserts ids 1, 2, ... of `round` into `acked` on whichever node takes
 * writes, one autocommit statement at a time, reconnecting after any error,
 * until `stop()` is called. Only statements that returned are acknowledged.
 */
function startWriter(nodes: FailoverNode[], connection: (node: FailoverNode) => pg.ClientConfig, round: number) {
  const acks: Ack[] = [];
  let attempted = 0;
  let stopped = false;
  const connectWritable = async (): Promise<{ client: pg.Client; port: number } | undefined> => {
    for (const node of nodes) {
      const client = new pg.Client({ ...connection(node), connectionTimeoutMillis: 1000, query_timeout: 5000 });
      client.on("error", () => undefined);
      try {
        await client.connect();
        const { rows } = await client.query<{ writable: boolean }>(
          "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable",
        );
        if (rows[0]?.writable === true) return { client, port: node.port };
      } catch {
        // down, or not yet promoted
      }
      await client.end().catch(() => undefined);
    }
    return undefined;
  };
  const done = (async () => {
    let current: { client: pg.Client; port: number } | undefined;
    let next = 1;
    while (!stopped) {
      current ??= await connectWritable();
      if (current === undefined) {
        await sleep(50);
        continue;
      }
      const id = next++;
      attempted++;
      try {
        await current.client.query("INSERT INTO acked (round, id) VALUES ($1, $2)", [round, id]);
        acks.push({ id, port: current.port, at: performance.now() });
      } catch {
        await current.client.end().catch(() => undefined);
        current = undefined;
      }
    }
    await current?.client.end().catch(() => undefined);
  })();
  return {
    acks,
    attempted: () => attempted,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>) {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function idsOn(formation: Formation, node: FailoverNode, round: number): Promise<Set<number>> {
  const client = new pg.Client(formation.connection(node));
  await client.connect();
  try {
    const { rows } = await client.query<{ id: number }>("SELECT id FROM acked WHERE round = $1", [round]);
    return new Set(rows.map((row) => row.id));
  } finally {
    await client.end();
  }
}

describe.skipIf(!found)("the pg_auto_failover harness", () => {
  let formation: Formation | undefined;
  const timings: string[] = [];

  beforeAll(async () => {
    const started = performance.now();
    formation = await startFailoverFormation();
    timings.push(`formation up in ${Math.round(performance.now() - started)} ms`);
  }, 90_000);

  afterAll(async () => {
    console.log(`\npg_auto_failover harness (${JSON.stringify(FAILOVER_SETTINGS)}):\n  ${timings.join("\n  ")}\n`);
    await formation?.destroy();
  });

  it("starts a monitor and two nodes with synchronous replication behind a multi-host URI", async () => {
    const primary = await formation!.primary();
    const standby = await formation!.standby();
    expect([primary.reportedState, standby.reportedState]).toEqual(["primary", "secondary"]);
    expect(formation!.url).toBe(`postgres://127.0.0.1:${primary.port},127.0.0.1:${standby.port}/referrals?target_session_attrs=read-write&sslmode=prefer`);
    const replication = await formation!.replication(primary);
    timings.push(`replication on ${primary.name}: ${JSON.stringify(replication)}`);
    expect(replication.synchronousStandbyNames).toBe(`ANY 1 (pgautofailover_standby_${standby.nodeId})`);
    expect(["on", "remote_apply"]).toContain(replication.synchronousCommit);
    expect(replication.standbys).toEqual([`pgautofailover_standby_${standby.nodeId}: quorum`]);
  });

  it("a primary SIGKILLed under autocommit inserts fails over without losing an acknowledged row, rejoins, and fails back", async () => {
    const f = formation!;
    const first = await f.primary();
    const setup = new pg.Client(f.connection(first));
    await setup.connect();
    await setup.query("CREATE TABLE acked (round int NOT NULL, id int NOT NULL, PRIMARY KEY (round, id))");
    await setup.end();

    for (const round of [1, 2]) {
      const nodes = await f.nodes();
      const writer = startWriter(nodes, f.connection, round);
      let killed: Awaited<ReturnType<Formation["killPrimary"]>>;
      try {
        await until("rows acknowledged before the kill", 10_000, () => writer.acks.length >= 200);
        killed = await f.killPrimary();
        const promoted = await f.waitForPrimary(killed.node, 30_000);
        const promotedAt = performance.now();
        await until("writes acknowledged by the new primary", 30_000, () => writer.acks.some((ack) => ack.port === promoted.port && ack.at > killed.killedAt));
        const firstWrite = writer.acks.find((ack) => ack.port === promoted.port && ack.at > killed.killedAt)!;
        await until("more writes on the new primary", 10_000, () => writer.acks.filter((ack) => ack.port === promoted.port).length >= 100);
        await writer.stop();

        const before = writer.acks.filter((ack) => ack.port === killed.node.port).length;
        const on = await idsOn(f, promoted, round);
        const lost = writer.acks.filter((ack) => !on.has(ack.id)).map((ack) => ack.id);
        timings.push(
          `round ${round}: killed ${killed.node.name}; monitor reported ${promoted.name} as writable primary after ` +
            `${Math.round(promotedAt - killed.killedAt)} ms; first acknowledged insert on it after ` +
            `${Math.round(firstWrite.at - killed.killedAt)} ms (${before} rows acknowledged before the kill, ` +
            `${writer.acks.length} in all of ${writer.attempted()} attempted)`,
        );
        expect(lost, `acknowledged rows missing on ${promoted.name}`).toEqual([]);

        const rejoinStarted = performance.now();
        await f.rejoin(killed.node);
        timings.push(`round ${round}: ${killed.node.name} rejoined as synchronous secondary in ${Math.round(performance.now() - rejoinStarted)} ms`);
        expect((await f.primary()).name).toBe(promoted.name);
        expect((await f.standby()).name).toBe(killed.node.name);
        // The rewound standby replays the same rows.
        const standby = await f.standby();
        await until("the rejoined standby to replay every acknowledged row", 10_000, async () => {
          const ids = await idsOn(f, standby, round);
          return writer.acks.every((ack) => ids.has(ack.id));
        });
      } catch (error) {
        await writer.stop();
        throw new Error(`${(error as Error).message}\n${await f.diagnostics()}`, { cause: error });
      }
    }
  }, 150_000);
});
