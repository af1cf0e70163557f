import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodeStatus, PayoutStatus, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { createProgram } from "./support/fixtures.ts";
import { nextId } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

let t: TestServer;
let programKey: string;
let percentKey: string;
let code: string;
beforeAll(async () => {
  t = await startTestServer();
  programKey = (await createProgram(t, { maxCodesPerUser: 1000 })).programKey;
  percentKey = (await createProgram(t, { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 100 })).programKey;
  code = (await t.grpc.createCode({ programKey, userId: "owner" })).code!.code;
});
afterAll(async () => {
  await t?.close();
});

const mask = (...paths: string[]) => create(FieldMaskSchema, { paths });
const hourFromNow = () => timestampFromDate(new Date(Date.now() + 3600_000));
const manyKeys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
const uuid = "00000000-0000-4000-8000-000000000000";

/** Rows a call could have written for this user (codes held, conversions made). */
async function writtenFor(userId: string): Promise<number> {
  return t.db.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT ((SELECT count(*) FROM referral_codes WHERE user_id = ${userId})
      + (SELECT count(*) FROM referral_trackings WHERE referred_user_id = ${userId}))::int AS n
  `);
}

type Case = [string, (user: string) => Promise<unknown>, string];

describe("code and referral RPCs refuse bad input with INVALID_ARGUMENT naming the field, writing nothing", () => {
  it.each<Case>([
    ["CreateCode without a program key", (u) => t.grpc.createCode({ programKey: "", userId: u }), "program_key"],
    ["CreateCode with a malformed program key", (u) => t.grpc.createCode({ programKey: "Not Valid", userId: u }), "program_key"],
    ["CreateCode without a user", () => t.grpc.createCode({ programKey, userId: "" }), "user_id"],
    ["CreateCode with a user id of 101 characters", () => t.grpc.createCode({ programKey, userId: "u".repeat(101) }), "user_id"],
    ["CreateCode with a control character in the user id", () => t.grpc.createCode({ programKey, userId: "a\u0007b" }), "user_id"],
    ["CreateCode with a vanity code of 3 characters", (u) => t.grpc.createCode({ programKey, userId: u, code: "ABC" }), "code"],
    ["CreateCode with a vanity code of 21 characters", (u) => t.grpc.createCode({ programKey, userId: u, code: "A".repeat(21) }), "code"],
    ["CreateCode with a vanity code containing !", (u) => t.grpc.createCode({ programKey, userId: u, code: "HELLO!" }), "code"],
    ["CreateCode with max_uses 0", (u) => t.grpc.createCode({ programKey, userId: u, maxUses: 0 }), "max_uses"],
    ["CreateCode with max_uses over 10^9", (u) => t.grpc.createCode({ programKey, userId: u, maxUses: 1_000_000_001 }), "max_uses"],
    ["CreateCode expiring in the past", (u) => t.grpc.createCode({ programKey, userId: u, expiresAt: timestampFromDate(new Date(1000)) }), "expires_at"],
    ["CreateCode with an invalid timestamp", (u) => t.grpc.createCode({ programKey, userId: u, expiresAt: { seconds: 999_999_999_999n } }), "expires_at"],
    ["CreateCode with 51 metadata keys", (u) => t.grpc.createCode({ programKey, userId: u, metadata: manyKeys(51) }), "metadata"],
    ["CreateCode with a request id of 256 characters", (u) => t.grpc.createCode({ programKey, userId: u, requestId: "r".repeat(256) }), "request_id"],
    ["BatchCreateCodes without users", () => t.grpc.batchCreateCodes({ programKey, userIds: [] }), "user_ids"],
    ["BatchCreateCodes with a blank user", (u) => t.grpc.batchCreateCodes({ programKey, userIds: [u, " "] }), "user_ids[1]"],
    ["BatchCreateCodes with a duplicate user", (u) => t.grpc.batchCreateCodes({ programKey, userIds: [u, "x", u] }), "user_ids[2]"],
    ["BatchCreateCodes without a program key", (u) => t.grpc.batchCreateCodes({ programKey: "", userIds: [u] }), "program_key"],
    ["GetCode without a code", () => t.grpc.getCode({ code: "" }), "code"],
    ["GetCode with a code of 65 characters", () => t.grpc.getCode({ code: "C".repeat(65) }), "code"],
    ["ListCodes with page size 1001", () => t.grpc.listCodes({ pageSize: 1001 }), "page_size"],
    ["ListCodes with a forged page token", () => t.grpc.listCodes({ pageToken: "forged" }), "page_token"],
    ["ListCodes with an unknown status", () => t.grpc.listCodes({ status: 42 as CodeStatus }), "status"],
    ["ListCodes with a malformed program key", () => t.grpc.listCodes({ programKey: "BAD KEY" }), "program_key"],
    ["ListCodes with a user id of 101 characters", () => t.grpc.listCodes({ userId: "u".repeat(101) }), "user_id"],
    ["UpdateCode without a code", () => t.grpc.updateCode({ updateMask: mask("status") }), "code"],
    ["UpdateCode to a derived status", () => t.grpc.updateCode({ code: { code, status: CodeStatus.EXHAUSTED }, updateMask: mask("status") }), "code.status"],
    ["UpdateCode with max_uses 0", () => t.grpc.updateCode({ code: { code, maxUses: 0 }, updateMask: mask("max_uses") }), "code.max_uses"],
    ["UpdateCode masking uses_count", () => t.grpc.updateCode({ code: { code, usesCount: 0 }, updateMask: mask("uses_count") }), "update_mask"],
    ["UpdateCode with metadata of 51 keys", () => t.grpc.updateCode({ code: { code, metadata: manyKeys(51) }, updateMask: mask("metadata") }), "code.metadata"],
    ["ValidateCode without a code", () => t.grpc.validateCode({ code: " " }), "code"],
    ["ValidateCode with a referred user of 101 characters", () => t.grpc.validateCode({ code, referredUserId: "r".repeat(101) }), "referred_user_id"],
    ["TrackReferral without a code", (u) => t.grpc.trackReferral({ code: "", referredUserId: u, transactionId: nextId("t") }), "code"],
    ["TrackReferral without a referred user", () => t.grpc.trackReferral({ code, referredUserId: "", transactionId: nextId("t") }), "referred_user_id"],
    ["TrackReferral with a transaction id of 256 characters", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: "t".repeat(256) }), "transaction_id"],
    ["TrackReferral with a negative amount", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), transactionAmountMinor: -1n }), "transaction_amount_minor"],
    ["TrackReferral with an amount over 10^15", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), transactionAmountMinor: 10n ** 15n + 1n }), "transaction_amount_minor"],
    ["TrackReferral with a lower-case currency", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), currency: "usd" }), "currency"],
    ["TrackReferral happening in an hour", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), occurredAt: hourFromNow() }), "occurred_at"],
    ["TrackReferral with 51 metadata keys", (u) => t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), metadata: manyKeys(51) }), "metadata"],
    ["GetReferral with a malformed id", () => t.grpc.getReferral({ id: "42" }), "id"],
    ["ListReferrals with page size -5", () => t.grpc.listReferrals({ pageSize: -5 }), "page_size"],
    ["ListReferrals with an unknown payout status", () => t.grpc.listReferrals({ payoutStatus: 9 as PayoutStatus }), "payout_status"],
    ["ListReferrals with an empty time range", () => t.grpc.listReferrals({ convertedAfter: hourFromNow(), convertedBefore: timestampFromDate(new Date()) }), "converted_before"],
    ["ListReferrals with a forged page token", () => t.grpc.listReferrals({ pageToken: "abc" }), "page_token"],
    ["UpdatePayoutStatus without a target", () => t.grpc.updatePayoutStatus({ referralIds: [uuid] }), "payout_status"],
    ["UpdatePayoutStatus with a malformed id", () => t.grpc.updatePayoutStatus({ referralIds: [uuid, "x"], payoutStatus: PayoutStatus.PAID }), "referral_ids[1]"],
    ["UpdatePayoutStatus with a reference of 256 characters", () => t.grpc.updatePayoutStatus({ referralIds: [uuid], payoutStatus: PayoutStatus.PAID, payoutReference: "p".repeat(256) }), "payout_reference"],
    ["UpdatePayoutStatus with a failure reason of 1025 characters", () => t.grpc.updatePayoutStatus({ referralIds: [uuid], payoutStatus: PayoutStatus.FAILED, failureReason: "f".repeat(1025) }), "failure_reason"],
    ["ReverseReferral without a reason", () => t.grpc.reverseReferral({ id: uuid, reason: "" }), "reason"],
    ["ReverseReferral with a reason of 1025 characters", () => t.grpc.reverseReferral({ id: uuid, reason: "r".repeat(1025) }), "reason"],
    ["ReverseReferral with a malformed id", () => t.grpc.reverseReferral({ id: "nope", reason: "refund" }), "id"],
    ["GetUserEarnings without a user", () => t.grpc.getUserEarnings({ userId: "" }), "user_id"],
    ["GetUserEarnings with a malformed program key", () => t.grpc.getUserEarnings({ userId: "u", programKey: "NOPE!" }), "program_key"],
  ])("%s", async (_case, call, field) => {
    const user = unique("bad-input");
    const error = await callError(call(user));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field } });
    expect(await writtenFor(user)).toBe(0);
  });

  it("TrackReferral on a PERCENTAGE program without an amount names transaction_amount_minor", async () => {
    const { code: percentCode } = await t.grpc.createCode({ programKey: percentKey, userId: "p-owner" });
    const user = unique("no-amount");
    const error = await callError(t.grpc.trackReferral({ code: percentCode!.code, referredUserId: user, transactionId: nextId("t") }));
    expect(error.info?.metadata.field).toBe("transaction_amount_minor");
    expect(await writtenFor(user)).toBe(0);
  });
});

describe("the boundaries are accepted", () => {
  it.each<[string, (user: string) => Promise<unknown>]>([
    ["a vanity code of 4 characters", (u) => t.grpc.createCode({ programKey, userId: u, code: unique("").replace(/[^a-z0-9]/g, "").slice(-4) })],
    ["a vanity code of 20 characters", (u) => t.grpc.createCode({ programKey, userId: u, code: `V${unique("").replace(/[^a-z0-9]/g, "")}`.padEnd(20, "_").slice(0, 20) })],
    ["a user id of 100 characters", (u) => t.grpc.createCode({ programKey, userId: u.padEnd(100, "x") })],
    ["max_uses 1 and 10^9", (u) => Promise.all([t.grpc.createCode({ programKey, userId: u, maxUses: 1 }), t.grpc.createCode({ programKey, userId: u, maxUses: 1_000_000_000 })])],
    ["50 metadata keys of 64 characters, values of 1024", (u) =>
      t.grpc.createCode({ programKey, userId: u, metadata: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padEnd(64, "m"), "v".repeat(1024)])) })],
    ["a request id of 255 characters", (u) => t.grpc.createCode({ programKey, userId: u, requestId: `${u}-`.padEnd(255, "r") })],
    ["page size 1000", () => t.grpc.listCodes({ programKey, pageSize: 1000 })],
    ["a transaction amount of 0 and of 10^15", (u) =>
      Promise.all([
        t.grpc.trackReferral({ code, referredUserId: `${u}-a`, transactionId: nextId("t"), transactionAmountMinor: 0n }),
        t.grpc.trackReferral({ code, referredUserId: `${u}-b`, transactionId: nextId("t"), transactionAmountMinor: 10n ** 15n }),
      ])],
    ["occurred_at a few seconds ahead (clock skew)", (u) =>
      t.grpc.trackReferral({ code, referredUserId: u, transactionId: nextId("t"), occurredAt: timestampFromDate(new Date(Date.now() + 5000)) })],
  ])("%s", async (_case, call) => {
    await expect(call(unique("edge"))).resolves.toBeDefined();
  });
});
