import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createBatcher } from "../src/db/batcher.ts";

describe("createBatcher", () => {
  it("sends the keys of one turn together, coalesces the ones that arrive while it runs, and answers each in order", async () => {
    const batches: number[][] = [];
    let release: () => void = () => {};
    const load = async (keys: readonly number[]) => {
      batches.push([...keys]);
      if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return keys.map((k) => k * 10);
    };
    const get = createBatcher(load, { maxBatch: 3, maxInFlight: 1 });
    const firstTurn = [1, 2].map(get);
    expect(batches).toEqual([]);
    await nextTurn();
    expect(batches).toEqual([[1, 2]]);
    const rest = [3, 4, 5, 6, 7].map(get);
    await nextTurn();
    expect(batches).toEqual([[1, 2]]);
    release();
    expect(await Promise.all([...firstTurn, ...rest])).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(batches).toEqual([[1, 2], [3, 4, 5], [6, 7]]);
  });

  it("runs up to maxInFlight batches at once, each of at most maxBatch keys", async () => {
    const running: number[][] = [];
    let peak = 0;
    const get = createBatcher(
      async (keys: readonly number[]) => {
        running.push([...keys]);
        peak = Math.max(peak, running.length);
        await nextTurn();
        running.splice(running.indexOf(keys as number[]), 1);
        return keys;
      },
      { maxBatch: 4, maxInFlight: 2 },
    );
    const keys = Array.from({ length: 20 }, (_, i) => i);
    expect(await Promise.all(keys.map(get))).toEqual(keys);
    expect(peak).toBe(2);
  });

  it("a failed batch fails each of its callers, and the next batch still runs", async () => {
    let calls = 0;
    const get = createBatcher(
      async (keys: readonly string[]) => {
        calls++;
        if (keys.includes("bad")) throw new Error("boom");
        return keys.map((k) => k.toUpperCase());
      },
      { maxBatch: 10, maxInFlight: 1 },
    );
    const bad = get("bad");
    await expect(bad).rejects.toThrow("boom");
    expect(await get("ok")).toBe("OK");
    expect(calls).toBe(2);
  });
});

describe("createBatcher with an identity", () => {
  it("asks once for keys of one batch with the same identity, and gives each caller the answer", async () => {
    const asked: string[][] = [];
    const get = createBatcher(
      async (keys: readonly { code: string; user: string | null }[]) => {
        asked.push(keys.map((k) => `${k.code}/${k.user}`));
        return keys.map((k) => `${k.code}:${k.user ?? "-"}`);
      },
      { maxBatch: 10, maxInFlight: 1, identity: (k) => JSON.stringify([k.code, k.user]) },
    );
    const answers = await Promise.all(
      [
        { code: "A", user: null },
        { code: "B", user: null },
        { code: "A", user: null },
        { code: "A", user: "u" },
        { code: "B", user: null },
      ].map(get),
    );
    expect(answers).toEqual(["A:-", "B:-", "A:-", "A:u", "B:-"]);
    expect(asked).toEqual([["A/null", "B/null", "A/u"]]);
  });
});
