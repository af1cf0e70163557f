import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { type DatabaseTransactionConnection, sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createProgram } from "../support/fixtures.ts";
import { callError, startTestServer, type TestServer } from "../support/server.ts";

describe("deadlines", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ server: { limits: { maxDeadlineMs: 1500 } } });
  });
  afterAll(async () => {
    await t?.close();
  });

  /** A code whose row this test holds locked, so UpdateCode on it waits: a deliberately slow query. */
  async function withLockedCode<T>(run: (code: string, tx: DatabaseTransactionConnection) => Promise<T>): Promise<T> {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "slow" });
    return t.db.transaction(async (tx) => {
      await tx.query(sql.type(z.object({}))`SELECT 1 FROM referral_codes WHERE code = ${code!.code} FOR UPDATE`);
      return run(code!.code, tx);
    });
  }

  /** UpdateCode statements still running in PostgreSQL. */
  const leftoverQueries = (db: DatabaseTransactionConnection) =>
    db.oneFirst(sql.type(z.object({ n: z.number() }))`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE state = 'active' AND query LIKE '%UPDATE referral_codes SET%' AND pid <> pg_backend_pid()
    `);

  it("a 200 ms deadline on a slow query: DEADLINE_EXCEEDED within 300 ms, and no query left a second later", async () => {
    const { error, elapsed } = await withLockedCode(async (code, tx) => {
      const started = Date.now();
      const error = await callError(
        t.grpc.updateCode({ code: { code, metadata: { a: "b" } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) }, { timeoutMs: 200 }),
      );
      const result = { error, elapsed: Date.now() - started };
      // Still holding the lock: the statement must have been ended by its timeout.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(await leftoverQueries(tx)).toBe(0);
      return result;
    });
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(elapsed).toBeLessThan(300);
  });

  it("a call without a deadline gets the server's maximum", async () => {
    const { error, elapsed } = await withLockedCode(async (code) => {
      const started = Date.now();
      const error = await callError(
        t.grpc.updateCode({ code: { code, metadata: { a: "b" } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) }),
      );
      return { error, elapsed: Date.now() - started };
    });
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(3000);
  });

  it("a short deadline leaves nothing on the connection that cuts later calls", async () => {
    const single = await startTestServer({ poolSize: 1, server: { limits: { maxDeadlineMs: 60_000 } } });
    try {
      const program = await createProgram(single);
      const { code } = await single.grpc.createCode({ programKey: program.programKey, userId: "reset" });
      await single.grpc.getProgram({ programKey: program.programKey }, { timeoutMs: 300 });
      // The same (only) connection now serves a call that waits 800 ms on a lock.
      const { waiting } = await t.db.transaction(async (tx) => {
        await tx.query(sql.type(z.object({}))`SELECT 1 FROM referral_codes WHERE code = ${code!.code} FOR UPDATE`);
        const waiting = single.grpc.updateCode({
          code: { code: code!.code, metadata: { after: "reset" } },
          updateMask: create(FieldMaskSchema, { paths: ["metadata"] }),
        });
        await new Promise((resolve) => setTimeout(resolve, 800));
        return { waiting };
      });
      await waiting;
      expect((await single.grpc.getCode({ code: code!.code })).code?.metadata).toEqual({ after: "reset" });
    } finally {
      await single.close();
    }
  });

  it("waiting for a pool connection counts against the deadline", async () => {
    const small = await startTestServer({ poolSize: 1 });
    try {
      const program = await createProgram(small);
      const { code } = await small.grpc.createCode({ programKey: program.programKey, userId: "pool" });
      // The only connection is busy with a call blocked on a lock held here.
      await t.db.transaction(async (tx) => {
        await tx.query(sql.type(z.object({}))`SELECT 1 FROM referral_codes WHERE code = ${code!.code} FOR UPDATE`);
        const blocked = small.grpc.updateCode(
          { code: { code: code!.code, metadata: { a: "b" } }, updateMask: create(FieldMaskSchema, { paths: ["metadata"] }) },
          { timeoutMs: 2000 },
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
        const started = Date.now();
        const queued = await callError(small.grpc.getProgram({ programKey: program.programKey }, { timeoutMs: 200 }));
        expect(queued.code).toBe(Code.DeadlineExceeded);
        expect(Date.now() - started).toBeLessThan(300);
        await blocked.catch(() => undefined);
      });
    } finally {
      await small.close();
    }
  });
});
