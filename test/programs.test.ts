import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDatabasePool } from "../src/db/pool.ts";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { PayoutMethod, type ProgramSchema, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { GrpcCallError } from "./support/grpc-js-client.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });

function fixedProgram(overrides: MessageInitShape<typeof ProgramSchema> = {}): MessageInitShape<typeof ProgramSchema> {
  const key = unique("prog");
  return {
    programKey: key,
    name: `Program ${key}`,
    rewardKind: RewardKind.FIXED,
    rewardAmountMinor: 1500n,
    rewardCurrency: "USD",
    ...overrides,
  };
}

async function programCount(): Promise<number> {
  return t.db.oneFirst(sql.type(z.object({ count: z.number() }))`SELECT count(*)::int AS count FROM referral_programs`);
}

describe("CreateProgram", () => {
  it("stores every field and applies the defaults", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    expect(program).toMatchObject({
      rewardKind: RewardKind.FIXED,
      rewardAmountMinor: 1500n,
      rewardBasisPoints: 0,
      rewardCurrency: "USD",
      recurrence: Recurrence.ONE_TIME,
      active: true,
      maxCodesPerUser: 5,
      codePrefix: "",
      codeLength: 10,
      allowSelfReferral: false,
      holdDays: 0,
      reversalFreesUse: true,
      payoutMethod: PayoutMethod.MANUAL,
      rewardsGrantedMinor: 0n,
    });
    expect(program?.maxRewardsPerReferrer).toBeUndefined();
    expect(program?.budgetMinor).toBeUndefined();
    expect(program?.createdAt).toBeDefined();
  });

  it("round-trips a fully specified percentage program", async () => {
    const input = {
      programKey: unique("full"),
      name: unique("Full program"),
      rewardKind: RewardKind.PERCENTAGE,
      rewardBasisPoints: 1250,
      tiers: [
        { minPriorRewards: 10, rewardBasisPoints: 1500 },
        { minPriorRewards: 3, rewardBasisPoints: 1300 },
      ],
      rewardCurrency: "EUR",
      recurrence: Recurrence.RECURRING,
      active: false,
      maxRewardsPerReferrer: 100,
      conversionWindowDays: 90,
      maxCodesPerUser: 3,
      codePrefix: "spr",
      codeLength: 8,
      defaultCodeMaxUses: 25,
      defaultCodeTtl: { seconds: 86_400n },
      allowSelfReferral: true,
      budgetMinor: 1_000_000n,
      holdDays: 30,
      reversalFreesUse: false,
      payoutMethod: PayoutMethod.STRIPE_CONNECT,
      metadata: { team: "growth" },
    };
    const { program: created } = await t.connect.createProgram({ program: input });
    const { program } = await t.grpc.getProgram({ programKey: input.programKey });
    expect(program).toEqual(created);
    expect(program).toMatchObject({
      ...input,
      codePrefix: "SPR",
      tiers: [
        expect.objectContaining({ minPriorRewards: 3, rewardBasisPoints: 1300, rewardAmountMinor: 0n }),
        expect.objectContaining({ minPriorRewards: 10, rewardBasisPoints: 1500, rewardAmountMinor: 0n }),
      ],
      defaultCodeTtl: expect.objectContaining({ seconds: 86_400n, nanos: 0 }),
    });
  });

  it("refuses a taken program key with PROGRAM_KEY_TAKEN", async () => {
    const program = fixedProgram();
    await t.grpc.createProgram({ program });
    const error = await callError(t.grpc.createProgram({ program: { ...program, name: unique("other name") } }));
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.info).toMatchObject({ reason: "PROGRAM_KEY_TAKEN", domain: "referral.v1", metadata: { field: "program.program_key" } });
  });

  it("refuses a taken name with PROGRAM_KEY_TAKEN naming the name field", async () => {
    const program = fixedProgram();
    await t.grpc.createProgram({ program });
    const error = await callError(t.grpc.createProgram({ program: { ...program, programKey: unique("other") } }));
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.info).toMatchObject({ reason: "PROGRAM_KEY_TAKEN", metadata: { field: "program.name" } });
  });

  it("when many callers race for one key, exactly one creates it", async () => {
    const program = fixedProgram();
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => t.grpc.createProgram({ program: { ...program, name: `${program.name} ${i}` } })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const result of results) {
      if (result.status === "rejected") expect((await callError(Promise.reject(result.reason))).info?.reason).toBe("PROGRAM_KEY_TAKEN");
    }
  });

  it("bad input is INVALID_ARGUMENT naming the field, and writes nothing", async () => {
    const before = await programCount();
    const error = await callError(t.grpc.createProgram({ program: fixedProgram({ codeLength: 21 }) }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", metadata: { field: "program.code_length" } });
    expect(await programCount()).toBe(before);
  });

  it("a missing program is INVALID_ARGUMENT on program", async () => {
    const error = await callError(t.grpc.createProgram({}));
    expect(error.info?.metadata.field).toBe("program");
  });
});

describe("GetProgram", () => {
  it("an unknown key is NOT_FOUND with PROGRAM_NOT_FOUND", async () => {
    const error = await callError(t.grpc.getProgram({ programKey: "no-such-program" }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.info).toMatchObject({ reason: "PROGRAM_NOT_FOUND", metadata: { programKey: "no-such-program" } });
  });

  it("a malformed key is INVALID_ARGUMENT on program_key", async () => {
    const error = await callError(t.grpc.getProgram({ programKey: "Not A Key" }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info?.metadata.field).toBe("program_key");
  });
});

describe("UpdateProgram", () => {
  it("changes only the masked fields", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram({ holdDays: 7 }) });
    const { program: updated } = await t.grpc.updateProgram({
      program: { programKey: program!.programKey, rewardAmountMinor: 2500n, holdDays: 99, budgetMinor: 10_000n },
      updateMask: mask("reward_amount_minor", "budget_minor"),
    });
    expect(updated).toMatchObject({ rewardAmountMinor: 2500n, budgetMinor: 10_000n, holdDays: 7, name: program!.name });
    expect(updated!.updatedAt!.seconds >= program!.updatedAt!.seconds).toBe(true);
  });

  it("deactivates and reactivates a program", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    const key = program!.programKey;
    const off = await t.grpc.updateProgram({ program: { programKey: key, active: false }, updateMask: mask("active") });
    expect(off.program?.active).toBe(false);
    const on = await t.grpc.updateProgram({ program: { programKey: key, active: true }, updateMask: mask("active") });
    expect(on.program?.active).toBe(true);
  });

  it("clears a limit when the masked field is unset", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram({ maxRewardsPerReferrer: 5, budgetMinor: 100n }) });
    const { program: updated } = await t.grpc.updateProgram({
      program: { programKey: program!.programKey },
      updateMask: mask("max_rewards_per_referrer", "budget_minor"),
    });
    expect(updated?.maxRewardsPerReferrer).toBeUndefined();
    expect(updated?.budgetMinor).toBeUndefined();
  });

  it("switching to PERCENTAGE without basis points is INVALID_ARGUMENT and changes nothing", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    const error = await callError(
      t.grpc.updateProgram({
        program: { programKey: program!.programKey, rewardKind: RewardKind.PERCENTAGE },
        updateMask: mask("reward_kind"),
      }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info?.metadata.field).toBe("program.reward_basis_points");
    const { program: after } = await t.grpc.getProgram({ programKey: program!.programKey });
    expect(after).toEqual(program);
  });

  it("refuses fields that cannot change, and an empty mask", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    for (const path of ["program_key", "reward_currency", "rewards_granted_minor", "created_at", "nonsense"]) {
      const error = await callError(t.grpc.updateProgram({ program: { programKey: program!.programKey }, updateMask: mask(path) }));
      expect(error.code, path).toBe(Code.InvalidArgument);
      expect(error.info?.metadata.field, path).toBe("update_mask");
    }
    const empty = await callError(t.grpc.updateProgram({ program: { programKey: program!.programKey } }));
    expect(empty.info?.metadata.field).toBe("update_mask");
  });

  it("validates the masked values like CreateProgram", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    const error = await callError(
      t.grpc.updateProgram({ program: { programKey: program!.programKey, holdDays: 366 }, updateMask: mask("hold_days") }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info?.metadata.field).toBe("program.hold_days");
  });

  it("a name another program has is PROGRAM_KEY_TAKEN", async () => {
    const { program: first } = await t.grpc.createProgram({ program: fixedProgram() });
    const { program: second } = await t.grpc.createProgram({ program: fixedProgram() });
    const error = await callError(
      t.grpc.updateProgram({ program: { programKey: second!.programKey, name: first!.name }, updateMask: mask("name") }),
    );
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.info).toMatchObject({ reason: "PROGRAM_KEY_TAKEN", metadata: { field: "program.name" } });
  });

  it("an unknown program is PROGRAM_NOT_FOUND", async () => {
    const error = await callError(t.grpc.updateProgram({ program: { programKey: "missing-program", active: false }, updateMask: mask("active") }));
    expect(error.code).toBe(Code.NotFound);
    expect(error.info?.reason).toBe("PROGRAM_NOT_FOUND");
  });

  it.each([
    { title: "deactivates", path: "active", before: {}, change: { active: false } },
    { title: "renames", path: "name", before: {}, change: { name: "renamed" } },
    { title: "changes hold_days of", path: "hold_days", before: {}, change: { holdDays: 7 } },
    { title: "sets a budget on", path: "budget_minor", before: {}, change: { budgetMinor: 1_000_000n } },
    { title: "raises the budget of", path: "budget_minor", before: { budgetMinor: 5_000n }, change: { budgetMinor: 1_000_000n } },
  ])(
    "$title a program while another transaction holds its key-share lock, as every conversion in flight does",
    async ({ path, before, change }) => {
      const { program } = await t.grpc.createProgram({ program: fixedProgram(before) });
      const key = program!.programKey;
      const name = "name" in change ? `${program!.name} ${change.name}` : undefined;
      const updated = await t.db.transaction(async (tx) => {
        await tx.query(sql.type(z.object({}))`SELECT 1 FROM referral_programs WHERE program_key = ${key} FOR KEY SHARE`);
        // Answered while the lock is held: a lock that waited for it would
        // wait for this transaction, which waits for the answer.
        return (await t.grpc.updateProgram({ program: { programKey: key, ...change, name }, updateMask: mask(path) })).program;
      });
      expect(updated).toMatchObject({ ...change, name: name ?? program!.name });
    },
  );

  it("has connections of its own: with every connection of the service's pool taken, an operator still deactivates a program", async () => {
    const operatorDb = await createDatabasePool(inject("databaseUrl"), { maxPoolSize: 1, statementTimeoutMs: 30_000 });
    const busy = await startTestServer({ poolSize: 1, server: { operatorDb } });
    try {
      const { program } = await busy.grpc.createProgram({ program: fixedProgram() });
      const key = program!.programKey;
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      // The pool's only connection, taken as a stream of conversions would take them all.
      const holding = busy.db.connect(() => held);
      try {
        const { program: off } = await busy.grpc.updateProgram({ program: { programKey: key, active: false }, updateMask: mask("active") }, { timeoutMs: 5000 });
        expect(off?.active).toBe(false);
        // Meanwhile a call on the pool waits for its connection.
        expect((await callError(busy.grpc.getProgram({ programKey: key }, { timeoutMs: 300 }))).code).toBe(Code.DeadlineExceeded);
      } finally {
        release();
        await holding;
      }
    } finally {
      await busy.close();
      await operatorDb.end();
    }
  });

  it("concurrent updates of different fields both land", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram() });
    const key = program!.programKey;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? t.grpc.updateProgram({ program: { programKey: key, holdDays: i + 1 }, updateMask: mask("hold_days") })
          : t.grpc.updateProgram({ program: { programKey: key, metadata: { [`k${i}`]: "v" } }, updateMask: mask("metadata") }),
      ),
    );
    const { program: after } = await t.grpc.getProgram({ programKey: key });
    expect(after?.holdDays).toBeGreaterThan(0);
    expect(Object.keys(after!.metadata)).toHaveLength(1);
  });
});

describe("ListPrograms", () => {
  it("pages through every program once, stable when programs are inserted between pages", async () => {
    const tag = unique("page").replace(/-/g, "");
    const keys = Array.from({ length: 7 }, (_, i) => `${tag}-${String(i * 2).padStart(2, "0")}`);
    for (const key of keys) await t.grpc.createProgram({ program: fixedProgram({ programKey: key, name: key }) });

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const response = await t.grpc.listPrograms({ pageSize: 3, pageToken });
      seen.push(...response.programs.map((p) => p.programKey).filter((k) => k.startsWith(tag)));
      pageToken = response.nextPageToken;
      if (pages++ === 0) {
        // Inserted behind and ahead of the cursor while paging.
        await t.grpc.createProgram({ program: fixedProgram({ programKey: `${tag}-01`, name: `${tag}-01` }) });
        await t.grpc.createProgram({ program: fixedProgram({ programKey: `${tag}-99`, name: `${tag}-99` }) });
      }
    } while (pageToken !== "");
    expect(new Set(seen).size).toBe(seen.length);
    for (const key of keys) expect(seen).toContain(key);
    expect(seen).toContain(`${tag}-99`);
    expect([...seen].sort()).toEqual(seen);
  });

  it("filters by active", async () => {
    const { program } = await t.grpc.createProgram({ program: fixedProgram({ active: false }) });
    const all = [];
    let pageToken = "";
    do {
      const response = await t.grpc.listPrograms({ pageSize: 1000, pageToken, active: false });
      all.push(...response.programs);
      pageToken = response.nextPageToken;
    } while (pageToken !== "");
    expect(all.every((p) => p.active === false)).toBe(true);
    expect(all.map((p) => p.programKey)).toContain(program!.programKey);
  });

  it("refuses a page token from other filters, a forged token, and an oversize page", async () => {
    for (let i = 0; i < 3; i++) await t.grpc.createProgram({ program: fixedProgram() });
    const { nextPageToken } = await t.grpc.listPrograms({ pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const other = await callError(t.grpc.listPrograms({ pageSize: 1, pageToken: nextPageToken, active: true }));
    expect(other.info?.metadata.field).toBe("page_token");
    const forged = await callError(t.grpc.listPrograms({ pageToken: "not-a-token" }));
    expect(forged.info?.metadata.field).toBe("page_token");
    const big = await callError(t.grpc.listPrograms({ pageSize: 1001 }));
    expect(big.info?.metadata.field).toBe("page_size");
  });
});

describe("over @grpc/grpc-js", () => {
  it("creates and reads a program, and receives ErrorInfo on errors", async () => {
    const program = fixedProgram();
    const created = await t.grpcJs.unary(ReferralCodeService.method.createProgram, { program });
    expect(created.program?.programKey).toBe(program.programKey);
    const got = await t.grpcJs.unary(ReferralCodeService.method.getProgram, { programKey: program.programKey! });
    expect(got.program?.name).toBe(program.name);

    const error = await t.grpcJs.unary(ReferralCodeService.method.createProgram, { program }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GrpcCallError);
    expect((error as GrpcCallError).code).toBe(grpc.status.ALREADY_EXISTS);
    expect((error as GrpcCallError).errorInfo).toMatchObject({ reason: "PROGRAM_KEY_TAKEN", domain: "referral.v1" });
  });
});

describe("over gRPC-Web and Connect", () => {
  it("serves the same program on every protocol", async () => {
    const program = fixedProgram();
    await t.grpcWeb.createProgram({ program });
    const viaConnect = await t.connect.getProgram({ programKey: program.programKey! });
    const viaGrpc = await t.grpc.getProgram({ programKey: program.programKey! });
    expect(viaConnect.program).toEqual(viaGrpc.program);
  });
});
