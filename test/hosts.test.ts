import { Code, ConnectError } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { withinCallDeadline } from "../src/db/call-deadline.ts";
import { parseDatabaseUrl } from "../src/db/hosts.ts";
import { createDatabasePool } from "../src/db/pool.ts";
import { freePort } from "./support/database.ts";
import { createProgram } from "./support/fixtures.ts";
import { CodeStatus } from "../src/gen/referral/v1/resources_pb.js";
import { startTestServer, unique } from "./support/server.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";

describe("DATABASE_URL with several hosts, libpq style", () => {
  it("one host without target_session_attrs stays exactly as given", () => {
    const url = "postgres://u:p@db.example:6543/referrals?sslmode=require&options=-c%20x%3Dy";
    expect(parseDatabaseUrl(url)).toEqual({ uris: [url], sessionAttrs: "any" });
  });

  it("splits the hosts into one URI each, keeping user, database and parameters but target_session_attrs", () => {
    expect(parseDatabaseUrl("postgresql://app:s%40cret@10.0.0.1:5432,10.0.0.2,[::1]:6000/refs?application_name=r&target_session_attrs=read-write")).toEqual({
      uris: [
        "postgresql://app:s%40cret@10.0.0.1:5432/refs?application_name=r",
        "postgresql://app:s%40cret@10.0.0.2/refs?application_name=r",
        "postgresql://app:s%40cret@[::1]:6000/refs?application_name=r",
      ],
      sessionAttrs: "read-write",
    });
  });

  it("takes the URI pg_autoctl show uri hands out (sslmode=prefer, which node-postgres cannot fall back from, is dropped)", () => {
    expect(parseDatabaseUrl("postgres://autoctl@127.0.0.1:5501,127.0.0.1:5502/referrals?target_session_attrs=read-write&sslmode=prefer")).toEqual({
      uris: ["postgres://autoctl@127.0.0.1:5501/referrals", "postgres://autoctl@127.0.0.1:5502/referrals"],
      sessionAttrs: "read-write",
    });
  });

  it("refuses an unknown target and an empty host", () => {
    expect(() => parseDatabaseUrl("postgres://a,b/db?target_session_attrs=writable")).toThrow(/target_session_attrs must be one of/);
    expect(() => parseDatabaseUrl("postgres://a,,b/db")).toThrow(/empty/);
    expect(() => parseDatabaseUrl("mysql://a/db")).toThrow(/postgres/);
  });
});

describe("a pool over several hosts", () => {
  const target = new URL(inject("databaseUrl"));
  let first: TcpProxy;
  let second: TcpProxy;
  let downPort: number;
  /** The test database behind: a host that is down, then two proxies to it. */
  const hostsUrl = () => {
    const url = new URL(inject("databaseUrl"));
    url.port = "";
    url.hostname = "placeholder";
    return url
      .toString()
      .replace("placeholder", `127.0.0.1:${downPort},127.0.0.1:${first.port},127.0.0.1:${second.port}`)
      .concat(url.search === "" ? "?" : "&", "target_session_attrs=read-write");
  };

  beforeAll(async () => {
    const upstream = { host: target.hostname, port: Number(target.port || 5432) };
    first = await startTcpProxy(upstream);
    second = await startTcpProxy(upstream);
    downPort = await freePort();
  });
  afterAll(async () => {
    await first.close();
    await second.close();
  });

  it("opens on the first host that answers and takes writes, and follows the hosts when that one goes", async () => {
    const db = await createDatabasePool(hostsUrl(), { maxPoolSize: 2, statementTimeoutMs: 5000 });
    try {
      const writable = sql.type(z.object({ read_only: z.string() }))`SELECT current_setting('transaction_read_only') AS read_only`;
      expect(await db.oneFirst(writable)).toBe("off");
      expect(first.accepted()).toBeGreaterThan(0);
      expect(second.accepted()).toBe(0);

      first.cut();
      // The connections on the host that went fail; the next ones open on the host after it.
      let answered = false;
      for (let attempt = 0; attempt < 5 && !answered; attempt++) {
        answered = await db.oneFirst(writable).then(
          () => true,
          () => false,
        );
      }
      expect(answered).toBe(true);
      expect(second.accepted()).toBeGreaterThan(0);
    } finally {
      first.restore();
      await db.end();
    }
  });

  it("cancels a query past its deadline on the host that runs it", async () => {
    const db = await createDatabasePool(hostsUrl(), { maxPoolSize: 1, statementTimeoutMs: 30_000 });
    const marker = unique("sleep");
    try {
      const started = Date.now();
      const sleeping = withinCallDeadline(Date.now() + 300, () =>
        db.query(sql.type(z.object({}))`SELECT pg_sleep(20), ${marker}::text AS marker`),
      );
      await expect(sleeping).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(5000);
      const running = await db.oneFirst(
        sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' AND state = 'active' AND pid <> pg_backend_pid()`,
      );
      expect(running).toBe(0);
    } finally {
      await db.end();
    }
  });

  it("a service on several hosts serves, and callers see UNAVAILABLE, not INTERNAL, while no host answers", async () => {
    const t = await startTestServer({ databaseUrl: hostsUrl() });
    try {
      const { programKey } = await createProgram(t);
      first.cut();
      second.cut();
      const error = await t.grpc.getProgram({ programKey }, { timeoutMs: 3000 }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(error?.code).toBe(Code.Unavailable);
      second.restore();
      let program;
      for (let attempt = 0; attempt < 10 && program === undefined; attempt++) {
        program = await t.grpc.getProgram({ programKey }).then(
          (response) => response.program,
          () => undefined,
        );
      }
      expect(program?.programKey).toBe(programKey);
    } finally {
      first.restore();
      second.restore();
      await t.close();
    }
  });

  it("with a read pool (DATABASE_READ_URL), plain reads go to it; ValidateCode and every write stay on the primary", async () => {
    const readDb = await createDatabasePool(hostsUrl().replace("target_session_attrs=read-write", "target_session_attrs=any"), {
      maxPoolSize: 2,
      statementTimeoutMs: 5000,
    });
    const t = await startTestServer({ server: { readDb } });
    try {
      const program = await createProgram(t);
      const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: unique("referrer") });
      expect((await t.grpc.listCodes({ programKey: program.programKey, pageSize: 10 })).codes).toHaveLength(1);

      // The read pool's hosts go: reads fail UNAVAILABLE, the rest is untouched.
      first.cut();
      second.cut();
      const reads = [
        () => t.grpc.getProgram({ programKey: program.programKey }),
        () => t.grpc.listCodes({ programKey: program.programKey, pageSize: 10 }),
        () => t.grpc.getCode({ code: code!.code }),
        () => t.grpc.listReferrals({ programKey: program.programKey, pageSize: 10 }),
        () => t.grpc.getUserEarnings({ userId: code!.userId }),
        () => t.grpc.getProgramStats({ programKey: program.programKey }),
        () => t.grpc.listTopReferrers({ programKey: program.programKey, pageSize: 10 }),
        () => t.grpc.listPayouts({ pageSize: 10 }),
      ];
      for (const read of reads) {
        const error = await read().then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(error?.code).toBe(Code.Unavailable);
      }
      expect((await t.grpc.validateCode({ code: code!.code })).valid).toBe(true);
      const { referral } = await t.grpc.trackReferral({ code: code!.code, referredUserId: unique("referred"), transactionId: unique("txn") });
      expect(referral?.code).toBe(code!.code);
      await t.grpc.updateCode({ code: { code: code!.code, status: CodeStatus.SUSPENDED }, updateMask: { paths: ["status"] } });
    } finally {
      first.restore();
      second.restore();
      await t.close();
      await readDb.end();
    }
  });
});
