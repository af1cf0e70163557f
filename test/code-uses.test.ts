import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidateCodeResponse_Reason as Reason } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus, Recurrence } from "../src/gen/referral/v1/resources_pb.js";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer } from "./support/server.ts";

/**
 * max_uses counts referred users: a conversion takes a use whenever its
 * referred user holds none of the code's uses, and a user who holds one
 * converts again without taking another. ValidateCode answers the same.
 */
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

const reasonOf = async (call: Promise<unknown>) => (await callError(call)).info?.reason;
const usesOf = async (code: string) => (await t.grpc.getCode({ code })).code!.usesCount;
const validate = (code: string, referredUserId = "") => t.grpc.validateCode({ code, referredUserId });
const recurring = (reversalFreesUse: boolean) => ({ recurrence: Recurrence.RECURRING, conversionWindowDays: 30, reversalFreesUse, defaultCodeMaxUses: 1 });

describe("uses of a code", () => {
  it("a refunded user who comes back takes a use again, so max_uses = 1 is never passed", async () => {
    const { code } = await programWithCode(t, recurring(true));
    const [a, b] = [nextId("a"), nextId("b")];
    const first = (await track(t, code.code, { referredUserId: a })).referral!;
    expect(await usesOf(code.code)).toBe(1);
    await t.grpc.reverseReferral({ id: first.id, reason: "refund" });
    expect(await usesOf(code.code)).toBe(0);
    const second = (await track(t, code.code, { referredUserId: b })).referral!;
    expect(await usesOf(code.code)).toBe(1);

    // A holds no use any more and none is free.
    expect(await reasonOf(track(t, code.code, { referredUserId: a }))).toBe("CODE_EXHAUSTED");
    expect(await reasonOf(track(t, code.code, { referredUserId: a, validateOnly: true }))).toBe("CODE_EXHAUSTED");
    expect(await validate(code.code, a)).toMatchObject({ valid: false, reason: Reason.CODE_EXHAUSTED });
    // B holds the use: B may buy again.
    expect(await validate(code.code, b)).toMatchObject({ valid: true, reason: Reason.UNSPECIFIED });
    await track(t, code.code, { referredUserId: b });
    expect(await usesOf(code.code)).toBe(1);

    // Once all of B's purchases are refunded, the use is free for A again.
    const { referrals } = await t.grpc.listReferrals({ referredUserId: b });
    for (const r of referrals) await t.grpc.reverseReferral({ id: r.id, reason: "refund" });
    expect(await usesOf(code.code)).toBe(0);
    expect(second.id).toBeTruthy();
    await track(t, code.code, { referredUserId: a });
    expect(await usesOf(code.code)).toBe(1);
  });

  it("with reversal_frees_use false a refunded user keeps the use: they may come back, a new user may not", async () => {
    const { code } = await programWithCode(t, recurring(false));
    const [a, b] = [nextId("a"), nextId("b")];
    const first = (await track(t, code.code, { referredUserId: a })).referral!;
    await t.grpc.reverseReferral({ id: first.id, reason: "refund" });
    expect(await usesOf(code.code)).toBe(1);
    expect(await reasonOf(track(t, code.code, { referredUserId: b }))).toBe("CODE_EXHAUSTED");
    expect(await validate(code.code, b)).toMatchObject({ valid: false, reason: Reason.CODE_EXHAUSTED });
    expect(await validate(code.code, a)).toMatchObject({ valid: true });
    await track(t, code.code, { referredUserId: a });
    expect(await usesOf(code.code)).toBe(1);
  });

  it("a user who holds a use of an exhausted code may still use it (ValidateCode agrees); without a user it reads CODE_EXHAUSTED", async () => {
    const { code } = await programWithCode(t, recurring(true));
    const a = nextId("a");
    await track(t, code.code, { referredUserId: a });
    expect(await validate(code.code)).toMatchObject({ valid: false, reason: Reason.CODE_EXHAUSTED, code: { status: CodeStatus.EXHAUSTED } });
    expect(await validate(code.code, nextId("b"))).toMatchObject({ valid: false, reason: Reason.CODE_EXHAUSTED });
    expect(await validate(code.code, a)).toMatchObject({ valid: true, reason: Reason.UNSPECIFIED, code: { status: CodeStatus.EXHAUSTED } });
    expect((await track(t, code.code, { referredUserId: a, validateOnly: true })).referral?.id).toBe("");
  });

  it("a user converting through another code of the same referrer takes a use of that code too", async () => {
    const { program, code } = await programWithCode(t, recurring(true), "two-codes");
    const { code: other } = await t.grpc.createCode({ programKey: program.programKey, userId: "two-codes" });
    const a = nextId("a");
    await track(t, code.code, { referredUserId: a });
    await track(t, other!.code, { referredUserId: a });
    expect([await usesOf(code.code), await usesOf(other!.code)]).toEqual([1, 1]);
    expect(await reasonOf(track(t, other!.code, { referredUserId: nextId("b") }))).toBe("CODE_EXHAUSTED");
  });

  it("UpdateProgram cannot change reversal_frees_use: it decides what the codes already count", async () => {
    const { program } = await programWithCode(t, recurring(true));
    const error = await callError(
      t.grpc.updateProgram({ program: { programKey: program.programKey, reversalFreesUse: false }, updateMask: { paths: ["reversal_frees_use"] } }),
    );
    expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", metadata: { field: "update_mask" } });
    expect((await t.grpc.getProgram({ programKey: program.programKey })).program?.reversalFreesUse).toBe(true);
  });
});
