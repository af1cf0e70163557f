import { z } from "zod";
import { currency, pageSize, parseInput, programKey, requiredText, timestamp, userId, uuidOf } from "../api/input.ts";
import { invalidArgument } from "../api/reasons.ts";
import type {
  CreatePayoutsRequest,
  ListPayoutsRequest,
  MarkPayoutFailedRequest,
  MarkPayoutPaidRequest,
  SetPayoutAccountRequest,
} from "../gen/referral/v1/referral_code_service_pb.js";
import { PayoutProvider as ProviderEnum, PayoutState as StateEnum } from "../gen/referral/v1/resources_pb.js";
import type { PayoutProviderName, PayoutState } from "./model.ts";
import type { PayoutRunRequest } from "./create.ts";
import type { PayoutFilter } from "./repository.ts";

const providers = new Map<number, PayoutProviderName>([
  [ProviderEnum.STRIPE_CONNECT, "STRIPE_CONNECT"],
  [ProviderEnum.WISE, "WISE"],
  [ProviderEnum.MANUAL, "MANUAL"],
]);

const states = new Map<number, PayoutState>([
  [StateEnum.REQUIRES_REVIEW, "REQUIRES_REVIEW"],
  [StateEnum.PENDING, "PENDING"],
  [StateEnum.PROCESSING, "PROCESSING"],
  [StateEnum.PAID, "PAID"],
  [StateEnum.FAILED, "FAILED"],
  [StateEnum.CANCELED, "CANCELED"],
]);

/** A payout's id: a UUID. */
const payoutId = uuidOf("a payout");

export function parsePayoutId(id: string): string {
  return parseInput(payoutId, id, "id");
}

/** Each provider's reference, as payout_accounts_account_ref_format checks it. */
const referenceFormats: Record<PayoutProviderName, { pattern: RegExp; message: string }> = {
  STRIPE_CONNECT: { pattern: /^acct_[A-Za-z0-9]{1,250}$/, message: "must be a Stripe connected account id (acct_...)" },
  WISE: { pattern: /^[1-9][0-9]{0,18}$/, message: "must be a Wise recipient account id (digits)" },
  MANUAL: { pattern: /^[^\u0000-\u001f\u007f]{1,255}$/, message: "must be 1 to 255 characters without control characters" },
};

/**
 * Whether a manual reference holds a bank account: an IBAN or a run of 8 or
 * more digits (white space ignored). The service stores no bank numbers.
 */
function looksLikeBankAccount(reference: string): boolean {
  const compact = reference.replace(/\s/g, "").toUpperCase();
  return /[A-Z]{2}\d{2}[A-Z0-9]{10,30}/.test(compact) || /\d{8,}/.test(compact);
}

const accountSchema = z
  .object({
    userId,
    provider: z
      .number()
      .refine((value) => providers.has(value), "must be PAYOUT_PROVIDER_STRIPE_CONNECT, PAYOUT_PROVIDER_WISE or PAYOUT_PROVIDER_MANUAL")
      .transform((value) => providers.get(value) as PayoutProviderName),
    accountRef: requiredText(255),
  })
  .superRefine((account, ctx) => {
    // Runs even when a field failed (zod 4): only with a provider to check against.
    const format = referenceFormats[account.provider] as (typeof referenceFormats)[PayoutProviderName] | undefined;
    if (account.provider === "MANUAL" && looksLikeBankAccount(account.accountRef)) {
      ctx.addIssue({ code: "custom", path: ["accountRef"], message: "must not be a bank account number (IBAN or account digits): keep those where the finance team pays from" });
    }
    if (format !== undefined && !format.pattern.test(account.accountRef)) ctx.addIssue({ code: "custom", path: ["accountRef"], message: format.message });
  });

export function parseSetPayoutAccount(request: SetPayoutAccountRequest): { userId: string; provider: PayoutProviderName; accountRef: string } {
  if (request.account === undefined) throw invalidArgument("account", "is required");
  const { userId: user, provider, accountRef } = parseInput(accountSchema, request.account, "account");
  return { userId: user, provider, accountRef };
}

export function parseUserId(value: string): string {
  return parseInput(userId, value, "user_id");
}

const runSchema = z.object({
  currency,
  programKey: z.string().transform((v) => (v === "" ? null : v)).pipe(programKey.nullable()),
  requestId: requiredText(255),
});

export function parseCreatePayouts(request: CreatePayoutsRequest): PayoutRunRequest {
  return parseInput(runSchema, request);
}

const listSchema = z
  .object({
    pageSize,
    pageToken: z.string().max(1024, "must be at most 1024 characters"),
    referrerUserId: z.string().transform((v) => (v === "" ? null : v)).pipe(userId.nullable()),
    state: z
      .number()
      .refine((value) => value === StateEnum.UNSPECIFIED || states.has(value), "must be a PayoutState value")
      .transform((value) => states.get(value) ?? null),
    currency: z.string().transform((v) => (v === "" ? null : v)).pipe(currency.nullable()),
    createdAfter: timestamp.optional().transform((value) => value ?? null),
    createdBefore: timestamp.optional().transform((value) => value ?? null),
  })
  .superRefine((value, ctx) => {
    if (value.createdAfter !== null && value.createdBefore !== null && value.createdAfter >= value.createdBefore) {
      ctx.addIssue({ code: "custom", path: ["createdBefore"], message: "must be after created_after" });
    }
  });

export function parseListPayouts(request: ListPayoutsRequest): PayoutFilter & { pageSize: number; pageToken: string } {
  return parseInput(listSchema, request);
}

export function parseMarkPayoutPaid(request: MarkPayoutPaidRequest): { id: string; reference: string } {
  const { id, providerReference } = parseInput(z.object({ id: payoutId, providerReference: requiredText(255) }), request);
  return { id, reference: providerReference };
}

export function parseMarkPayoutFailed(request: MarkPayoutFailedRequest): { id: string; reason: string } {
  const { id, failureReason } = parseInput(z.object({ id: payoutId, failureReason: requiredText(1024) }), request);
  return { id, reason: failureReason };
}
