import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CROCKFORD_ALPHABET } from "../src/codes/generator.ts";
import { codeCount, createProgram } from "./support/fixtures.ts";
import { outcomes } from "./support/outcomes.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

let t: TestServer;
let other: TestServer;
beforeAll(async () => {
  // Two servers with their own pools: the races cross processes' worth of connections.
  t = await startTestServer({ poolSize: 20 });
  other = await startTestServer({ poolSize: 20 });
});
afterAll(async () => {
  await t?.close();
  await other?.close();
});

describe("CreateCode under concurrency", () => {
  it("200 concurrent calls for one user against max_codes_per_user = 5 yield exactly 5 codes", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 5 });
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? t : other).grpc.createCode({ programKey: program.programKey, userId: "racer" })),
    );
    expect(outcomes(results)).toEqual({ ok: 5, CODE_LIMIT_REACHED: 195 });
    expect(await codeCount(t, program.programKey, "racer")).toBe(5);
  });

  it("100 concurrent calls with one request_id yield one code, returned to every caller", async () => {
    const program = await createProgram(t);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 === 0 ? t : other).grpc.createCode({ programKey: program.programKey, userId: "once", requestId: "the-request" }),
      ),
    );
    expect(new Set(results.map((r) => r.code?.code)).size).toBe(1);
    expect(results.filter((r) => !r.existing)).toHaveLength(1);
    expect(await codeCount(t, program.programKey, "once")).toBe(1);
  });

  it("100 concurrent reuse_existing calls for a user with no code yield one code", async () => {
    const program = await createProgram(t);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 === 0 ? t : other).grpc.createCode({ programKey: program.programKey, userId: "mine", reuseExisting: true }),
      ),
    );
    expect(new Set(results.map((r) => r.code?.code)).size).toBe(1);
    expect(await codeCount(t, program.programKey, "mine")).toBe(1);
  });

  it("concurrent batches and single calls for the same users never pass the limit", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 3 });
    const users = Array.from({ length: 50 }, (_, i) => `shared-${i}`);
    const results = await Promise.allSettled([
      ...Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? t : other).grpc.batchCreateCodes({ programKey: program.programKey, userIds: users })),
      ...Array.from({ length: 60 }, (_, i) =>
        (i % 2 === 0 ? t : other).grpc.createCode({ programKey: program.programKey, userId: users[i % users.length]! }),
      ),
    ]);
    const { ok = 0, CODE_LIMIT_REACHED = 0, ...others } = outcomes(results);
    expect(others).toEqual({});
    expect(ok + CODE_LIMIT_REACHED).toBe(66);
    for (const user of users) expect(await codeCount(t, program.programKey, user)).toBeLessThanOrEqual(3);
  });
});

describe("BatchCreateCodes under concurrency", () => {
  it("batches racing for the same users each succeed whole or fail whole, never passing the limit", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 2 });
    const users = Array.from({ length: 300 }, (_, i) => `batch-racer-${i}`);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? t : other).grpc.batchCreateCodes({ programKey: program.programKey, userIds: users })),
    );
    expect(outcomes(results)).toEqual({ ok: 2, CODE_LIMIT_REACHED: 4 });
    for (const result of results) {
      if (result.status === "fulfilled") expect(result.value.codes.map((c) => c.userId)).toEqual(users);
    }
    expect(await codeCount(t, program.programKey)).toBe(600);
    for (const user of [users[0]!, users[150]!, users[299]!]) expect(await codeCount(t, program.programKey, user)).toBe(2);
  });
});

describe("generated codes", () => {
  it("over 100,000 codes use only the alphabet, are unique, and spread evenly over it", async () => {
    const program = await createProgram(t, { codeLength: 10 });
    const codes: string[] = [];
    for (let batch = 0; batch < 100; batch++) {
      const userIds = Array.from({ length: 1000 }, (_, i) => `stat-${batch}-${i}`);
      const response = await (batch % 2 === 0 ? t : other).grpc.batchCreateCodes({ programKey: program.programKey, userIds });
      codes.push(...response.codes.map((c) => c.code));
    }
    expect(codes).toHaveLength(100_000);
    expect(new Set(codes).size).toBe(100_000);
    const counts = new Map<string, number>([...CROCKFORD_ALPHABET].map((c) => [c, 0]));
    for (const code of codes) {
      expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{10}$/);
      for (const char of code) counts.set(char, (counts.get(char) ?? 0) + 1);
    }
    // Chi-square goodness of fit over 32 symbols (31 degrees of freedom): the
    // critical value at p = 1e-6 is about 75; a biased generator lands far above.
    const expected = (100_000 * 10) / 32;
    const chiSquare = [...counts.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    expect(chiSquare).toBeLessThan(75);
  });
});
