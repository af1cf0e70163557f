import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { type ProgramSchema, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import type { GrpcCallError } from "./support/grpc-js-client.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

type ProgramInit = MessageInitShape<typeof ProgramSchema>;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

function validProgram(overrides: ProgramInit = {}): ProgramInit {
  const key = unique("valid");
  return { programKey: key, name: `Name ${key}`, rewardKind: RewardKind.FIXED, rewardAmountMinor: 1000n, rewardCurrency: "USD", ...overrides };
}

const percentage = { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 500 };
const tiers = (n: number, tier: object = { rewardAmountMinor: 10n }) => Array.from({ length: n }, (_, i) => ({ minPriorRewards: i + 1, ...tier }));
const manyKeys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));

async function exists(programKey: string): Promise<boolean> {
  const error = await t.grpc.getProgram({ programKey }).then(
    () => undefined,
    (e: unknown) => e,
  );
  return error === undefined;
}

describe("CreateProgram refuses every out-of-bounds field with INVALID_ARGUMENT naming it, and writes nothing", () => {
  it.each<[string, ProgramInit, string]>([
    ["a missing program key", { programKey: "" }, "program.program_key"],
    ["a program key of 101 characters", { programKey: `k${"x".repeat(100)}` }, "program.program_key"],
    ["a program key with upper case", { programKey: "Spring" }, "program.program_key"],
    ["a program key starting with a dash", { programKey: "-spring" }, "program.program_key"],
    ["a program key with a space", { programKey: "spring 2026" }, "program.program_key"],
    ["a missing name", { name: "" }, "program.name"],
    ["a blank name", { name: "   " }, "program.name"],
    ["a name of 256 characters", { name: "n".repeat(256) }, "program.name"],
    ["no reward kind", { rewardKind: RewardKind.UNSPECIFIED }, "program.reward_kind"],
    ["an unknown reward kind", { rewardKind: 7 as RewardKind }, "program.reward_kind"],
    ["a FIXED program paying nothing", { rewardAmountMinor: 0n }, "program.reward_amount_minor"],
    ["a negative amount", { rewardAmountMinor: -1n }, "program.reward_amount_minor"],
    ["an amount over 10^12", { rewardAmountMinor: 1_000_000_000_001n }, "program.reward_amount_minor"],
    ["basis points on a FIXED program", { rewardBasisPoints: 100 }, "program.reward_basis_points"],
    ["a PERCENTAGE program without basis points", { ...percentage, rewardBasisPoints: 0 }, "program.reward_basis_points"],
    ["basis points over 10000", { ...percentage, rewardBasisPoints: 10_001 }, "program.reward_basis_points"],
    ["an amount on a PERCENTAGE program", { ...percentage, rewardAmountMinor: 5n }, "program.reward_amount_minor"],
    ["21 tiers", { tiers: tiers(21) }, "program.tiers"],
    ["a tier at 0 prior rewards", { tiers: [{ minPriorRewards: 0, rewardAmountMinor: 5n }] }, "program.tiers[0].min_prior_rewards"],
    ["two tiers at the same count", { tiers: [{ minPriorRewards: 3, rewardAmountMinor: 5n }, { minPriorRewards: 3, rewardAmountMinor: 6n }] }, "program.tiers[1].min_prior_rewards"],
    ["a FIXED tier with basis points", { tiers: [{ minPriorRewards: 1, rewardAmountMinor: 5n, rewardBasisPoints: 10 }] }, "program.tiers[0].reward_basis_points"],
    ["a PERCENTAGE tier without basis points", { ...percentage, tiers: [{ minPriorRewards: 2, rewardBasisPoints: 0 }] }, "program.tiers[0].reward_basis_points"],
    ["a tier over 10000 basis points", { ...percentage, tiers: [{ minPriorRewards: 2, rewardBasisPoints: 10_001 }] }, "program.tiers[0].reward_basis_points"],
    ["a missing currency", { rewardCurrency: "" }, "program.reward_currency"],
    ["a lower-case currency", { rewardCurrency: "usd" }, "program.reward_currency"],
    ["a four-letter currency", { rewardCurrency: "USDT" }, "program.reward_currency"],
    ["an unknown recurrence", { recurrence: 9 as Recurrence }, "program.recurrence"],
    ["max_rewards_per_referrer 0", { maxRewardsPerReferrer: 0 }, "program.max_rewards_per_referrer"],
    ["max_rewards_per_referrer 1001", { maxRewardsPerReferrer: 1001 }, "program.max_rewards_per_referrer"],
    ["conversion_window_days 0", { conversionWindowDays: 0 }, "program.conversion_window_days"],
    ["conversion_window_days 366", { conversionWindowDays: 366 }, "program.conversion_window_days"],
    ["max_codes_per_user -1", { maxCodesPerUser: -1 }, "program.max_codes_per_user"],
    ["max_codes_per_user 1001", { maxCodesPerUser: 1001 }, "program.max_codes_per_user"],
    ["a code prefix of 9 characters", { codePrefix: "ABCDEFGHJ" }, "program.code_prefix"],
    ["a code prefix with a dash", { codePrefix: "AB-C" }, "program.code_prefix"],
    ["a code length of 5", { codeLength: 5 }, "program.code_length"],
    ["a code length of 21", { codeLength: 21 }, "program.code_length"],
    ["default_code_max_uses 0", { defaultCodeMaxUses: 0 }, "program.default_code_max_uses"],
    ["default_code_max_uses over 10^9", { defaultCodeMaxUses: 1_000_000_001 }, "program.default_code_max_uses"],
    ["a default_code_ttl of 0", { defaultCodeTtl: { seconds: 0n } }, "program.default_code_ttl"],
    ["a default_code_ttl over 3650 days", { defaultCodeTtl: { seconds: 3651n * 86_400n } }, "program.default_code_ttl"],
    ["a default_code_ttl with nanoseconds", { defaultCodeTtl: { seconds: 60n, nanos: 5 } }, "program.default_code_ttl"],
    ["a negative budget", { budgetMinor: -1n }, "program.budget_minor"],
    ["a budget over 10^15", { budgetMinor: 1_000_000_000_000_001n }, "program.budget_minor"],
    ["hold_days -1", { holdDays: -1 }, "program.hold_days"],
    ["hold_days 366", { holdDays: 366 }, "program.hold_days"],
    ["an unknown payout method", { payoutMethod: 12 as never }, "program.payout_method"],
    ["metadata with 51 keys", { metadata: manyKeys(51) }, "program.metadata"],
    ["a metadata key of 65 characters", { metadata: { ["k".repeat(65)]: "v" } }, "program.metadata"],
    ["a metadata value of 1025 characters", { metadata: { k: "v".repeat(1025) } }, "program.metadata.k"],
  ])("%s", async (_case, overrides, field) => {
    const program = validProgram(overrides);
    const error = await callError(t.grpc.createProgram({ program }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field } });
    if (program.programKey && /^[a-z0-9][a-z0-9_-]{0,99}$/.test(program.programKey)) expect(await exists(program.programKey)).toBe(false);
  });
});

describe("CreateProgram accepts the boundaries", () => {
  it.each<[string, ProgramInit]>([
    ["a program key of 100 characters", { programKey: `k${unique("").replace(/-/g, "").slice(0, 20)}${"x".repeat(79)}` }],
    ["a name of 255 characters", { name: `${unique("n")}${"n".repeat(200)}`.slice(0, 255).padEnd(255, "n") }],
    ["amounts of 10^12", { rewardAmountMinor: 1_000_000_000_000n, tiers: tiers(20, { rewardAmountMinor: 1_000_000_000_000n }) }],
    ["10000 basis points", { ...percentage, rewardBasisPoints: 10_000 }],
    ["code length 6 and an 8-character prefix", { codeLength: 6, codePrefix: "ABCDEFGH" }],
    ["code length 20", { codeLength: 20 }],
    ["hold_days 0 and 365", { holdDays: 365 }],
    ["limits at their maxima", { maxRewardsPerReferrer: 1000, conversionWindowDays: 365, maxCodesPerUser: 1000, defaultCodeMaxUses: 1_000_000_000 }],
    ["a budget of 0 and of 10^15", { budgetMinor: 1_000_000_000_000_000n }],
    ["a ttl of 3650 days", { defaultCodeTtl: { seconds: 3650n * 86_400n } }],
    ["50 metadata keys of 64 characters with 1024-character values", { metadata: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padEnd(64, "k"), "v".repeat(1024)])) }],
  ])("%s", async (_case, overrides) => {
    const { program } = await t.grpc.createProgram({ program: validProgram(overrides) });
    expect(program?.programKey).toBeDefined();
  });

  it("upper-cases a lower-case prefix", async () => {
    const { program } = await t.grpc.createProgram({ program: validProgram({ codePrefix: "spr" }) });
    expect(program?.codePrefix).toBe("SPR");
  });
});

describe("the other program RPCs refuse bad input", () => {
  const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });

  it.each<[string, () => Promise<unknown>, string]>([
    ["GetProgram with no key", () => t.grpc.getProgram({ programKey: "" }), "program_key"],
    ["GetProgram with a malformed key", () => t.grpc.getProgram({ programKey: "Bad Key" }), "program_key"],
    ["ListPrograms with a negative page size", () => t.grpc.listPrograms({ pageSize: -1 }), "page_size"],
    ["ListPrograms with a page size over 1000", () => t.grpc.listPrograms({ pageSize: 1001 }), "page_size"],
    ["ListPrograms with a forged page token", () => t.grpc.listPrograms({ pageToken: "eyJrIjpbXX0" }), "page_token"],
    ["UpdateProgram with no program", () => t.grpc.updateProgram({ updateMask: mask("name") }), "program"],
    ["UpdateProgram with a malformed key", () => t.grpc.updateProgram({ program: { programKey: "BAD" }, updateMask: mask("name") }), "program.program_key"],
    ["UpdateProgram with no mask", () => t.grpc.updateProgram({ program: { programKey: "some-program" } }), "update_mask"],
    ["UpdateProgram masking an output-only field", () => t.grpc.updateProgram({ program: { programKey: "some-program" }, updateMask: mask("updated_at") }), "update_mask"],
    ["UpdateProgram with a blank name", () => t.grpc.updateProgram({ program: { programKey: "some-program", name: " " }, updateMask: mask("name") }), "program.name"],
    ["UpdateProgram with code length 30", () => t.grpc.updateProgram({ program: { programKey: "some-program", codeLength: 30 }, updateMask: mask("code_length") }), "program.code_length"],
    ["UpdateProgram with 21 tiers", () => t.grpc.updateProgram({ program: { programKey: "some-program", tiers: tiers(21) }, updateMask: mask("tiers") }), "program.tiers"],
  ])("%s", async (_case, call, field) => {
    const error = await callError(call());
    expect(error).toMatchObject({ code: Code.InvalidArgument, info: { reason: "INVALID_ARGUMENT", metadata: { field } } });
  });

  it("grpc-js callers get the same INVALID_ARGUMENT and field", async () => {
    const error = (await t.grpcJs
      .unary(ReferralCodeService.method.createProgram, { program: validProgram({ holdDays: 400 }) })
      .catch((e: unknown) => e)) as GrpcCallError;
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.errorInfo).toMatchObject({ reason: "INVALID_ARGUMENT", metadata: { field: "program.hold_days" } });
  });
});
