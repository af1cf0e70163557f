import { describe, expect, it } from "vitest";
import { createBatcher } from "../src/db/batcher.ts";

describe("createBatcher", () => {
  it("sends the first key at once, coalesces the ones that arrive meanwhile, and answers each in order", async () => {
    const batches: number[][] = [];
    let release: () => void = () => {};
    const load = async (keys: readonly number[]) => {
      batches.push([...keys]);
      if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return keys.map((k) => k * 10);
    };
    const get = createBatcher(load, { maxBatch: 3, maxInFlight: 1 });
    const first = get(1);
    const rest = [2, 3, 4, 5, 6].map(get);
    expect(batches).toEqual([[1]]);
    release();
    expect(await Promise.all([first, ...rest])).toEqual([10, 20, 30, 40, 50, 60]);
    expect(batches).toEqual([[1], [2, 3, 4], [5, 6]]);
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
