import Stripe from "stripe";
import { type AccountCheck, type PayoutProvider, redact, retryAfterMs, type TransferOutcome, type TransferRequest } from "./provider.ts";

export type StripeSettings = {
  secretKey: string;
  /** Another endpoint (a test server, stripe-mock); undefined: api.stripe.com. */
  apiUrl?: string;
  /** Per request. */
  timeoutMs: number;
};

/**
 * Stripe Connect through the official SDK: a payout is one transfer from the
 * platform's balance to the connected account, created with the payout id as
 * its Idempotency-Key (and as its transfer_group and metadata.payout_id).
 *
 * Before creating, it looks the payout's transfer up by transfer_group: Stripe
 * replays a saved answer for 24 hours only, and it replays a saved 500 as a
 * 500, so the key alone cannot settle a retry made later, or after a 500.
 */
export function createStripeProvider(settings: StripeSettings): PayoutProvider {
  const stripe = new Stripe(settings.secretKey, {
    ...endpoint(settings.apiUrl),
    // The payout worker retries, with backoff, and knows the payout stays PROCESSING meanwhile.
    maxNetworkRetries: 0,
    timeout: settings.timeoutMs,
    telemetry: false,
  });
  const secrets = [settings.secretKey];

  async function sendTransfer(request: TransferRequest): Promise<TransferOutcome> {
    const amount = Number(request.amountMinor);
    if (!Number.isSafeInteger(amount) || amount <= 0) return { status: "failed", reason: `amount out of range: ${request.amountMinor}` };
    try {
      const earlier = await stripe.transfers.list({ transfer_group: request.payoutId, limit: 10 });
      const found = earlier.data.find((t) => t.metadata?.payout_id === request.payoutId);
      if (found !== undefined) return { status: "paid", reference: found.id };
      const transfer = await stripe.transfers.create(
        {
          // Already in minor units; for zero-decimal currencies (JPY) that is the whole amount.
          amount,
          currency: request.currency.toLowerCase(),
          destination: request.accountRef,
          description: request.description,
          transfer_group: request.payoutId,
          metadata: { payout_id: request.payoutId },
        },
        { idempotencyKey: request.payoutId },
      );
      return { status: "paid", reference: transfer.id };
    } catch (error) {
      return classify(error, secrets);
    }
  }

  async function verifyAccount(accountRef: string): Promise<AccountCheck> {
    if (!/^acct_[A-Za-z0-9]+$/.test(accountRef)) return { status: "refused", reason: "not a Stripe connected account id (acct_…)" };
    try {
      const account = await stripe.accounts.retrieve(accountRef);
      const transfers = account.capabilities?.transfers;
      if (transfers === "active") return { status: "ok" };
      if (transfers === undefined && account.payouts_enabled === true) return { status: "ok" };
      return {
        status: "refused",
        reason: transfers === undefined ? "payouts are not enabled on the account" : `the account's transfers capability is ${transfers}`,
      };
    } catch (error) {
      const outcome = classify(error, secrets);
      return outcome.status === "failed"
        ? { status: "refused", reason: outcome.reason }
        : { status: "unavailable", detail: outcome.detail, retryAfterMs: outcome.retryAfterMs };
    }
  }

  return { kind: "STRIPE_CONNECT", verifyAccount, sendTransfer };
}

/** STRIPE_API_URL as the SDK's host, port and protocol options. */
function endpoint(apiUrl: string | undefined): { host?: string; port?: number; protocol?: "http" | "https" } {
  if (apiUrl === undefined) return {};
  const url = new URL(apiUrl);
  const protocol = url.protocol === "http:" ? "http" : "https";
  return { host: url.hostname, port: url.port === "" ? (protocol === "http" ? 80 : 443) : Number(url.port), protocol };
}

/**
 * A Stripe error as an outcome. Only an answer that proves no transfer was
 * made is "failed": a 4xx other than 409, 429 and idempotency_error (the key
 * was first used with other parameters: what that first request did is
 * unknown). Everything else, including errors this code does not know, is
 * "ambiguous": wrongly ambiguous costs a retry, wrongly failed can pay twice.
 */
function classify(error: unknown, secrets: readonly string[]): Exclude<TransferOutcome, { status: "paid" }> {
  if (!(error instanceof Stripe.errors.StripeError)) {
    return { status: "ambiguous", detail: redact(`unexpected error: ${(error as Error)?.message ?? String(error)}`, secrets) };
  }
  const status = error.statusCode;
  const message = redact(`${error.code ?? error.rawType ?? error.type}: ${(error.raw as { message?: string } | undefined)?.message ?? error.message}`, secrets);
  if (error instanceof Stripe.errors.StripeConnectionError || status === undefined) {
    return { status: "ambiguous", detail: redact(`no complete answer from Stripe: ${error.message}`, secrets) };
  }
  if (status === 429) {
    const header = error.headers?.["retry-after"];
    return { status: "ambiguous", detail: `${status} ${message}`, retryAfterMs: retryAfterMs(Array.isArray(header) ? header[0] : header) };
  }
  if (status >= 500 || status === 409 || error.rawType === "idempotency_error" || status < 400) {
    return { status: "ambiguous", detail: `${status} ${message}` };
  }
  return { status: "failed", reason: message };
}
