import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ValidateCodeResponse_Reason as Reason, ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { codeCount, createProgram } from "./support/fixtures.ts";
import type { GrpcCallError } from "./support/grpc-js-client.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * Bad input for every field of the code RPCs (CreateCode, BatchCreateCodes,
 * GetCode, ListCodes, UpdateCode, ValidateCode): INVALID_ARGUMENT with reason
 * INVALID_ARGUMENT, domain referral.v1 and the proto path of the field, and
 * nothing written. The boundaries themselves are accepted.
 */
const clock = new TestClock();
let t: TestServer;
/** A program only this file writes to, with room for many codes per user. */
let programKey: string;
/** A code in it, owned by "owner", that UpdateCode cases aim at. */
let target: string;
beforeAll(async () => {
  t = await startTestServer({ clock });
  programKey = (await createProgram(t, { maxCodesPerUser: 1000 })).programKey;
  target = (await t.grpc.createCode({ programKey, userId: "owner" })).code!.code;
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });
const secondsFromNow = (seconds: number) => timestampFromDate(new Date(clock.now().getTime() + seconds * 1000));
const nowSeconds = () => BigInt(Math.floor(clock.now().getTime() / 1000));
const manyKeys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
/** 50 keys of 64 characters with values of 1024: every metadata limit at once. */
const fullMetadata = () => Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padEnd(64, "m"), "v".repeat(1024)]));
const VANITY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
/** A vanity code of `length` characters nobody else is likely to hold (codes are unique across programs). */
const vanity = (length: number) => Array.from({ length }, () => VANITY_ALPHABET[Math.floor(Math.random() * VANITY_ALPHABET.length)]).join("");
const userIds = (n: number, prefix = unique("batch")) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Every code of the program, as stored: any write to any of them changes it. */
async function programState(key: string) {
  return t.db.one(sql.type(z.object({ count: z.number(), digest: z.string() }))`
    SELECT count(*)::int AS count, md5(coalesce(string_agg(c::text, '|' ORDER BY c.id), '')) AS digest
    FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE p.program_key = ${key}
  `);
}

async function expectInvalidArgument(call: Promise<unknown>, field: string) {
  const error = await callError(call);
  expect(error.code).toBe(Code.InvalidArgument);
  expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field } });
}

type Refusal = [string, () => Promise<unknown>, string];

describe("refusals write nothing", () => {
  let before: Awaited<ReturnType<typeof programState>>;
  beforeEach(async () => {
    before = await programState(programKey);
  });
  const expectNothingWritten = async () => expect(await programState(programKey)).toEqual(before);

  describe("CreateCode refuses bad input with INVALID_ARGUMENT naming the field", () => {
    const createCode = (request: Parameters<TestServer["grpc"]["createCode"]>[0]) =>
      t.grpc.createCode({ programKey, userId: unique("user"), ...request });

    it.each<Refusal>([
      ["without a program key", () => createCode({ programKey: "" }), "program_key"],
      ["with upper case and a space in the program key", () => createCode({ programKey: "Not Valid" }), "program_key"],
      ["with a program key starting with a dash", () => createCode({ programKey: "-leading-dash" }), "program_key"],
      ["with a program key of 101 characters", () => createCode({ programKey: "p".repeat(101) }), "program_key"],
      ["without a user", () => createCode({ userId: "" }), "user_id"],
      ["with a blank user", () => createCode({ userId: "   " }), "user_id"],
      ["with a user id of 101 characters", () => createCode({ userId: "u".repeat(101) }), "user_id"],
      ["with a control character in the user id", () => createCode({ userId: "a\u0007b" }), "user_id"],
      ["with a NUL in the user id", () => createCode({ userId: "a\u0000b" }), "user_id"],
      ["with a vanity code of 3 characters", () => createCode({ code: "ABC" }), "code"],
      ["with a vanity code of 21 characters", () => createCode({ code: "A".repeat(21) }), "code"],
      ["with a vanity code containing !", () => createCode({ code: "HELLO!" }), "code"],
      ["with a vanity code containing an inner space", () => createCode({ code: "AB CD" }), "code"],
      ["with a vanity code containing a non-ASCII letter", () => createCode({ code: "CAFÉ1" }), "code"],
      ["with a vanity code containing a NUL", () => createCode({ code: "ABCD\u0000" }), "code"],
      ["with max_uses 0", () => createCode({ maxUses: 0 }), "max_uses"],
      ["with negative max_uses", () => createCode({ maxUses: -1 }), "max_uses"],
      ["with max_uses over 10^9", () => createCode({ maxUses: 1_000_000_001 }), "max_uses"],
      ["with max_uses at the int32 maximum", () => createCode({ maxUses: 2_147_483_647 }), "max_uses"],
      ["expiring in the past", () => createCode({ expiresAt: secondsFromNow(-60) }), "expires_at"],
      ["expiring right now", () => createCode({ expiresAt: secondsFromNow(0) }), "expires_at"],
      ["with negative nanos in expires_at", () => createCode({ expiresAt: { seconds: nowSeconds() + 3600n, nanos: -1 } }), "expires_at"],
      ["with nanos of a whole second in expires_at", () => createCode({ expiresAt: { seconds: nowSeconds() + 3600n, nanos: 1_000_000_000 } }), "expires_at"],
      ["with expires_at after year 9999", () => createCode({ expiresAt: { seconds: 253_402_300_800n } }), "expires_at"],
      ["with 51 metadata keys", () => createCode({ metadata: manyKeys(51) }), "metadata"],
      ["with a metadata key of 65 characters", () => createCode({ metadata: { ["k".repeat(65)]: "v" } }), "metadata"],
      ["with an empty metadata key", () => createCode({ metadata: { "": "v" } }), "metadata"],
      ["with a NUL in a metadata key", () => createCode({ metadata: { "a\u0000b": "v" } }), "metadata"],
      ["with a metadata value of 1025 characters", () => createCode({ metadata: { note: "v".repeat(1025) } }), "metadata.note"],
      ["with a NUL in a metadata value", () => createCode({ metadata: { note: "a\u0000b" } }), "metadata.note"],
      ["with a too-long value under a camelCase metadata key", () => createCode({ metadata: { campaignName: "v".repeat(1025) } }), "metadata.campaignName"],
      ["with a request id of 256 characters", () => createCode({ requestId: "r".repeat(256) }), "request_id"],
      ["with a NUL in the request id", () => createCode({ requestId: "req\u0000" }), "request_id"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("BatchCreateCodes refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without a program key", () => t.grpc.batchCreateCodes({ programKey: "", userIds: userIds(2) }), "program_key"],
      ["with a malformed program key", () => t.grpc.batchCreateCodes({ programKey: "BAD KEY", userIds: userIds(2) }), "program_key"],
      ["without users", () => t.grpc.batchCreateCodes({ programKey, userIds: [] }), "user_ids"],
      ["with 1001 users", () => t.grpc.batchCreateCodes({ programKey, userIds: userIds(1001) }), "user_ids"],
      ["with a duplicate user", () => t.grpc.batchCreateCodes({ programKey, userIds: ["a", "b", "c", "a"].map((u) => `${programKey}-${u}`) }), "user_ids[3]"],
      ["with an empty user id", () => t.grpc.batchCreateCodes({ programKey, userIds: [unique("u"), ""] }), "user_ids[1]"],
      ["with a blank user id", () => t.grpc.batchCreateCodes({ programKey, userIds: [unique("u"), unique("u"), "  "] }), "user_ids[2]"],
      ["with a user id of 101 characters", () => t.grpc.batchCreateCodes({ programKey, userIds: [unique("u"), "u".repeat(101)] }), "user_ids[1]"],
      ["with a control character in a user id", () => t.grpc.batchCreateCodes({ programKey, userIds: ["tab\there", unique("u")] }), "user_ids[0]"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("GetCode refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without a code", () => t.grpc.getCode({ code: "" }), "code"],
      ["with a blank code", () => t.grpc.getCode({ code: "   " }), "code"],
      ["with a code of 65 characters", () => t.grpc.getCode({ code: "C".repeat(65) }), "code"],
      ["with a NUL in the code", () => t.grpc.getCode({ code: "AB\u0000CD" }), "code"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("ListCodes refuses bad input with INVALID_ARGUMENT naming the field", () => {
    // Two codes, so a listing of one per page has a next_page_token.
    beforeAll(async () => {
      await t.grpc.createCode({ programKey, userId: "owner" });
    });

    /** A real next_page_token of this program's listing, its JSON body changed by `edit`. */
    async function tamperedToken(edit: (body: { k: unknown[]; f: unknown }) => void): Promise<string> {
      const { nextPageToken } = await t.grpc.listCodes({ programKey, pageSize: 1 });
      expect(nextPageToken).not.toBe("");
      const body = JSON.parse(Buffer.from(nextPageToken, "base64url").toString("utf8")) as { k: unknown[]; f: unknown };
      edit(body);
      return Buffer.from(JSON.stringify(body)).toString("base64url");
    }

    it.each<Refusal>([
      ["with a negative page size", () => t.grpc.listCodes({ programKey, pageSize: -1 }), "page_size"],
      ["with page size 1001", () => t.grpc.listCodes({ programKey, pageSize: 1001 }), "page_size"],
      ["with a page token that is not one", () => t.grpc.listCodes({ programKey, pageToken: "forged" }), "page_token"],
      ["with a page token of 1025 characters", () => t.grpc.listCodes({ programKey, pageToken: "a".repeat(1025) }), "page_token"],
      [
        "with a page token issued for other filters",
        async () => {
          const { nextPageToken } = await t.grpc.listCodes({ programKey, pageSize: 1 });
          return t.grpc.listCodes({ programKey, userId: "owner", pageToken: nextPageToken });
        },
        "page_token",
      ],
      [
        "with a page token of ListReferrals",
        async () => {
          const referrals = await t.grpc.listReferrals({ pageSize: 1 });
          return t.grpc.listCodes({ pageToken: referrals.nextPageToken || "eyJrIjpbXSwiZiI6IngifQ" });
        },
        "page_token",
      ],
      ["with a page token whose key is not a number", async () => t.grpc.listCodes({ programKey, pageSize: 1, pageToken: await tamperedToken((b) => (b.k = ["abc"])) }), "page_token"],
      [
        "with a page token whose key overflows a bigint",
        async () => t.grpc.listCodes({ programKey, pageSize: 1, pageToken: await tamperedToken((b) => (b.k = ["9999999999999999999"])) }),
        "page_token",
      ],
      ["with a user id of 101 characters", () => t.grpc.listCodes({ userId: "u".repeat(101) }), "user_id"],
      ["with a control character in the user id", () => t.grpc.listCodes({ userId: "a\nb" }), "user_id"],
      ["with a malformed program key", () => t.grpc.listCodes({ programKey: "BAD KEY" }), "program_key"],
      ["with an unknown status", () => t.grpc.listCodes({ programKey, status: 42 as CodeStatus }), "status"],
      ["with a negative status", () => t.grpc.listCodes({ programKey, status: -1 as CodeStatus }), "status"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("UpdateCode refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without a code", () => t.grpc.updateCode({ updateMask: mask("status") }), "code"],
      ["with an empty code.code", () => t.grpc.updateCode({ code: { code: "", status: CodeStatus.INACTIVE }, updateMask: mask("status") }), "code.code"],
      ["with a code.code of 65 characters", () => t.grpc.updateCode({ code: { code: "C".repeat(65), status: CodeStatus.INACTIVE }, updateMask: mask("status") }), "code.code"],
      ["without an update mask", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.INACTIVE } }), "update_mask"],
      ["with an empty update mask", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.INACTIVE }, updateMask: mask() }), "update_mask"],
      ["with the wildcard mask", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.INACTIVE }, updateMask: mask("*") }), "update_mask"],
      ["masking the output-only uses_count", () => t.grpc.updateCode({ code: { code: target, usesCount: 7 }, updateMask: mask("uses_count") }), "update_mask"],
      ["masking the code itself", () => t.grpc.updateCode({ code: { code: target }, updateMask: mask("code") }), "update_mask"],
      ["masking the owner", () => t.grpc.updateCode({ code: { code: target, userId: "thief" }, updateMask: mask("user_id") }), "update_mask"],
      ["masking the program", () => t.grpc.updateCode({ code: { code: target, programKey: "other" }, updateMask: mask("program_key") }), "update_mask"],
      ["masking the output-only vanity flag", () => t.grpc.updateCode({ code: { code: target, vanity: true }, updateMask: mask("vanity") }), "update_mask"],
      ["masking the output-only created_at", () => t.grpc.updateCode({ code: { code: target, createdAt: secondsFromNow(0) }, updateMask: mask("created_at") }), "update_mask"],
      ["masking a field by its JSON name", () => t.grpc.updateCode({ code: { code: target, maxUses: 5 }, updateMask: mask("maxUses") }), "update_mask"],
      ["with an unspecified status", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.UNSPECIFIED }, updateMask: mask("status") }), "code.status"],
      ["to the derived status EXPIRED", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.EXPIRED }, updateMask: mask("status") }), "code.status"],
      ["to the derived status EXHAUSTED", () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.EXHAUSTED }, updateMask: mask("status") }), "code.status"],
      ["to an unknown status", () => t.grpc.updateCode({ code: { code: target, status: 99 as CodeStatus }, updateMask: mask("status") }), "code.status"],
      ["with max_uses 0", () => t.grpc.updateCode({ code: { code: target, maxUses: 0 }, updateMask: mask("max_uses") }), "code.max_uses"],
      ["with max_uses over 10^9", () => t.grpc.updateCode({ code: { code: target, maxUses: 1_000_000_001 }, updateMask: mask("max_uses") }), "code.max_uses"],
      ["with negative nanos in expires_at", () => t.grpc.updateCode({ code: { code: target, expiresAt: { seconds: nowSeconds(), nanos: -5 } }, updateMask: mask("expires_at") }), "code.expires_at"],
      ["with expires_at before year 1", () => t.grpc.updateCode({ code: { code: target, expiresAt: { seconds: -62_135_596_801n } }, updateMask: mask("expires_at") }), "code.expires_at"],
      ["with 51 metadata keys", () => t.grpc.updateCode({ code: { code: target, metadata: manyKeys(51) }, updateMask: mask("metadata") }), "code.metadata"],
      ["with a metadata key of 65 characters", () => t.grpc.updateCode({ code: { code: target, metadata: { ["k".repeat(65)]: "v" } }, updateMask: mask("metadata") }), "code.metadata"],
      ["with a metadata value of 1025 characters", () => t.grpc.updateCode({ code: { code: target, metadata: { note: "v".repeat(1025) } }, updateMask: mask("metadata") }), "code.metadata.note"],
      [
        "with a good status but a bad max_uses in the same mask (nothing applied)",
        () => t.grpc.updateCode({ code: { code: target, status: CodeStatus.SUSPENDED, maxUses: 0 }, updateMask: mask("status", "max_uses") }),
        "code.max_uses",
      ],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
      expect((await t.grpc.getCode({ code: target })).code?.status).toBe(CodeStatus.ACTIVE);
    });
  });

  describe("ValidateCode refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without a code", () => t.grpc.validateCode({ code: "" }), "code"],
      ["with a blank code", () => t.grpc.validateCode({ code: " \t " }), "code"],
      ["with a code of 65 characters", () => t.grpc.validateCode({ code: "C".repeat(65) }), "code"],
      ["with a blank referred user", () => t.grpc.validateCode({ code: target, referredUserId: "   " }), "referred_user_id"],
      ["with a referred user of 101 characters", () => t.grpc.validateCode({ code: target, referredUserId: "r".repeat(101) }), "referred_user_id"],
      ["with a control character in the referred user", () => t.grpc.validateCode({ code: target, referredUserId: "x\u001by" }), "referred_user_id"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("the other protocols get the same INVALID_ARGUMENT and field", () => {
    it.each<Refusal>([
      ["Connect: CreateCode with a user id of 101 characters", () => t.connect.createCode({ programKey, userId: "u".repeat(101) }), "user_id"],
      ["Connect: BatchCreateCodes with a duplicate user", () => t.connect.batchCreateCodes({ programKey, userIds: ["dup-a", "dup-b", "dup-a"] }), "user_ids[2]"],
      ["Connect: UpdateCode masking uses_count", () => t.connect.updateCode({ code: { code: target }, updateMask: mask("uses_count") }), "update_mask"],
      ["Connect: ListCodes with page size 1001", () => t.connect.listCodes({ pageSize: 1001 }), "page_size"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });

    it.each<[string, () => Promise<unknown>, string]>([
      ["grpc-js: CreateCode with max_uses 0", () => t.grpcJs.unary(ReferralCodeService.method.createCode, { programKey, userId: unique("u"), maxUses: 0 }), "max_uses"],
      ["grpc-js: CreateCode with a vanity code of 3 characters", () => t.grpcJs.unary(ReferralCodeService.method.createCode, { programKey, userId: unique("u"), code: "ab-" }), "code"],
      ["grpc-js: GetCode without a code", () => t.grpcJs.unary(ReferralCodeService.method.getCode, { code: "" }), "code"],
      ["grpc-js: ValidateCode with a referred user of 101 characters", () => t.grpcJs.unary(ReferralCodeService.method.validateCode, { code: target, referredUserId: "r".repeat(101) }), "referred_user_id"],
    ])("%s", async (_case, call, field) => {
      const error = (await call().then(
        () => {
          throw new Error("expected the call to fail");
        },
        (e: unknown) => e,
      )) as GrpcCallError;
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.errorInfo).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field } });
      await expectNothingWritten();
    });
  });
});

describe("CreateCode accepts the boundaries", () => {
  it.each<[string, () => { code?: string; userId?: string; maxUses?: number; expiresAt?: ReturnType<typeof secondsFromNow>; metadata?: Record<string, string>; requestId?: string }]>([
    ["a vanity code of exactly 4 characters", () => ({ code: vanity(4) })],
    ["a vanity code of exactly 20 characters", () => ({ code: vanity(20) })],
    ["a vanity code in lower case with surrounding spaces (normalized to 4 characters)", () => ({ code: `  ${vanity(4).toLowerCase()} ` })],
    ["a user id of 100 characters", () => ({ userId: unique("u").padEnd(100, "x") })],
    ["a user id of 100 characters outside the Basic Multilingual Plane", () => ({ userId: "😀".repeat(100) })],
    ["max_uses 1", () => ({ maxUses: 1 })],
    ["max_uses 10^9", () => ({ maxUses: 1_000_000_000 })],
    ["expires_at one second ahead", () => ({ expiresAt: secondsFromNow(1) })],
    ["expires_at at the end of the Timestamp range", () => ({ expiresAt: { seconds: 253_402_300_799n, nanos: 999_999_999 } as ReturnType<typeof secondsFromNow> })],
    ["metadata of 50 keys of 64 characters with values of 1024", () => ({ metadata: fullMetadata() })],
    ["a request id of 255 characters", () => ({ requestId: unique("req").padEnd(255, "r") })],
  ])("%s", async (_case, fields) => {
    const request = { programKey, userId: unique("edge"), ...fields() };
    const before = await codeCount(t, programKey, request.userId);
    const { code, existing } = await t.grpc.createCode(request);
    expect(existing).toBe(false);
    expect(code).toMatchObject({ programKey, userId: request.userId, status: CodeStatus.ACTIVE });
    if (request.code !== undefined) expect(code?.code).toBe(request.code.trim().toUpperCase());
    if (request.maxUses !== undefined) expect(code?.maxUses).toBe(request.maxUses);
    if (request.expiresAt !== undefined) expect(timestampDate(code!.expiresAt!).getTime()).toBe(timestampDate(request.expiresAt).getTime());
    if (request.metadata !== undefined) expect(code?.metadata).toEqual(request.metadata);
    expect(await codeCount(t, programKey, request.userId)).toBe(before + 1);
  });
});

describe("BatchCreateCodes accepts the boundaries", () => {
  it("1000 distinct users, one code each", async () => {
    const users = userIds(1000);
    const before = await codeCount(t, programKey);
    const { codes } = await t.grpc.batchCreateCodes({ programKey, userIds: users });
    expect(codes.map((c) => c.userId)).toEqual(users);
    expect(await codeCount(t, programKey)).toBe(before + 1000);
  });

  it("a single user id of 100 characters", async () => {
    const user = unique("b").padEnd(100, "y");
    const { codes } = await t.grpc.batchCreateCodes({ programKey, userIds: [user] });
    expect(codes).toHaveLength(1);
    expect(await codeCount(t, programKey, user)).toBe(1);
  });
});

describe("lookups accept the boundaries", () => {
  it("GetCode of a 64-character code passes validation and is NOT_FOUND", async () => {
    expect(await callError(t.grpc.getCode({ code: "Z".repeat(64) }))).toMatchObject({ code: Code.NotFound, info: { reason: "CODE_NOT_FOUND" } });
  });

  it("GetCode ignores case and surrounding spaces", async () => {
    expect((await t.grpc.getCode({ code: ` ${target.toLowerCase()}\t` })).code?.code).toBe(target);
  });

  it("ValidateCode of an unknown 64-character code answers CODE_NOT_FOUND, not an error", async () => {
    expect(await t.grpc.validateCode({ code: "Z".repeat(64) })).toMatchObject({ valid: false, reason: Reason.CODE_NOT_FOUND });
  });

  it("ValidateCode with a referred user of 100 characters", async () => {
    expect(await t.grpc.validateCode({ code: target, referredUserId: "r".repeat(100) })).toMatchObject({ valid: true, reason: Reason.UNSPECIFIED });
  });

  it.each([
    ["page size 1000", { pageSize: 1000 }],
    ["page size 0 (the default)", { pageSize: 0 }],
    ["a derived status as a filter", { status: CodeStatus.EXPIRED }],
    ["a user id of 100 characters as a filter", { userId: "u".repeat(100) }],
    ["a program key of 100 characters as a filter", { programKey: "p".repeat(100) }],
  ])("ListCodes with %s", async (_case, request) => {
    await expect(t.grpc.listCodes({ programKey, ...request })).resolves.toBeDefined();
  });

  it("ListCodes takes back its own next_page_token", async () => {
    const first = await t.grpc.listCodes({ programKey, pageSize: 1 });
    const second = await t.grpc.listCodes({ programKey, pageSize: 1, pageToken: first.nextPageToken });
    expect(second.codes[0]?.code).not.toBe(first.codes[0]?.code);
  });
});

describe("UpdateCode accepts the boundaries", () => {
  it.each<[string, Parameters<TestServer["grpc"]["updateCode"]>[0]["code"], string[]]>([
    ["max_uses 1", { maxUses: 1 }, ["max_uses"]],
    ["max_uses 10^9", { maxUses: 1_000_000_000 }, ["max_uses"]],
    ["max_uses unset (unlimited)", {}, ["max_uses"]],
    ["metadata of 50 keys of 64 characters with values of 1024", { metadata: fullMetadata() }, ["metadata"]],
    ["expires_at at the start of the Timestamp range (the code expires)", { expiresAt: { seconds: -62_135_596_800n, nanos: 0 } as ReturnType<typeof secondsFromNow> }, ["expires_at"]],
    ["status SUSPENDED, named twice in the mask", { status: CodeStatus.SUSPENDED }, ["status", "status"]],
  ])("%s", async (_case, fields, paths) => {
    const { code } = await t.grpc.createCode({ programKey, userId: unique("upd") });
    const { code: updated } = await t.grpc.updateCode({ code: { ...fields, code: code!.code }, updateMask: mask(...paths) });
    expect(updated?.code).toBe(code!.code);
    if (paths.includes("max_uses")) expect(updated?.maxUses).toBe(fields?.maxUses);
    if (paths.includes("metadata")) expect(updated?.metadata).toEqual(fields?.metadata);
    if (paths.includes("expires_at")) {
      expect(updated?.status).toBe(CodeStatus.EXPIRED);
      expect(updated?.expiresAt?.seconds).toBe(fields?.expiresAt?.seconds);
    }
    if (paths.includes("status")) expect(updated?.status).toBe(CodeStatus.SUSPENDED);
  });
});
