import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidateCodeResponse_Reason as Reason } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import { createProgram } from "./support/fixtures.ts";
import { nextId } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

const clock = new TestClock();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ clock });
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });

async function newCode(programOverrides: Parameters<typeof createProgram>[1] = {}, userId = "referrer") {
  const program = await createProgram(t, programOverrides);
  const { code } = await t.grpc.createCode({ programKey: program.programKey, userId });
  return { program, code: code! };
}

/** A real conversion through the code, refunded when asked. */
async function recordConversion(code: string, referredUserId: string, options: { reversed?: boolean } = {}) {
  const request = { code, referredUserId, transactionId: nextId("t"), transactionAmountMinor: 1000n };
  const { referral } = await t.grpc.trackReferral(request);
  if (options.reversed) await t.grpc.reverseReferral({ id: referral!.id, reason: "refund" });
}

async function rowState(code: string) {
  return t.db.one(sql.type(z.object({ uses_count: z.number(), updated_at: z.date() }))`
    SELECT uses_count, updated_at FROM referral_codes WHERE code = ${code}
  `);
}

describe("ValidateCode", () => {
  it("a usable code is valid, with the reward its owner would earn", async () => {
    const { code } = await newCode({ rewardAmountMinor: 1500n });
    const response = await t.grpc.validateCode({ code: ` ${code.code.toLowerCase()} ` });
    expect(response).toMatchObject({ valid: true, reason: Reason.UNSPECIFIED, code: { code: code.code, status: CodeStatus.ACTIVE } });
    expect(response.reward).toMatchObject({ rewardKind: RewardKind.FIXED, amountMinor: 1500n, currency: "USD" });
  });

  it("an unknown code is valid=false with CODE_NOT_FOUND, not an error", async () => {
    const response = await t.grpc.validateCode({ code: "NO-SUCH-CODE" });
    expect(response).toMatchObject({ valid: false, reason: Reason.CODE_NOT_FOUND });
    expect(response.code).toBeUndefined();
  });

  it("an inactive program is PROGRAM_INACTIVE, before the code's own state", async () => {
    const { program, code } = await newCode();
    await t.grpc.updateCode({ code: { code: code.code, status: CodeStatus.SUSPENDED }, updateMask: mask("status") });
    await t.grpc.updateProgram({ program: { programKey: program.programKey, active: false }, updateMask: mask("active") });
    expect(await t.grpc.validateCode({ code: code.code })).toMatchObject({ valid: false, reason: Reason.PROGRAM_INACTIVE });
  });

  it.each([
    [CodeStatus.INACTIVE, Reason.CODE_INACTIVE],
    [CodeStatus.SUSPENDED, Reason.CODE_SUSPENDED],
  ])("a code with status %s is invalid with reason %s", async (status, reason) => {
    const { code } = await newCode();
    await t.grpc.updateCode({ code: { code: code.code, status }, updateMask: mask("status") });
    expect(await t.grpc.validateCode({ code: code.code })).toMatchObject({ valid: false, reason, code: { status } });
  });

  it("an expired code is CODE_EXPIRED once the clock passes expires_at", async () => {
    const { code } = await newCode({ defaultCodeTtl: { seconds: 3600n } });
    expect((await t.grpc.validateCode({ code: code.code })).valid).toBe(true);
    clock.advance(3600_000);
    expect(await t.grpc.validateCode({ code: code.code })).toMatchObject({
      valid: false,
      reason: Reason.CODE_EXPIRED,
      code: { status: CodeStatus.EXPIRED },
    });
  });

  it("a code at max_uses is CODE_EXHAUSTED; expiry is reported first", async () => {
    const { code } = await newCode({ defaultCodeMaxUses: 1 });
    await recordConversion(code.code, "first-friend");
    expect(await t.grpc.validateCode({ code: code.code })).toMatchObject({
      valid: false,
      reason: Reason.CODE_EXHAUSTED,
      code: { status: CodeStatus.EXHAUSTED, usesCount: 1 },
    });
    await t.grpc.updateCode({ code: { code: code.code, expiresAt: timestampFromDate(new Date(clock.now().getTime() - 1)) }, updateMask: mask("expires_at") });
    expect((await t.grpc.validateCode({ code: code.code })).reason).toBe(Reason.CODE_EXPIRED);
  });

  it("the owner validating their own code is SELF_REFERRAL unless the program allows it", async () => {
    const { code } = await newCode({}, "owner");
    expect(await t.grpc.validateCode({ code: code.code, referredUserId: "owner" })).toMatchObject({ valid: false, reason: Reason.SELF_REFERRAL });
    expect((await t.grpc.validateCode({ code: code.code })).valid).toBe(true);
    const { code: allowed } = await newCode({ allowSelfReferral: true }, "owner");
    expect((await t.grpc.validateCode({ code: allowed.code, referredUserId: "owner" })).valid).toBe(true);
  });

  it("a user attributed to another referrer is ALREADY_REFERRED", async () => {
    const program = await createProgram(t);
    const { code: first } = await t.grpc.createCode({ programKey: program.programKey, userId: "referrer-a" });
    const { code: second } = await t.grpc.createCode({ programKey: program.programKey, userId: "referrer-b" });
    await recordConversion(first!.code, "friend");
    expect(await t.grpc.validateCode({ code: second!.code, referredUserId: "friend" })).toMatchObject({
      valid: false,
      reason: Reason.ALREADY_REFERRED,
    });
    expect((await t.grpc.validateCode({ code: second!.code, referredUserId: "someone-else" })).valid).toBe(true);
  });

  it("in a ONE_TIME program a user who converted is ALREADY_CONVERTED, even after a refund; RECURRING allows more", async () => {
    const { code } = await newCode({ recurrence: Recurrence.ONE_TIME });
    await recordConversion(code.code, "buyer");
    expect(await t.grpc.validateCode({ code: code.code, referredUserId: "buyer" })).toMatchObject({ valid: false, reason: Reason.ALREADY_CONVERTED });

    const { code: recurring } = await newCode({ recurrence: Recurrence.RECURRING });
    await recordConversion(recurring.code, "buyer");
    expect((await t.grpc.validateCode({ code: recurring.code, referredUserId: "buyer" })).valid).toBe(true);

    const { code: refunded } = await newCode({ recurrence: Recurrence.ONE_TIME });
    await recordConversion(refunded.code, "refunded-buyer", { reversed: true });
    expect((await t.grpc.validateCode({ code: refunded.code, referredUserId: "refunded-buyer" })).reason).toBe(Reason.ALREADY_CONVERTED);
  });

  it("the reward follows the tier the referrer has reached", async () => {
    const { code } = await newCode({
      rewardKind: RewardKind.PERCENTAGE,
      rewardAmountMinor: 0n,
      rewardBasisPoints: 500,
      tiers: [
        { minPriorRewards: 2, rewardBasisPoints: 700 },
        { minPriorRewards: 3, rewardBasisPoints: 1000 },
      ],
    });
    const bp = async () => (await t.grpc.validateCode({ code: code.code })).reward?.basisPoints;
    expect(await bp()).toBe(500);
    await recordConversion(code.code, "f1");
    await recordConversion(code.code, "f2");
    expect(await bp()).toBe(700);
    await recordConversion(code.code, "f3", { reversed: true });
    expect(await bp()).toBe(700);
    await recordConversion(code.code, "f4");
    expect(await bp()).toBe(1000);
  });

  it("has no side effects", async () => {
    const { code } = await newCode();
    const before = await rowState(code.code);
    await Promise.all(Array.from({ length: 50 }, () => t.grpc.validateCode({ code: code.code, referredUserId: "looker" })));
    expect(await rowState(code.code)).toEqual(before);
  });

  it("bad input is INVALID_ARGUMENT naming the field", async () => {
    const empty = await callError(t.grpc.validateCode({ code: "  " }));
    expect(empty).toMatchObject({ code: Code.InvalidArgument, info: { metadata: { field: "code" } } });
    const long = await callError(t.grpc.validateCode({ code: "X".repeat(65) }));
    expect(long.info?.metadata.field).toBe("code");
    const user = await callError(t.grpc.validateCode({ code: "ABCDEF", referredUserId: "u".repeat(101) }));
    expect(user.info?.metadata.field).toBe("referred_user_id");
  });
});

describe("ValidateCode under concurrency (coalesced reads)", () => {
  it("300 concurrent calls for different codes and users each get their own answer", async () => {
    const program = await createProgram(t, { maxCodesPerUser: 100 });
    const { codes } = await t.grpc.batchCreateCodes({ programKey: program.programKey, userIds: Array.from({ length: 50 }, (_, i) => `owner-${i}`) });
    const suspended = codes.slice(0, 10).map((c) => c.code);
    for (const code of suspended) await t.grpc.updateCode({ code: { code, status: CodeStatus.SUSPENDED }, updateMask: mask("status") });
    const calls = Array.from({ length: 300 }, (_, i) => {
      const code = i % 7 === 0 ? `MISSING-${i}` : codes[i % codes.length]!.code;
      const referredUserId = i % 5 === 0 ? `owner-${i % codes.length}` : `friend-${i}`;
      return { code, referredUserId };
    });
    const answers = await Promise.all(calls.map((call) => t.grpc.validateCode(call)));
    answers.forEach((answer, i) => {
      const { code, referredUserId } = calls[i]!;
      const expected = code.startsWith("MISSING")
        ? Reason.CODE_NOT_FOUND
        : suspended.includes(code)
          ? Reason.CODE_SUSPENDED
          : referredUserId === codes.find((c) => c.code === code)!.userId
            ? Reason.SELF_REFERRAL
            : Reason.UNSPECIFIED;
      expect(answer.reason, `${code} for ${referredUserId}`).toBe(expected);
      if (!code.startsWith("MISSING")) expect(answer.code?.code).toBe(code);
    });
  });

  it("many concurrent calls for one code share lookups, yet each gets the answer for its own referred user", async () => {
    const program = await createProgram(t);
    const { code } = await t.grpc.createCode({ programKey: program.programKey, userId: "popular-owner" });
    await t.grpc.trackReferral({ code: code!.code, referredUserId: "converted-friend", transactionId: "popular-1", transactionAmountMinor: 100n });
    const referred = ["", "popular-owner", "converted-friend", "new-friend"];
    const calls = Array.from({ length: 300 }, (_, i) => ({ code: i % 2 === 0 ? code!.code : code!.code.toLowerCase(), referredUserId: referred[i % 4]! }));
    const answers = await Promise.all(calls.map((call) => t.grpc.validateCode(call)));
    const expected: Record<string, Reason> = {
      "": Reason.UNSPECIFIED,
      "popular-owner": Reason.SELF_REFERRAL,
      "converted-friend": Reason.ALREADY_CONVERTED,
      "new-friend": Reason.UNSPECIFIED,
    };
    answers.forEach((answer, i) => {
      expect(answer.reason, `for ${calls[i]!.referredUserId || "no referred user"}`).toBe(expected[calls[i]!.referredUserId]);
      expect(answer.code?.usesCount).toBe(1);
    });
  });
});
