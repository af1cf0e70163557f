import { randomUUID } from "node:crypto";
import type http from "node:http";
import { type Answer, type Fault, FaultPlan, listen, resetMidBody, send } from "./provider-faults.ts";

/**
 * A local Wise for the endpoints the payout provider uses, built to Wise's API
 * documentation (docs.wise.com), not to our adapter:
 * - GET /v2/accounts/{id}: a recipient, with the profileId that owns it;
 * - POST /v3/profiles/{profileId}/quotes: sourceCurrency, targetCurrency, sourceAmount or targetAmount (never both), targetAccount;
 * - POST /v1/transfers: targetAccount, quoteUuid, customerTransactionId (a UUID), details.reference.
 *   One transfer per quote. A customerTransactionId seen before is a repeat:
 *   the transfer made then is answered and nothing new is made;
 * - POST /v3/profiles/{profileId}/transfers/{transferId}/payments {type: "BALANCE"}:
 *   {type, status: "COMPLETED" | "REJECTED", errorCode}; a funded transfer moves from
 *   incoming_payment_waiting to processing;
 * - errors as `{errors: [{code, message, path, arguments}]}`, or `{error, error_description}` for a bad token.
 * What the documentation leaves open is marked where it is decided here.
 */
type WiseTransfer = {
  id: number;
  user: number;
  targetAccount: number;
  sourceAccount: null;
  quote: null;
  quoteUuid: string;
  status: string;
  reference: string;
  rate: number;
  created: string;
  business: number;
  transferRequest: null;
  details: { reference: string };
  hasActiveIssues: false;
  sourceCurrency: string;
  sourceValue: number;
  targetCurrency: string;
  targetValue: number;
  customerTransactionId: string;
};

type Quote = { id: string; sourceCurrency: string; targetCurrency: string; sourceAmount: number; targetAmount: number; targetAccount: number | null; used: boolean };

export type FakeWise = {
  url: string;
  token: string;
  profileId: number;
  /** The ledger: every transfer made, in order. */
  transfers: WiseTransfer[];
  /** Every successful funding, by transfer id. */
  fundings: number[];
  /** Balance per currency, in major units; a funding above it is REJECTED with transfer.insufficient_funds. */
  balance: Map<string, number>;
  /** Every request, in order. */
  requests: { method: string; path: string }[];
  /** A recipient owned by `profileId` (this fake's profile unless told otherwise). */
  addRecipient(recipient: { id: number; currency: string; profileId?: number; active?: boolean }): void;
  inject(method: "GET" | "POST", path: RegExp, fault: Fault): void;
  close(): Promise<void>;
};

const errors = (status: number, code: string, message: string, path?: string): Answer => ({
  status,
  body: { errors: [{ code, message, path, arguments: path === undefined ? [] : [path] }] },
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function startFakeWise(options: { token?: string; profileId?: number } = {}): Promise<FakeWise> {
  const token = options.token ?? `wise-${randomUUID()}`;
  const profileId = options.profileId ?? 7_000_001;
  const recipients = new Map<number, { id: number; currency: string; profileId: number; active: boolean }>();
  const quotes = new Map<string, Quote>();
  const transfers: WiseTransfer[] = [];
  const fundings: number[] = [];
  const balance = new Map<string, number>();
  const requests: FakeWise["requests"] = [];
  const faults = new FaultPlan();
  let nextTransferId = 50_000_000;

  function json(body: string): Record<string, unknown> | null {
    try {
      const value: unknown = JSON.parse(body);
      return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  function createQuote(body: Record<string, unknown>): Answer {
    const { sourceCurrency, targetCurrency, sourceAmount, targetAmount, targetAccount } = body;
    if (typeof sourceCurrency !== "string") return errors(400, "NotNull", "must not be null", "sourceCurrency");
    if (typeof targetCurrency !== "string") return errors(400, "NotNull", "must not be null", "targetCurrency");
    if ((sourceAmount === undefined) === (targetAmount === undefined)) {
      return errors(422, "error.amount", "Provide either sourceAmount or targetAmount, never both", "sourceAmount");
    }
    const amount = Number(sourceAmount ?? targetAmount);
    if (!(amount > 0)) return errors(422, "error.greaterThanZero", "Please type in a number that's larger than 0.", sourceAmount === undefined ? "targetAmount" : "sourceAmount");
    // Same currency on both sides: the rate is 1, and (here) no fee.
    const quote: Quote = {
      id: randomUUID(),
      sourceCurrency,
      targetCurrency,
      sourceAmount: amount,
      targetAmount: amount,
      targetAccount: typeof targetAccount === "number" ? targetAccount : null,
      used: false,
    };
    quotes.set(quote.id, quote);
    return {
      status: 200,
      body: { ...quote, used: undefined, rate: 1, rateType: "FIXED", payOut: "BANK_TRANSFER", status: "PENDING", profile: profileId, createdTime: new Date().toISOString() },
    };
  }

  function createTransfer(body: Record<string, unknown>): Answer {
    const { targetAccount, quoteUuid, customerTransactionId } = body;
    if (typeof customerTransactionId !== "string" || !UUID.test(customerTransactionId)) {
      return errors(422, "error.customerTransactionId", "customerTransactionId must be a UUID", "customerTransactionId");
    }
    // The documented repeat: the same customerTransactionId answers the transfer made the first time.
    const earlier = transfers.find((t) => t.customerTransactionId === customerTransactionId);
    if (earlier !== undefined) return { status: 200, body: earlier };
    const quote = typeof quoteUuid === "string" ? quotes.get(quoteUuid) : undefined;
    if (quote === undefined) return errors(422, "error.quote", "Quote not found", "quoteUuid");
    // Documented: one transfer per quote. The error's code and status are this fake's choice.
    if (quote.used) return errors(422, "error.quote.used", "A transfer was already created from this quote", "quoteUuid");
    const recipient = typeof targetAccount === "number" ? recipients.get(targetAccount) : undefined;
    if (recipient === undefined || recipient.profileId !== profileId) return errors(422, "error.targetAccount", "Recipient not found", "targetAccount");
    quote.used = true;
    const reference = String((body.details as { reference?: unknown } | undefined)?.reference ?? "");
    const transfer: WiseTransfer = {
      id: nextTransferId++,
      user: 1,
      targetAccount: recipient.id,
      sourceAccount: null,
      quote: null,
      quoteUuid: quote.id,
      status: "incoming_payment_waiting",
      reference,
      rate: 1,
      created: new Date().toISOString().replace("T", " ").slice(0, 19),
      business: profileId,
      transferRequest: null,
      details: { reference },
      hasActiveIssues: false,
      sourceCurrency: quote.sourceCurrency,
      sourceValue: quote.sourceAmount,
      targetCurrency: quote.targetCurrency,
      targetValue: quote.targetAmount,
      customerTransactionId,
    };
    transfers.push(transfer);
    return { status: 200, body: transfer };
  }

  function fund(transferId: number, body: Record<string, unknown>): Answer {
    if (body.type !== "BALANCE") return errors(422, "error.type", "Unsupported funding type", "type");
    const transfer = transfers.find((t) => t.id === transferId);
    if (transfer === undefined) return errors(404, "NOT_FOUND", "Transfer not found");
    // Funding a transfer twice: undocumented; a conflict here, so that a double funding shows.
    if (transfer.status !== "incoming_payment_waiting") return errors(409, "error.transfer.state", `Transfer is ${transfer.status}`);
    const available = balance.get(transfer.sourceCurrency) ?? 0;
    // Documented body; the HTTP status of a REJECTED funding is not documented (200 here).
    if (available < transfer.sourceValue) return { status: 200, body: { type: "BALANCE", status: "REJECTED", errorCode: "transfer.insufficient_funds" } };
    balance.set(transfer.sourceCurrency, Math.round((available - transfer.sourceValue) * 1000) / 1000);
    transfer.status = "processing";
    fundings.push(transfer.id);
    return { status: 200, body: { type: "BALANCE", status: "COMPLETED", errorCode: null } };
  }

  function route(method: string, path: string, body: string): Answer {
    const recipient = /^\/v2\/accounts\/(\d+)$/.exec(path);
    if (method === "GET" && recipient !== null) {
      const found = recipients.get(Number(recipient[1]));
      if (found === undefined) return errors(404, "NOT_FOUND", "Recipient not found");
      return {
        status: 200,
        body: {
          id: found.id,
          creatorId: 1,
          profileId: found.profileId,
          name: { fullName: "Ann Johnson" },
          currency: found.currency,
          country: "GB",
          type: "SortCode",
          legalEntityType: "PERSON",
          active: found.active,
          details: { reference: null, sortCode: "231470", accountNumber: "28821822" },
          ownedByCustomer: false,
        },
      };
    }
    const profilePath = /^\/v3\/profiles\/(\d+)\/(quotes|transfers\/(\d+)\/payments)$/.exec(path);
    if (method === "POST" && profilePath !== null) {
      if (Number(profilePath[1]) !== profileId) return errors(403, "FORBIDDEN", "Access to this profile is forbidden");
      const parsed = json(body);
      if (parsed === null) return errors(400, "ERROR", "Malformed JSON");
      return profilePath[2] === "quotes" ? createQuote(parsed) : fund(Number(profilePath[3]), parsed);
    }
    if (method === "POST" && path === "/v1/transfers") {
      const parsed = json(body);
      return parsed === null ? errors(400, "ERROR", "Malformed JSON") : createTransfer(parsed);
    }
    const transfer = /^\/v1\/transfers\/(\d+)$/.exec(path);
    if (method === "GET" && transfer !== null) {
      const found = transfers.find((t) => t.id === Number(transfer[1]));
      return found === undefined ? errors(404, "NOT_FOUND", "Transfer not found") : { status: 200, body: found };
    }
    return errors(404, "NOT_FOUND", `No endpoint ${method} ${path}`);
  }

  function deliver(res: http.ServerResponse, answer: Answer, fault: Fault | undefined): void {
    if (fault?.kind === "hang") return;
    if (fault?.kind === "reset") return resetMidBody(res, answer);
    if (fault?.kind === "error-after") return send(res, { status: 500, body: { timestamp: new Date().toISOString(), status: 500, error: "Internal Server Error", path: "" } });
    send(res, answer);
  }

  const server = await listen((req, body, res) => {
    const url = new URL(req.url ?? "/", "http://wise.invalid");
    const method = req.method ?? "GET";
    requests.push({ method, path: url.pathname });
    if (req.headers.authorization !== `Bearer ${token}`) {
      return send(res, { status: 401, body: { error: "invalid_token", error_description: "Invalid token" } });
    }
    const fault = faults.take(method, url.pathname);
    if (fault?.kind === "respond") return send(res, fault);
    if (fault?.kind === "hang" && !fault.afterWork) return;
    deliver(res, route(method, url.pathname, body), fault);
  });

  return {
    url: server.url,
    token,
    profileId,
    transfers,
    fundings,
    balance,
    requests,
    addRecipient: (r) => recipients.set(r.id, { id: r.id, currency: r.currency, profileId: r.profileId ?? profileId, active: r.active ?? true }),
    inject: (method, path, fault) => faults.inject(method, path, fault),
    close: server.close,
  };
}
