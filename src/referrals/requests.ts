import { z } from "zod";
import type {
  GetUserEarningsRequest,
  ListReferralsRequest,
  ReverseReferralRequest,
  TrackReferralRequest,
  UpdatePayoutStatusRequest,
} from "../gen/referral/v1/referral_code_service_pb.js";
import { PayoutStatus as PayoutStatusEnum } from "../gen/referral/v1/resources_pb.js";
import { invalidArgument } from "../api/reasons.ts";
import { DAY_MS } from "../platform/clock.ts";
import { codeText } from "../codes/requests.ts";
import { bigintRange, currency, metadata, optionalText, pageSize, parseInput, programKey, requiredText, timestamp, userId, uuidOf } from "../api/input.ts";
import type { PayoutStatus } from "./model.ts";

/** How far a caller's clock may run ahead of ours for `occurred_at`. */
const CLOCK_SKEW_MS = 60_000;

const uuid = uuidOf("a referral");

export type Conversion = {
  code: string;
  referredUserId: string;
  transactionId: string | null;
  transactionAmountMinor: bigint | null;
  /** Null: the program's currency. */
  currency: string | null;
  /** When the caller says the conversion happened; null: not said (the call's time). */
  occurredAt: Date | null;
  /** occurred_at, or the call's time. */
  convertedAt: Date;
  metadata: Record<string, string>;
  validateOnly: boolean;
};

const trackSchema = z.object({
  code: codeText,
  referredUserId: userId,
  transactionId: optionalText(255),
  transactionAmountMinor: bigintRange(0n, 1_000_000_000_000_000n).optional(),
  currency: z.string().transform((v) => (v === "" ? null : v)).pipe(currency.nullable()),
  occurredAt: timestamp.optional(),
  metadata,
  validateOnly: z.boolean(),
});

/** How many days before the call occurred_at may lie, unless MAX_BACKDATE_DAYS says otherwise. */
export const DEFAULT_MAX_BACKDATE_DAYS = 30;

/**
 * TrackReferral's input. `occurred_at` may lie at most `maxBackdateDays` days
 * before `now` (0: not before it), and not in the future beyond the clock skew.
 */
export function parseTrackReferral(request: TrackReferralRequest, now: Date, maxBackdateDays: number): Conversion {
  const input = parseInput(trackSchema, request);
  const occurredAt = input.occurredAt === undefined ? null : new Date(input.occurredAt.getTime());
  if (occurredAt !== null && occurredAt.getTime() > now.getTime() + CLOCK_SKEW_MS) {
    throw invalidArgument("occurred_at", "must not be in the future");
  }
  if (occurredAt !== null && occurredAt.getTime() < now.getTime() - maxBackdateDays * DAY_MS) {
    throw invalidArgument(
      "occurred_at",
      maxBackdateDays === 0
        ? "must not be in the past: this service takes no backdated conversions (MAX_BACKDATE_DAYS is 0)"
        : `must not be more than ${maxBackdateDays} days in the past (the service's MAX_BACKDATE_DAYS)`,
    );
  }
  return {
    code: input.code,
    referredUserId: input.referredUserId,
    transactionId: input.transactionId,
    transactionAmountMinor: input.transactionAmountMinor ?? null,
    currency: input.currency,
    occurredAt,
    // Millisecond precision end to end, so page tokens and replays compare exactly.
    convertedAt: occurredAt ?? new Date(now.getTime()),
    metadata: input.metadata,
    validateOnly: input.validateOnly,
  };
}

export function parseReferralId(id: string, field = "id"): string {
  return parseInput(uuid, id, field);
}

const payoutStatuses = new Map<number, PayoutStatus>([
  [PayoutStatusEnum.PENDING, "PENDING"],
  [PayoutStatusEnum.PAID, "PAID"],
  [PayoutStatusEnum.FAILED, "FAILED"],
  [PayoutStatusEnum.REVERSED, "REVERSED"],
]);

const payoutSchema = z.object({
  referralIds: z
    .array(uuid)
    .min(1, "must name at least one referral")
    .max(1000, "must name at most 1000 referrals")
    .superRefine((ids, ctx) => {
      const seen = new Set<string>();
      ids.forEach((id, index) => {
        if (seen.has(id)) ctx.addIssue({ code: "custom", path: [index], message: "is a duplicate: referral ids must be distinct" });
        seen.add(id);
      });
    }),
  payoutStatus: z
    .number()
    .refine(
      (value) => value === PayoutStatusEnum.PENDING || value === PayoutStatusEnum.PAID || value === PayoutStatusEnum.FAILED,
      "must be PAYOUT_STATUS_PENDING, PAYOUT_STATUS_PAID or PAYOUT_STATUS_FAILED (use ReverseReferral to reverse)",
    )
    .transform((value) => payoutStatuses.get(value) as PayoutStatus),
  payoutReference: optionalText(255),
  failureReason: optionalText(1024),
});

export function parseUpdatePayoutStatus(request: UpdatePayoutStatusRequest) {
  return parseInput(payoutSchema, request);
}

const reverseSchema = z.object({ id: uuid, reason: requiredText(1024) });

export function parseReverseReferral(request: ReverseReferralRequest): { id: string; reason: string } {
  return parseInput(reverseSchema, request);
}

const optionalUser = z.string().transform((v) => (v === "" ? null : v)).pipe(userId.nullable());
const optionalProgramKey = z.string().transform((v) => (v === "" ? null : v)).pipe(programKey.nullable());

const listSchema = z
  .object({
    pageSize,
    pageToken: z.string().max(1024, "must be at most 1024 characters"),
    referrerUserId: optionalUser,
    referredUserId: optionalUser,
    programKey: optionalProgramKey,
    payoutStatus: z
      .number()
      .refine((value) => value === PayoutStatusEnum.UNSPECIFIED || payoutStatuses.has(value), "must be a PayoutStatus value")
      .transform((value) => payoutStatuses.get(value) ?? null),
    convertedAfter: timestamp.optional().transform((value) => value ?? null),
    convertedBefore: timestamp.optional().transform((value) => value ?? null),
  })
  .superRefine((value, ctx) => {
    if (value.convertedAfter !== null && value.convertedBefore !== null && value.convertedAfter >= value.convertedBefore) {
      ctx.addIssue({ code: "custom", path: ["convertedBefore"], message: "must be after converted_after" });
    }
  });

export function parseListReferrals(request: ListReferralsRequest) {
  return parseInput(listSchema, request);
}

const earningsSchema = z.object({ userId, programKey: optionalProgramKey });

export function parseGetUserEarnings(request: GetUserEarningsRequest): { userId: string; programKey: string | null } {
  return parseInput(earningsSchema, request);
}
