import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodeStatus } from "../src/gen/referral/v1/resources_pb.js";
import { CROCKFORD_ALPHABET } from "../src/codes/generator.ts";
import { TestClock } from "./support/clock.ts";
import { codeCount, createProgram } from "./support/fixtures.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });

/** The places (slots) a user's codes take in a program, in order. */
const places = (programKey: string, userId: string) =>
  t.db.anyFirst(sql.type(z.object({ slot: z.number() }))`
    SELECT c.slot FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
    WHERE p.program_key = ${programKey} AND c.user_id = ${userId} ORDER BY c.slot
  `);
const alphabet = `[${CROCKFORD_ALPHABET}]`;

describe("CreateCode", () => {
  it("generates a code from the program's prefix and length, with the program's defaults", async () => {
    const program = await createProgram(t, { codePrefix: "SPR", codeLength: 8, defaultCodeMaxUses: 3, defaultCodeTtl: { seconds: 3600n } });
    const { code, existing } = await t.grpc.createCode({ programKey: program.programKey, userId: "alice" });
    expect(existing).toBe(false);
    expect(code?.code).toMatch(new RegExp(`^SPR-${alphabet}{8}$`));
    expect(code).toMatchObject({ programKey: program.programKey, userId: "alice", status: CodeStatus.ACTIVE, usesCount: 0, maxUses: 3, vanity: false });
    expect(timestampDate(code!.expiresAt!).getTime()).toBe(clock.now().getTime() + 3600_000);
  });

  it("without a prefix the code is the bare random part; without defaults it never expires and has no limit", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "bob" });
    expect(code?.code).toMatch(new RegExp(`^${alphabet}{10}$`));
    expect(code?.maxUses).toBeUndefined();
    expect(code?.expiresAt).toBeUndefined();
  });

  it("explicit max_uses, expires_at and metadata win over the defaults", async () => {
    const program = await createProgram(t, { defaultCodeMaxUses: 3, defaultCodeTtl: { seconds: 3600n } });
    const expiresAt = new Date(clock.now().getTime() + 7 * TestClock.DAY);
    const { code } = await t.grpc.createCode({
      programKey: program.programKey,
      userId: "carol",
      maxUses: 50,
      expiresAt: timestampFromDate(expiresAt),
      metadata: { campaign: "fall" },
    });
    expect(code).toMatchObject({ maxUses: 50, metadata: { campaign: "fall" } });
    expect(timestampDate(code!.expiresAt!).getTime()).toBe(expiresAt.getTime());
  });

  it("stores a vanity code normalized: trimmed and upper-cased", async () => {
    const program = await createProgram(t);
    const vanity = unique("v").slice(-12);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "dave", code: `  ${vanity.toLowerCase()} ` });
    expect(code).toMatchObject({ code: vanity.toUpperCase(), vanity: true });
  });

  it("a vanity code taken in any program is CODE_TAKEN", async () => {
    const first = await createProgram(t);
    const second = await createProgram(t);
    const vanity = `TAKEN${Math.random().toString(36).slice(2, 10)}`.toUpperCase();
    await t.grpc.createCode({ programKey: first.programKey, userId: "erin", code: vanity });
    const error = await callError(t.grpc.createCode({ programKey: second.programKey, userId: "frank", code: vanity.toLowerCase() }));
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.info).toMatchObject({ reason: "CODE_TAKEN", metadata: { field: "code" } });
  });

  it("the same request_id returns the same code", async () => {
    const program = await createProgram(t);
    const first = await t.grpc.createCode({ programKey: program.programKey, userId: "gina", requestId: "req-1" });
    const again = await t.grpc.createCode({ programKey: program.programKey, userId: "gina", requestId: "req-1" });
    expect(again.code?.code).toBe(first.code?.code);
    expect(again.existing).toBe(true);
    expect(await codeCount(t, program.programKey, "gina")).toBe(1);
  });

  it("a request_id reused for another user is IDEMPOTENCY_KEY_REUSED", async () => {
    const program = await createProgram(t);
    await t.grpc.createCode({ programKey: program.programKey, userId: "hank", requestId: "req-2" });
    const error = await callError(t.grpc.createCode({ programKey: program.programKey, userId: "ivan", requestId: "req-2" }));
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.info).toMatchObject({ reason: "IDEMPOTENCY_KEY_REUSED", metadata: { field: "request_id" } });
  });

  it("reuse_existing returns the user's usable code, and makes a new one when none is usable", async () => {
    const program = await createProgram(t);
    const { code: first } = await t.grpc.createCode({ programKey: program.programKey, userId: "judy" });
    const reused = await t.grpc.createCode({ programKey: program.programKey, userId: "judy", reuseExisting: true });
    expect(reused).toMatchObject({ existing: true, code: { code: first!.code } });

    await t.grpc.updateCode({ code: { code: first!.code, status: CodeStatus.SUSPENDED }, updateMask: mask("status") });
    const fresh = await t.grpc.createCode({ programKey: program.programKey, userId: "judy", reuseExisting: true });
    expect(fresh.existing).toBe(false);
    expect(fresh.code?.code).not.toBe(first!.code);
  });

  it("a user at max_codes_per_user gets CODE_LIMIT_REACHED", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 2 });
    await t.grpc.createCode({ programKey: program.programKey, userId: "kim" });
    await t.grpc.createCode({ programKey: program.programKey, userId: "kim" });
    const error = await callError(t.grpc.createCode({ programKey: program.programKey, userId: "kim" }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.info).toMatchObject({ reason: "CODE_LIMIT_REACHED", metadata: { userId: "kim", programKey: program.programKey } });
    // Other users are not affected.
    await t.grpc.createCode({ programKey: program.programKey, userId: "lee" });
  });

  it("an unknown program is PROGRAM_NOT_FOUND; an inactive one PROGRAM_INACTIVE", async () => {
    const missing = await callError(t.grpc.createCode({ programKey: "no-such-program", userId: "mia" }));
    expect(missing).toMatchObject({ code: Code.NotFound, info: { reason: "PROGRAM_NOT_FOUND" } });
    const program = await createProgram(t, { active: false });
    const inactive = await callError(t.grpc.createCode({ programKey: program.programKey, userId: "mia" }));
    expect(inactive).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "PROGRAM_INACTIVE" } });
  });

  it("an expires_at in the past is INVALID_ARGUMENT and writes nothing", async () => {
    const program = await createProgram(t);
    const error = await callError(
      t.grpc.createCode({ programKey: program.programKey, userId: "ned", expiresAt: timestampFromDate(new Date(clock.now().getTime() - 1000)) }),
    );
    expect(error).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "expires_at" } } });
    expect(await codeCount(t, program.programKey)).toBe(0);
  });
});

describe("when the code space is nearly used up", () => {
  it("CreateCode and BatchCreateCodes fail CODE_SPACE_EXHAUSTED after bounded retries instead of hanging", async () => {
    const fixed = `Z${Math.random().toString(36).slice(2, 8).toUpperCase().replace(/[ILOU]/g, "X")}`.slice(0, 6);
    const stuck = await startTestServer({ clock, generateCode: (length) => fixed.padEnd(length, "0").slice(0, length) });
    try {
      const program = await createProgram(stuck, { codeLength: 6, codePrefix: "EXH" });
      await stuck.grpc.createCode({ programKey: program.programKey, userId: "u1" });
      const single = await callError(stuck.grpc.createCode({ programKey: program.programKey, userId: "u2" }));
      expect(single).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "CODE_SPACE_EXHAUSTED" } });
      const batch = await callError(stuck.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["u3", "u4"] }));
      expect(batch).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "CODE_SPACE_EXHAUSTED" } });
    } finally {
      await stuck.close();
    }
  });
});

describe("BatchCreateCodes", () => {
  it("creates one code per user, in the order given", async () => {
    const program = await createProgram(t, { codePrefix: "B", codeLength: 12 });
    const userIds = Array.from({ length: 1000 }, (_, i) => `batch-user-${i}`);
    const { codes } = await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds });
    expect(codes.map((c) => c.userId)).toEqual(userIds);
    expect(new Set(codes.map((c) => c.code)).size).toBe(1000);
    for (const code of codes) expect(code.code).toMatch(new RegExp(`^B-${alphabet}{12}$`));
  });

  it("an invalid user id fails the whole batch with INVALID_ARGUMENT naming it, writing nothing", async () => {
    const program = await createProgram(t);
    const error = await callError(t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["ok-1", "ok-2", "ok-3", ""] }));
    expect(error).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "user_ids[3]" } } });
    expect(await codeCount(t, program.programKey)).toBe(0);
  });

  it("a user at the limit fails the whole batch with CODE_LIMIT_REACHED, writing nothing", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 1 });
    await t.grpc.createCode({ programKey: program.programKey, userId: "full-user" });
    const error = await callError(
      t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["fresh-1", "full-user", "fresh-2"] }),
    );
    expect(error).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "CODE_LIMIT_REACHED", metadata: { userId: "full-user" } } });
    expect(await codeCount(t, program.programKey)).toBe(1);
  });

  it("returns each code as stored, with the program's defaults", async () => {
    const program = await createProgram(t, { codePrefix: "BD", defaultCodeMaxUses: 7, defaultCodeTtl: { seconds: 86_400n } });
    const userIds = Array.from({ length: 20 }, (_, i) => `defaults-${i}`);
    const { codes } = await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds });
    expect(codes).toHaveLength(20);
    for (const code of codes) {
      expect(code).toMatchObject({ programKey: program.programKey, status: CodeStatus.ACTIVE, usesCount: 0, maxUses: 7, vanity: false, metadata: {} });
      expect(timestampDate(code.expiresAt!).getTime()).toBe(clock.now().getTime() + 86_400_000);
      const { code: stored } = await t.grpc.getCode({ code: code.code });
      expect(stored).toEqual(code);
    }
  });

  it("user ids that need quoting in a PostgreSQL array come back exactly as given", async () => {
    const program = await createProgram(t);
    const userIds = ["NULL", "null", "a,b", 'quote"d', "back\\slash", "{brace}", " spaced ", "ünïcødé ✓", "''"];
    const { codes } = await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds });
    expect(codes.map((c) => c.userId)).toEqual(userIds);
    for (const userId of userIds) expect(await codeCount(t, program.programKey, userId)).toBe(1);
  });

  it("users who already hold codes take their next free place, up to the limit; past it the batch fails naming the user, writing nothing", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 3 });
    await t.grpc.createCode({ programKey: program.programKey, userId: "holder" });
    await t.grpc.createCode({ programKey: program.programKey, userId: "holder" });
    const { codes } = await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["newcomer", "holder"] });
    expect(codes.map((c) => c.userId)).toEqual(["newcomer", "holder"]);
    expect(await places(program.programKey, "holder")).toEqual([1, 2, 3]);
    expect(await places(program.programKey, "newcomer")).toEqual([1]);

    const error = await callError(t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["newcomer", "holder", "other"] }));
    expect(error).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "CODE_LIMIT_REACHED", metadata: { userId: "holder" } } });
    expect(await places(program.programKey, "newcomer")).toEqual([1]);
    expect(await codeCount(t, program.programKey, "other")).toBe(0);
  });

  it("with a limit of 1000 places, a user's next batch code takes the place after their last", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 1000 });
    for (let i = 0; i < 5; i++) await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["many", `once-${i}`] });
    expect(await places(program.programKey, "many")).toEqual([1, 2, 3, 4, 5]);
    expect(await places(program.programKey, "once-4")).toEqual([1]);
  });

  it("refuses duplicate users, an empty list and more than 1000 users", async () => {
    const program = await createProgram(t);
    const duplicate = await callError(t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: ["a", "b", "a"] }));
    expect(duplicate.info?.metadata.field).toBe("user_ids[2]");
    const empty = await callError(t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: [] }));
    expect(empty.info?.metadata.field).toBe("user_ids");
    const tooMany = await callError(
      t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: Array.from({ length: 1001 }, (_, i) => `u${i}`) }),
    );
    expect(tooMany.info?.metadata.field).toBe("user_ids");
    expect(await codeCount(t, program.programKey)).toBe(0);
  });
});

describe("GetCode", () => {
  it("finds a code whatever its case and surrounding spaces", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "olga" });
    const { code: found } = await t.grpc.getCode({ code: `  ${code!.code.toLowerCase()}\t` });
    expect(found).toEqual(code);
  });

  it("an unknown code is NOT_FOUND with CODE_NOT_FOUND", async () => {
    const error = await callError(t.grpc.getCode({ code: "NOPE-NOPE-NOPE" }));
    expect(error).toMatchObject({ code: Code.NotFound, info: { reason: "CODE_NOT_FOUND" } });
  });

  it("reports derived EXPIRED once expires_at passes", async () => {
    const program = await createProgram(t, { defaultCodeTtl: { seconds: 60n } });
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "pete" });
    expect(code?.status).toBe(CodeStatus.ACTIVE);
    clock.advance(61_000);
    const { code: later } = await t.grpc.getCode({ code: code!.code });
    expect(later?.status).toBe(CodeStatus.EXPIRED);
  });
});

describe("UpdateCode", () => {
  it("changes status, max_uses, expires_at and metadata as masked", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "quinn", metadata: { a: "1" } });
    const expiresAt = new Date(clock.now().getTime() + TestClock.DAY);
    const { code: updated } = await t.grpc.updateCode({
      code: { code: code!.code.toLowerCase(), status: CodeStatus.INACTIVE, maxUses: 9, expiresAt: timestampFromDate(expiresAt), metadata: { b: "2" } },
      updateMask: mask("status", "max_uses", "expires_at"),
    });
    expect(updated).toMatchObject({ status: CodeStatus.INACTIVE, maxUses: 9, metadata: { a: "1" } });
    expect(timestampDate(updated!.expiresAt!).getTime()).toBe(expiresAt.getTime());
    const { code: cleared } = await t.grpc.updateCode({ code: { code: code!.code }, updateMask: mask("max_uses", "expires_at") });
    expect(cleared?.maxUses).toBeUndefined();
    expect(cleared?.expiresAt).toBeUndefined();
  });

  it("lowering max_uses below uses_count is refused with MAX_USES_BELOW_USES_COUNT", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "rita" });
    for (const user of ["u1", "u2", "u3"]) await t.grpc.trackReferral({ code: code!.code, referredUserId: user, transactionId: `${code!.code}-${user}` });
    const error = await callError(t.grpc.updateCode({ code: { code: code!.code, maxUses: 2 }, updateMask: mask("max_uses") }));
    expect(error).toMatchObject({ code: Code.FailedPrecondition, info: { reason: "MAX_USES_BELOW_USES_COUNT", metadata: { field: "code.max_uses" } } });
    const { code: atCount } = await t.grpc.updateCode({ code: { code: code!.code, maxUses: 3 }, updateMask: mask("max_uses") });
    expect(atCount?.status).toBe(CodeStatus.EXHAUSTED);
  });

  it("refuses derived statuses, unknown fields, an empty mask and unknown codes", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "sam" });
    const derived = await callError(t.grpc.updateCode({ code: { code: code!.code, status: CodeStatus.EXPIRED }, updateMask: mask("status") }));
    expect(derived).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "code.status" } } });
    const field = await callError(t.grpc.updateCode({ code: { code: code!.code }, updateMask: mask("uses_count") }));
    expect(field.info?.metadata.field).toBe("update_mask");
    const empty = await callError(t.grpc.updateCode({ code: { code: code!.code } }));
    expect(empty.info?.metadata.field).toBe("update_mask");
    const missing = await callError(t.grpc.updateCode({ code: { code: "MISSING-CODE" }, updateMask: mask("metadata") }));
    expect(missing).toMatchObject({ code: Code.NotFound, info: { reason: "CODE_NOT_FOUND" } });
  });
});

describe("ListCodes", () => {
  it("filters by user, program and status, paging stably while codes are added", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 20 });
    const user = unique("lister");
    for (let i = 0; i < 7; i++) await t.grpc.createCode({ programKey: program.programKey, userId: user });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const response = await t.grpc.listCodes({ programKey: program.programKey, userId: user, pageSize: 3, pageToken });
      seen.push(...response.codes.map((c) => c.code));
      pageToken = response.nextPageToken;
      if (pages++ === 0) await t.grpc.createCode({ programKey: program.programKey, userId: user });
    } while (pageToken !== "");
    expect(seen).toHaveLength(8);
    expect(new Set(seen).size).toBe(8);

    await t.grpc.updateCode({ code: { code: seen[0]!, status: CodeStatus.SUSPENDED }, updateMask: mask("status") });
    const suspended = await t.grpc.listCodes({ programKey: program.programKey, status: CodeStatus.SUSPENDED });
    expect(suspended.codes.map((c) => c.code)).toEqual([seen[0]]);
    const active = await t.grpc.listCodes({ programKey: program.programKey, status: CodeStatus.ACTIVE });
    expect(active.codes).toHaveLength(7);
  });

  it("filters by derived EXPIRED", async () => {
    const program = await createProgram(t);
    const { code: soon } = await t.grpc.createCode({
      programKey: program.programKey,
      userId: "tess",
      expiresAt: timestampFromDate(new Date(clock.now().getTime() + 1000)),
    });
    await t.grpc.createCode({ programKey: program.programKey, userId: "tess" });
    clock.advance(2000);
    const expired = await t.grpc.listCodes({ programKey: program.programKey, status: CodeStatus.EXPIRED });
    expect(expired.codes.map((c) => c.code)).toEqual([soon!.code]);
    expect(expired.codes[0]?.status).toBe(CodeStatus.EXPIRED);
  });

  it("a page token is refused with other filters", async () => {
    const program = await createProgram(t);
    await t.grpc.createCode({ programKey: program.programKey, userId: "uma" });
    await t.grpc.createCode({ programKey: program.programKey, userId: "uma" });
    const { nextPageToken } = await t.grpc.listCodes({ programKey: program.programKey, pageSize: 1 });
    const error = await callError(t.grpc.listCodes({ programKey: program.programKey, userId: "uma", pageToken: nextPageToken }));
    expect(error.info?.metadata.field).toBe("page_token");
  });
});
