import { toMajorUnits } from "./currency.ts";
import { type AccountCheck, type PayoutProvider, redact, retryAfterMs, type TransferOutcome, type TransferRequest } from "./provider.ts";

export type WiseSettings = {
  apiToken: string;
  /** The business profile that pays, and owns the recipients. */
  profileId: string;
  /** https://api.wise.com unless WISE_API_URL says otherwise. */
  apiUrl: string;
  /** Per request. */
  timeoutMs: number;
};

/** Transfer states in which the money has not been taken from the balance yet. */
const UNFUNDED = new Set(["incoming_payment_waiting"]);
/** Transfer states in which it never will be, and nothing was paid. */
const DEAD = new Set(["cancelled", "funds_refunded", "bounced_back", "charged_back"]);

/**
 * Wise through its REST API, from the payout profile's balance:
 * quote → transfer (customerTransactionId = payoutId) → fund from BALANCE.
 *
 * A retry after an ambiguous failure runs the same three steps. Wise treats a
 * transfer request whose customerTransactionId it has seen as a repeat and
 * answers the transfer it already made (its quote is then left unused); the
 * transfer's status tells whether it was funded, so a transfer is never made
 * twice and never funded twice.
 */
export function createWiseProvider(settings: WiseSettings): PayoutProvider {
  const base = settings.apiUrl.replace(/\/+$/, "");
  const secrets = [settings.apiToken];

  async function call(method: "GET" | "POST", path: string, body?: unknown): Promise<Answer> {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${settings.apiToken}`,
          Accept: "application/json",
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(settings.timeoutMs),
      });
    } catch (error) {
      return { kind: "lost", detail: redact(`no answer from Wise: ${describe(error)}`, secrets) };
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      return { kind: "lost", detail: redact(`Wise's answer (${response.status}) broke off: ${describe(error)}`, secrets) };
    }
    let json: unknown;
    try {
      json = text === "" ? null : JSON.parse(text);
    } catch {
      json = null;
    }
    if (response.ok) return { kind: "ok", status: response.status, json };
    return {
      kind: "error",
      status: response.status,
      json,
      reason: redact(errorReason(response.status, json, text), secrets),
      retryAfterMs: retryAfterMs(response.headers.get("retry-after")),
    };
  }

  async function sendTransfer(request: TransferRequest): Promise<TransferOutcome> {
    let targetAmount: number;
    try {
      targetAmount = toMajorUnits(request.amountMinor, request.currency);
    } catch (error) {
      return { status: "failed", reason: (error as Error).message };
    }
    const targetAccount = recipientId(request.accountRef);
    if (targetAccount === null) return { status: "failed", reason: "not a Wise recipient id" };

    const quote = await call("POST", `/v3/profiles/${settings.profileId}/quotes`, {
      sourceCurrency: request.currency,
      targetCurrency: request.currency,
      targetAmount,
      targetAccount,
    });
    if (quote.kind !== "ok") return outcome(quote, "quote", request.attempt);
    const quoteUuid = field(quote.json, "id");
    if (typeof quoteUuid !== "string") return { status: "ambiguous", detail: "Wise answered a quote without an id" };

    const created = await call("POST", "/v1/transfers", {
      targetAccount,
      quoteUuid,
      customerTransactionId: request.payoutId,
      details: { reference: request.description },
    });
    if (created.kind !== "ok") return outcome(created, "transfer", request.attempt);
    const transferId = field(created.json, "id");
    const state = field(created.json, "status");
    if (typeof transferId !== "number" && typeof transferId !== "string") return { status: "ambiguous", detail: "Wise answered a transfer without an id" };
    if (field(created.json, "customerTransactionId") !== request.payoutId) {
      return { status: "ambiguous", detail: `Wise answered transfer ${transferId}, which is not this payout's` };
    }
    const reference = String(transferId);
    if (typeof state === "string" && DEAD.has(state)) return { status: "failed", reason: `transfer ${reference} is ${state}` };
    // Funded by an earlier try whose answer was lost.
    if (typeof state === "string" && !UNFUNDED.has(state)) return { status: "paid", reference };

    const funded = await call("POST", `/v3/profiles/${settings.profileId}/transfers/${reference}/payments`, { type: "BALANCE" });
    if (funded.kind === "lost") return outcome(funded, "funding", 1);
    // A refused funding is {status: "REJECTED", errorCode}; Wise does not document the HTTP status it comes with.
    const result = field(funded.json, "status");
    if (funded.kind === "ok" && result === "COMPLETED") return { status: "paid", reference };
    if (result === "REJECTED") return { status: "failed", reason: redact(`funding: ${String(field(funded.json, "errorCode") ?? "REJECTED")}`, secrets) };
    if (funded.kind === "ok") return { status: "ambiguous", detail: `funding: unexpected answer ${String(result)}` };
    // The transfer exists and was not funded: a refusal here proves nothing was paid.
    return outcome(funded, "funding", 1);
  }

  async function verifyAccount(accountRef: string): Promise<AccountCheck> {
    const id = recipientId(accountRef);
    if (id === null) return { status: "refused", reason: "not a Wise recipient id (a number)" };
    const answer = await call("GET", `/v2/accounts/${id}`);
    if (answer.kind === "lost") return { status: "unavailable", detail: answer.detail };
    if (answer.kind === "error") {
      if (answer.status === 429 || answer.status >= 500) return { status: "unavailable", detail: answer.reason, retryAfterMs: answer.retryAfterMs };
      return { status: "refused", reason: answer.status === 404 ? `no recipient ${id}` : answer.reason };
    }
    const owner = field(answer.json, "profileId") ?? field(answer.json, "profile");
    if (String(owner) !== settings.profileId) return { status: "refused", reason: `recipient ${id} belongs to another profile` };
    if (field(answer.json, "active") === false) return { status: "refused", reason: `recipient ${id} is deactivated` };
    return { status: "ok" };
  }

  return { kind: "WISE", verifyAccount, sendTransfer };
}

type Answer =
  | { kind: "ok"; status: number; json: unknown }
  | { kind: "error"; status: number; json: unknown; reason: string; retryAfterMs: number | undefined }
  /** Sent, and no complete answer came back: it may or may not have been done. */
  | { kind: "lost"; detail: string };

/**
 * A step that did not succeed. A lost answer, a 5xx, a 408, a 409 and a 429
 * are ambiguous. Any other 4xx proves the step was refused; the payout failed
 * with Wise's reason, unless an earlier try may have made the transfer: before
 * Wise answers this try's transfer request, nothing shows whether one exists,
 * so on a later try a refused quote or transfer request stays ambiguous.
 */
function outcome(answer: Exclude<Answer, { kind: "ok" }>, step: string, attempt: number): Exclude<TransferOutcome, { status: "paid" }> {
  if (answer.kind === "lost") return { status: "ambiguous", detail: `${step}: ${answer.detail}` };
  if (answer.status >= 500 || answer.status === 408 || answer.status === 409 || answer.status === 429) {
    return { status: "ambiguous", detail: `${step}: ${answer.status} ${answer.reason}`, retryAfterMs: answer.retryAfterMs };
  }
  if (attempt > 1) {
    return { status: "ambiguous", detail: `${step}: ${answer.status} ${answer.reason} (on try ${attempt}: an earlier try may have made the transfer)` };
  }
  return { status: "failed", reason: `${step}: ${answer.reason}` };
}

/** Wise's two error shapes: {errors: [{code, message, path}]} and {error, error_description}. */
function errorReason(status: number, json: unknown, text: string): string {
  const errors = field(json, "errors");
  if (Array.isArray(errors) && errors.length > 0) {
    return errors.map((e) => [field(e, "code"), field(e, "message")].filter((part) => typeof part === "string").join(": ")).join("; ");
  }
  const error = field(json, "error");
  if (typeof error === "string") {
    const description = field(json, "error_description") ?? field(json, "message");
    return typeof description === "string" ? `${error}: ${description}` : error;
  }
  return `HTTP ${status}${text === "" ? "" : `: ${text.slice(0, 200)}`}`;
}

function field(value: unknown, name: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

function recipientId(accountRef: string): number | null {
  return /^[1-9]\d{0,15}$/.test(accountRef) && Number.isSafeInteger(Number(accountRef)) ? Number(accountRef) : null;
}

function describe(error: unknown): string {
  const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return "timed out";
  return [e?.message, e?.cause?.code ?? e?.cause?.message].filter(Boolean).join(": ") || String(error);
}
