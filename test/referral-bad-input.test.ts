import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { sql } from "slonik";
import { z } from "zod";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ReferralCodeService, type TrackReferralRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { PayoutStatus, Recurrence, RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { TestClock } from "./support/clock.ts";
import type { GrpcCallError } from "./support/grpc-js-client.ts";
import { nextId, programWithCode, track } from "./support/referrals.ts";
import { callError, startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * Bad input for every field of the referral RPCs (TrackReferral, GetReferral,
 * ListReferrals, UpdatePayoutStatus, ReverseReferral, GetUserEarnings):
 * INVALID_ARGUMENT with reason INVALID_ARGUMENT, domain referral.v1 and the
 * proto path of the field, and nothing written. The boundaries themselves are
 * accepted.
 */
// An hour ahead of the database, so every code here existed before the
// clock's now (a conversion cannot be dated before its code existed).
const clock = new TestClock(new Date(Date.now() + 3600_000));
let t: TestServer;
/** Programs only this file writes to; a code in each, held by `referrer`. */
let referrer: string;
let fixed: { programKey: string; code: string };
let percent: { programKey: string; code: string };
let recurring: { programKey: string; code: string };
/** A PENDING referral (hold 0: payable now) that payout and reversal cases aim at. */
let pendingId: string;
beforeAll(async () => {
  t = await startTestServer({ clock });
  referrer = unique("referrer");
  const asPair = ({ program, code }: Awaited<ReturnType<typeof programWithCode>>) => ({ programKey: program.programKey, code: code.code });
  fixed = asPair(await programWithCode(t, {}, referrer));
  percent = asPair(await programWithCode(t, { rewardKind: RewardKind.PERCENTAGE, rewardAmountMinor: 0n, rewardBasisPoints: 100 }, referrer));
  recurring = asPair(await programWithCode(t, { recurrence: Recurrence.RECURRING }, referrer));
  pendingId = (await track(t, fixed.code)).referral!.id;
});
afterAll(async () => {
  await t?.close();
});

const UNKNOWN_ID = "00000000-0000-4000-8000-00000000abcd";
const at = (offsetMs: number) => timestampFromDate(new Date(clock.now().getTime() + offsetMs));
const nowSeconds = () => BigInt(Math.floor(clock.now().getTime() / 1000));
const manyKeys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
const fullMetadata = () => Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}`.padEnd(64, "m"), "v".repeat(1024)]));
const ids = (n: number) => Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);

/**
 * Everything a referral RPC could write in this file's programs: their
 * conversions, their codes (uses_count) and the programs (budget counters).
 */
async function state() {
  const keys = [fixed.programKey, percent.programKey, recurring.programKey];
  return t.db.one(sql.type(z.object({ referrals: z.number(), digest: z.string() }))`
    SELECT
      (SELECT count(*)::int FROM referral_trackings r JOIN referral_programs p ON p.id = r.program_id
        WHERE p.program_key = ANY(${sql.array(keys, "text")})) AS referrals,
      md5(
        coalesce((SELECT string_agg(r::text, '|' ORDER BY r.id) FROM referral_trackings r JOIN referral_programs p ON p.id = r.program_id
          WHERE p.program_key = ANY(${sql.array(keys, "text")})), '')
        || coalesce((SELECT string_agg(c::text, '|' ORDER BY c.id) FROM referral_codes c JOIN referral_programs p ON p.id = c.program_id
          WHERE p.program_key = ANY(${sql.array(keys, "text")})), '')
        || coalesce((SELECT string_agg(p::text, '|' ORDER BY p.id) FROM referral_programs p
          WHERE p.program_key = ANY(${sql.array(keys, "text")})), '')
      ) AS digest
  `);
}

async function referralCount(programKey: string): Promise<number> {
  return t.db.oneFirst(sql.type(z.object({ count: z.number() }))`
    SELECT count(*)::int AS count FROM referral_trackings r JOIN referral_programs p ON p.id = r.program_id
    WHERE p.program_key = ${programKey}
  `);
}

async function expectInvalidArgument(call: Promise<unknown>, field: string) {
  const error = await callError(call);
  expect(error.code).toBe(Code.InvalidArgument);
  expect(error.info).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "referral.v1", metadata: { field } });
}

type Refusal = [string, () => Promise<unknown>, string];
type TrackRequest = MessageInitShape<typeof TrackReferralRequestSchema>;

describe("refusals write nothing", () => {
  let before: Awaited<ReturnType<typeof state>>;
  beforeEach(async () => {
    before = await state();
  });
  const expectNothingWritten = async () => {
    expect(await state()).toEqual(before);
    expect((await t.grpc.getReferral({ id: pendingId })).referral?.payoutStatus).toBe(PayoutStatus.PENDING);
  };

  describe("TrackReferral refuses bad input with INVALID_ARGUMENT naming the field", () => {
    const trackFixed = (request: TrackRequest) => track(t, fixed.code, request);

    it.each<Refusal>([
      ["without a code", () => trackFixed({ code: "" }), "code"],
      ["with a blank code", () => trackFixed({ code: "   " }), "code"],
      ["with a code of 65 characters", () => trackFixed({ code: "C".repeat(65) }), "code"],
      ["with a NUL in the code", () => trackFixed({ code: `${fixed.code}\u0000` }), "code"],
      ["without a referred user", () => trackFixed({ referredUserId: "" }), "referred_user_id"],
      ["with a blank referred user", () => trackFixed({ referredUserId: " \t " }), "referred_user_id"],
      ["with a referred user of 101 characters", () => trackFixed({ referredUserId: "r".repeat(101) }), "referred_user_id"],
      ["with a control character in the referred user", () => trackFixed({ referredUserId: "a\rb" }), "referred_user_id"],
      ["with a NUL in the referred user", () => trackFixed({ referredUserId: "a\u0000b" }), "referred_user_id"],
      ["with a transaction id of 256 characters", () => trackFixed({ transactionId: "x".repeat(256) }), "transaction_id"],
      ["with a NUL in the transaction id", () => trackFixed({ transactionId: "txn\u0000" }), "transaction_id"],
      ["with a negative amount", () => trackFixed({ transactionAmountMinor: -1n }), "transaction_amount_minor"],
      ["with an amount over 10^15", () => trackFixed({ transactionAmountMinor: 10n ** 15n + 1n }), "transaction_amount_minor"],
      ["with the int64 maximum as amount", () => trackFixed({ transactionAmountMinor: 2n ** 63n - 1n }), "transaction_amount_minor"],
      ["with the int64 minimum as amount", () => trackFixed({ transactionAmountMinor: -(2n ** 63n) }), "transaction_amount_minor"],
      ["with a lower-case currency", () => trackFixed({ currency: "usd" }), "currency"],
      ["with a two-letter currency", () => trackFixed({ currency: "US" }), "currency"],
      ["with a four-letter currency", () => trackFixed({ currency: "USDX" }), "currency"],
      ["with a digit in the currency", () => trackFixed({ currency: "U5D" }), "currency"],
      ["happening 61 seconds ahead, past the allowed clock skew", () => trackFixed({ occurredAt: at(61_000) }), "occurred_at"],
      ["happening in a day", () => trackFixed({ occurredAt: at(TestClock.DAY) }), "occurred_at"],
      ["with negative nanos in occurred_at", () => trackFixed({ occurredAt: { seconds: nowSeconds() - 60n, nanos: -1 } }), "occurred_at"],
      ["with nanos of a whole second in occurred_at", () => trackFixed({ occurredAt: { seconds: nowSeconds() - 60n, nanos: 1_000_000_000 } }), "occurred_at"],
      ["with occurred_at before year 1", () => trackFixed({ occurredAt: { seconds: -62_135_596_801n } }), "occurred_at"],
      ["with occurred_at at the start of the Timestamp range", () => trackFixed({ occurredAt: { seconds: -62_135_596_800n } }), "occurred_at"],
      ["with occurred_at 31 days ago, past MAX_BACKDATE_DAYS", () => trackFixed({ occurredAt: at(-31 * TestClock.DAY) }), "occurred_at"],
      ["with 51 metadata keys", () => trackFixed({ metadata: manyKeys(51) }), "metadata"],
      ["with a metadata key of 65 characters", () => trackFixed({ metadata: { ["k".repeat(65)]: "v" } }), "metadata"],
      ["with an empty metadata key", () => trackFixed({ metadata: { "": "v" } }), "metadata"],
      ["with a metadata value of 1025 characters", () => trackFixed({ metadata: { order: "o".repeat(1025) } }), "metadata.order"],
      ["with a NUL in a metadata value", () => trackFixed({ metadata: { order: "o\u0000" } }), "metadata.order"],
      ["with validate_only, still validated", () => trackFixed({ validateOnly: true, currency: "usd" }), "currency"],
      ["on a PERCENTAGE program without an amount", () => track(t, percent.code, {}), "transaction_amount_minor"],
      ["on a RECURRING program without a transaction id", () => track(t, recurring.code, { transactionId: "" }), "transaction_id"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("GetReferral refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without an id", () => t.grpc.getReferral({ id: "" }), "id"],
      ["with a number for an id", () => t.grpc.getReferral({ id: "42" }), "id"],
      ["with an id one character short", () => t.grpc.getReferral({ id: pendingId.slice(0, -1) }), "id"],
      ["with a non-hex character in the id", () => t.grpc.getReferral({ id: `g${pendingId.slice(1)}` }), "id"],
      ["with the id in braces", () => t.grpc.getReferral({ id: `{${pendingId}}` }), "id"],
      ["with the id and surrounding spaces", () => t.grpc.getReferral({ id: ` ${pendingId} ` }), "id"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("ListReferrals refuses bad input with INVALID_ARGUMENT naming the field", () => {
    // Two conversions, so a listing of one per page has a next_page_token.
    beforeAll(async () => {
      await track(t, fixed.code);
    });

    /** A real next_page_token of this program's listing, its JSON body changed by `edit`. */
    async function tamperedToken(edit: (body: { k: unknown[]; f: unknown }) => void): Promise<string> {
      const { nextPageToken } = await t.grpc.listReferrals({ programKey: fixed.programKey, pageSize: 1 });
      expect(nextPageToken).not.toBe("");
      const body = JSON.parse(Buffer.from(nextPageToken, "base64url").toString("utf8")) as { k: unknown[]; f: unknown };
      edit(body);
      return Buffer.from(JSON.stringify(body)).toString("base64url");
    }
    const listFixed = (pageToken: string) => t.grpc.listReferrals({ programKey: fixed.programKey, pageSize: 1, pageToken });

    it.each<Refusal>([
      ["with a negative page size", () => t.grpc.listReferrals({ pageSize: -5 }), "page_size"],
      ["with page size 1001", () => t.grpc.listReferrals({ pageSize: 1001 }), "page_size"],
      ["with a page token that is not one", () => t.grpc.listReferrals({ pageToken: "abc" }), "page_token"],
      ["with a page token of 1025 characters", () => t.grpc.listReferrals({ pageToken: "a".repeat(1025) }), "page_token"],
      [
        "with a page token issued for other filters",
        async () => {
          const { nextPageToken } = await t.grpc.listReferrals({ programKey: fixed.programKey, pageSize: 1 });
          expect(nextPageToken).not.toBe("");
          return t.grpc.listReferrals({ programKey: fixed.programKey, referrerUserId: referrer, pageSize: 1, pageToken: nextPageToken });
        },
        "page_token",
      ],
      [
        "with a page token of ListCodes",
        async () => {
          const codes = await t.grpc.listCodes({ pageSize: 1 });
          return t.grpc.listReferrals({ pageToken: codes.nextPageToken || "eyJrIjpbXSwiZiI6IngifQ" });
        },
        "page_token",
      ],
      ["with a page token whose time is not one", async () => listFixed(await tamperedToken((b) => (b.k = ["yesterday", b.k[1]]))), "page_token"],
      ["with a page token whose id is not a UUID", async () => listFixed(await tamperedToken((b) => (b.k = [b.k[0], "1 OR 1=1"]))), "page_token"],
      ["with a page token of one key part", async () => listFixed(await tamperedToken((b) => (b.k = [b.k[0]]))), "page_token"],
      ["with a referrer of 101 characters", () => t.grpc.listReferrals({ referrerUserId: "r".repeat(101) }), "referrer_user_id"],
      ["with a blank referrer", () => t.grpc.listReferrals({ referrerUserId: "  " }), "referrer_user_id"],
      ["with a control character in the referred user", () => t.grpc.listReferrals({ referredUserId: "a\u0007b" }), "referred_user_id"],
      ["with a referred user of 101 characters", () => t.grpc.listReferrals({ referredUserId: "r".repeat(101) }), "referred_user_id"],
      ["with a malformed program key", () => t.grpc.listReferrals({ programKey: "NOPE!" }), "program_key"],
      ["with an unknown payout status", () => t.grpc.listReferrals({ payoutStatus: 9 as PayoutStatus }), "payout_status"],
      ["with negative nanos in converted_after", () => t.grpc.listReferrals({ convertedAfter: { seconds: nowSeconds(), nanos: -1 } }), "converted_after"],
      ["with converted_before after year 9999", () => t.grpc.listReferrals({ convertedBefore: { seconds: 253_402_300_800n } }), "converted_before"],
      ["with converted_before equal to converted_after", () => t.grpc.listReferrals({ convertedAfter: at(0), convertedBefore: at(0) }), "converted_before"],
      ["with converted_before earlier than converted_after", () => t.grpc.listReferrals({ convertedAfter: at(3600_000), convertedBefore: at(0) }), "converted_before"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("UpdatePayoutStatus refuses bad input with INVALID_ARGUMENT naming the field", () => {
    const pay = (referralIds: string[], extra: { payoutReference?: string; failureReason?: string } = {}) =>
      t.grpc.updatePayoutStatus({ referralIds, payoutStatus: PayoutStatus.PAID, ...extra });

    it.each<Refusal>([
      ["without ids", () => pay([]), "referral_ids"],
      ["with 1001 ids", () => pay([pendingId, ...ids(1000)]), "referral_ids"],
      ["with an empty id", () => pay([pendingId, ""]), "referral_ids[1]"],
      ["with a malformed id", () => pay([pendingId, UNKNOWN_ID, "not-a-uuid"]), "referral_ids[2]"],
      ["with a duplicate id", () => pay([pendingId, UNKNOWN_ID, pendingId]), "referral_ids[2]"],
      ["with a duplicate id differing only in case", () => pay([pendingId, pendingId.toUpperCase()]), "referral_ids[1]"],
      ["without a target status", () => t.grpc.updatePayoutStatus({ referralIds: [pendingId] }), "payout_status"],
      ["to REVERSED (ReverseReferral's job)", () => t.grpc.updatePayoutStatus({ referralIds: [pendingId], payoutStatus: PayoutStatus.REVERSED }), "payout_status"],
      ["to an unknown status", () => t.grpc.updatePayoutStatus({ referralIds: [pendingId], payoutStatus: 99 as PayoutStatus }), "payout_status"],
      ["with a payout reference of 256 characters", () => pay([pendingId], { payoutReference: "p".repeat(256) }), "payout_reference"],
      ["with a NUL in the payout reference", () => pay([pendingId], { payoutReference: "tr\u0000_1" }), "payout_reference"],
      [
        "with a failure reason of 1025 characters",
        () => t.grpc.updatePayoutStatus({ referralIds: [pendingId], payoutStatus: PayoutStatus.FAILED, failureReason: "f".repeat(1025) }),
        "failure_reason",
      ],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("ReverseReferral refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without an id", () => t.grpc.reverseReferral({ id: "", reason: "refund" }), "id"],
      ["with a malformed id", () => t.grpc.reverseReferral({ id: "nope", reason: "refund" }), "id"],
      ["without a reason", () => t.grpc.reverseReferral({ id: pendingId, reason: "" }), "reason"],
      ["with a blank reason", () => t.grpc.reverseReferral({ id: pendingId, reason: " \n " }), "reason"],
      ["with a reason of 1025 characters", () => t.grpc.reverseReferral({ id: pendingId, reason: "r".repeat(1025) }), "reason"],
      ["with a NUL in the reason", () => t.grpc.reverseReferral({ id: pendingId, reason: "refund\u0000" }), "reason"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("GetUserEarnings refuses bad input with INVALID_ARGUMENT naming the field", () => {
    it.each<Refusal>([
      ["without a user", () => t.grpc.getUserEarnings({ userId: "" }), "user_id"],
      ["with a blank user", () => t.grpc.getUserEarnings({ userId: "   " }), "user_id"],
      ["with a user id of 101 characters", () => t.grpc.getUserEarnings({ userId: "u".repeat(101) }), "user_id"],
      ["with a control character in the user id", () => t.grpc.getUserEarnings({ userId: "a\u007fb" }), "user_id"],
      ["with a malformed program key", () => t.grpc.getUserEarnings({ userId: referrer, programKey: "Upper" }), "program_key"],
      ["with a program key of 101 characters", () => t.grpc.getUserEarnings({ userId: referrer, programKey: "p".repeat(101) }), "program_key"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });
  });

  describe("the other protocols get the same INVALID_ARGUMENT and field", () => {
    it.each<Refusal>([
      ["Connect: TrackReferral with a negative amount", () => t.connect.trackReferral({ code: fixed.code, referredUserId: nextId("f"), transactionAmountMinor: -1n }), "transaction_amount_minor"],
      ["Connect: TrackReferral happening in an hour", () => t.connect.trackReferral({ code: fixed.code, referredUserId: nextId("f"), occurredAt: at(3600_000) }), "occurred_at"],
      ["Connect: ListReferrals with page size 1001", () => t.connect.listReferrals({ pageSize: 1001 }), "page_size"],
      ["Connect: UpdatePayoutStatus with a duplicate id", () => t.connect.updatePayoutStatus({ referralIds: [pendingId, pendingId], payoutStatus: PayoutStatus.PAID }), "referral_ids[1]"],
    ])("%s", async (_case, call, field) => {
      await expectInvalidArgument(call(), field);
      await expectNothingWritten();
    });

    it.each<Refusal>([
      ["grpc-js: TrackReferral with a lower-case currency", () => t.grpcJs.unary(ReferralCodeService.method.trackReferral, { code: fixed.code, referredUserId: nextId("f"), currency: "usd" }), "currency"],
      ["grpc-js: GetReferral with a malformed id", () => t.grpcJs.unary(ReferralCodeService.method.getReferral, { id: "42" }), "id"],
      ["grpc-js: UpdatePayoutStatus without a target status", () => t.grpcJs.unary(ReferralCodeService.method.updatePayoutStatus, { referralIds: [pendingId] }), "payout_status"],
      ["grpc-js: ReverseReferral without a reason", () => t.grpcJs.unary(ReferralCodeService.method.reverseReferral, { id: pendingId, reason: "" }), "reason"],
      ["grpc-js: GetUserEarnings without a user", () => t.grpcJs.unary(ReferralCodeService.method.getUserEarnings, { userId: "" }), "user_id"],
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

describe("TrackReferral accepts the boundaries", () => {
  it.each<[string, () => { code: string; programKey: string; request: TrackRequest; earned: bigint }]>([
    ["an amount of 0", () => ({ ...fixed, request: { transactionAmountMinor: 0n }, earned: 1500n })],
    ["an amount of 0 on a PERCENTAGE program (no reward)", () => ({ ...percent, request: { transactionAmountMinor: 0n }, earned: 0n })],
    ["an amount of 10^15 on a PERCENTAGE program", () => ({ ...percent, request: { transactionAmountMinor: 10n ** 15n }, earned: 10n ** 13n })],
    ["occurred_at 5 seconds ahead, within the clock skew", () => ({ ...fixed, request: { occurredAt: at(5000) }, earned: 1500n })],
    ["occurred_at a minute ago, after the code existed", () => ({ ...fixed, request: { occurredAt: at(-60_000) }, earned: 1500n })],
    ["a referred user of 100 characters", () => ({ ...fixed, request: { referredUserId: nextId("friend").padEnd(100, "f") }, earned: 1500n })],
    ["a transaction id of 255 characters", () => ({ ...fixed, request: { transactionId: nextId("txn").padEnd(255, "t") }, earned: 1500n })],
    ["the program's currency given explicitly", () => ({ ...fixed, request: { currency: "USD" }, earned: 1500n })],
    ["metadata of 50 keys of 64 characters with values of 1024", () => ({ ...fixed, request: { metadata: fullMetadata() }, earned: 1500n })],
    ["a code in lower case with surrounding spaces", () => ({ ...fixed, request: { code: ` ${fixed.code.toLowerCase()}\t` }, earned: 1500n })],
  ])("%s", async (_case, setup) => {
    const { code, programKey, request, earned } = setup();
    const before = await referralCount(programKey);
    const { referral } = await track(t, code, request);
    expect(referral).toMatchObject({ programKey, code, referrerUserId: referrer, amountEarnedMinor: earned, currency: "USD" });
    if (request.transactionAmountMinor !== undefined) expect(referral?.transactionAmountMinor).toBe(request.transactionAmountMinor);
    if (request.occurredAt !== undefined) expect(timestampDate(referral!.convertedAt!).getTime()).toBe(timestampDate(request.occurredAt as ReturnType<typeof at>).getTime());
    if (request.referredUserId !== undefined) expect(referral?.referredUserId).toBe(request.referredUserId);
    if (request.transactionId !== undefined) expect(referral?.transactionId).toBe(request.transactionId);
    if (request.metadata !== undefined) expect(referral?.metadata).toEqual(request.metadata);
    expect(await referralCount(programKey)).toBe(before + 1);
  });

  it("validate_only at every boundary answers the referral and writes nothing", async () => {
    const before = await state();
    const { referral } = await track(t, percent.code, {
      validateOnly: true,
      referredUserId: "v".repeat(100),
      transactionId: "t".repeat(255),
      transactionAmountMinor: 10n ** 15n,
      occurredAt: at(5000),
      metadata: fullMetadata(),
    });
    expect(referral).toMatchObject({ id: "", amountEarnedMinor: 10n ** 13n });
    expect(await state()).toEqual(before);
  });
});

describe("the referral lookups and changes accept the boundaries", () => {
  it("GetReferral takes an id in upper case", async () => {
    expect((await t.grpc.getReferral({ id: pendingId.toUpperCase() })).referral?.id).toBe(pendingId);
  });

  it("GetReferral of a well-formed unknown id passes validation and is NOT_FOUND", async () => {
    expect(await callError(t.grpc.getReferral({ id: UNKNOWN_ID }))).toMatchObject({ code: Code.NotFound, info: { reason: "REFERRAL_NOT_FOUND" } });
  });

  it.each([
    ["page size 1000", { pageSize: 1000 }],
    ["page size 0 (the default)", { pageSize: 0 }],
    ["a referrer and a referred user of 100 characters", { referrerUserId: "r".repeat(100), referredUserId: "f".repeat(100) }],
    ["a program key of 100 characters", { programKey: "p".repeat(100) }],
    ["payout status REVERSED", { payoutStatus: PayoutStatus.REVERSED }],
  ])("ListReferrals with %s", async (_case, request) => {
    await expect(t.grpc.listReferrals({ programKey: fixed.programKey, ...request })).resolves.toBeDefined();
  });

  it("ListReferrals with a time range one millisecond wide finds the conversion at its start", async () => {
    const { referral } = await t.grpc.getReferral({ id: pendingId });
    const start = timestampDate(referral!.convertedAt!);
    const { referrals } = await t.grpc.listReferrals({
      programKey: fixed.programKey,
      convertedAfter: timestampFromDate(start),
      convertedBefore: timestampFromDate(new Date(start.getTime() + 1)),
    });
    expect(referrals.map((r) => r.id)).toContain(pendingId);
  });

  it("ListReferrals takes back its own next_page_token", async () => {
    await track(t, fixed.code);
    const first = await t.grpc.listReferrals({ programKey: fixed.programKey, pageSize: 1 });
    const second = await t.grpc.listReferrals({ programKey: fixed.programKey, pageSize: 1, pageToken: first.nextPageToken });
    expect(second.referrals[0]?.id).not.toBe(first.referrals[0]?.id);
  });

  it("UpdatePayoutStatus with 1000 distinct ids passes validation; an unknown one fails REFERRAL_NOT_FOUND and nothing moves", async () => {
    const before = await state();
    const error = await callError(t.grpc.updatePayoutStatus({ referralIds: [pendingId, ...ids(999)], payoutStatus: PayoutStatus.PAID }));
    expect(error).toMatchObject({ code: Code.NotFound, info: { reason: "REFERRAL_NOT_FOUND" } });
    expect(await state()).toEqual(before);
  });

  it("UpdatePayoutStatus to PAID with a payout reference of 255 characters, the id in upper case", async () => {
    const id = (await track(t, fixed.code)).referral!.id;
    const payoutReference = "p".repeat(255);
    const { referrals } = await t.grpc.updatePayoutStatus({ referralIds: [id.toUpperCase()], payoutStatus: PayoutStatus.PAID, payoutReference });
    expect(referrals[0]).toMatchObject({ id, payoutStatus: PayoutStatus.PAID, payoutReference });
  });

  it("UpdatePayoutStatus to FAILED with a failure reason of 1024 characters", async () => {
    const id = (await track(t, fixed.code)).referral!.id;
    const failureReason = "f".repeat(1024);
    const { referrals } = await t.grpc.updatePayoutStatus({ referralIds: [id], payoutStatus: PayoutStatus.FAILED, failureReason });
    expect(referrals[0]).toMatchObject({ id, payoutStatus: PayoutStatus.FAILED, failureReason });
  });

  it("ReverseReferral with a reason of 1024 characters, the id in upper case", async () => {
    const id = (await track(t, fixed.code)).referral!.id;
    const reason = "r".repeat(1024);
    const { referral } = await t.grpc.reverseReferral({ id: id.toUpperCase(), reason });
    expect(referral).toMatchObject({ id, payoutStatus: PayoutStatus.REVERSED, reversalReason: reason });
  });

  it.each([
    ["a user id of 100 characters", () => ({ userId: "u".repeat(100) }), 0],
    ["a program key of 100 characters", () => ({ userId: referrer, programKey: "p".repeat(100) }), 0],
    ["the referrer and one of its programs", () => ({ userId: referrer, programKey: fixed.programKey }), 1],
  ])("GetUserEarnings with %s", async (_case, request, currencies) => {
    const { earnings } = await t.grpc.getUserEarnings(request());
    expect(earnings).toHaveLength(currencies);
  });
});
