/**
 * What the payout worker needs from a payment provider: check where a user is
 * paid, and send one transfer per payout, exactly once.
 *
 * Exactly once rests on `payoutId`: every provider uses it as its own
 * idempotency key (Stripe's Idempotency-Key, Wise's customerTransactionId), so
 * a retry after an ambiguous outcome finds the first transfer instead of
 * making a second one. The caller must therefore retry with the SAME payoutId,
 * amount, currency and account, and must treat "ambiguous" as "maybe paid".
 */

/** The providers a payout account can name; MANUAL payouts are paid by an operator, outside the service. */
export type ProviderKind = "STRIPE_CONNECT" | "WISE" | "MANUAL";

export type TransferRequest = {
  /** The payout's id (a UUID): the idempotency key, identical on every try. */
  payoutId: string;
  /** Integer minor units of `currency` (cents; yen for JPY). */
  amountMinor: bigint;
  /** ISO 4217, upper case. */
  currency: string;
  /** The provider's account id: `acct_…` for Stripe, the recipient id for Wise. */
  accountRef: string;
  /** Shown to the recipient where the provider allows it. */
  description: string;
  /**
   * 1 on the payout's first try, then 2, 3…: count a try as made once it may
   * have reached the provider (a replica killed mid-send included). On a later
   * try, a refusal that cannot rule out a transfer made by an earlier try is
   * answered "ambiguous", never "failed".
   */
  attempt: number;
};

export type TransferOutcome =
  /** The money left; `reference` is the provider's transfer id. */
  | { status: "paid"; reference: string }
  /** The provider refused and made no transfer: the rewards may be paid again. `reason` is the provider's code and message. */
  | { status: "failed"; reason: string }
  /**
   * Unknown whether the transfer was made (timeout, 5xx, connection reset,
   * 429): keep the payout PROCESSING and retry later with the same payoutId.
   * `retryAfterMs` is the provider's own hint, when it gave one.
   */
  | { status: "ambiguous"; detail: string; retryAfterMs?: number };

export type AccountCheck =
  | { status: "ok" }
  /** The account cannot be paid: it does not exist, is not ours, or cannot receive transfers. */
  | { status: "refused"; reason: string }
  /** The provider could not answer (timeout, 5xx, 429); nothing is known about the account. */
  | { status: "unavailable"; detail: string; retryAfterMs?: number };

export type PayoutProvider = {
  kind: ProviderKind;
  verifyAccount(accountRef: string): Promise<AccountCheck>;
  sendTransfer(request: TransferRequest): Promise<TransferOutcome>;
};

/** Replaces every secret in `text` (an error message, a provider's answer) before it is kept or logged. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join("[redacted]");
  return out;
}

/** A Retry-After header (seconds or an HTTP date) in milliseconds; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
