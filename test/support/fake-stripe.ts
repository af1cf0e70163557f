import { randomBytes } from "node:crypto";
import type http from "node:http";
import { type Answer, type Fault, FaultPlan, listen, resetMidBody, send } from "./provider-faults.ts";

/**
 * A local Stripe for the endpoints the payout provider uses, built to Stripe's
 * API reference (the OpenAPI spec in stripe/openapi, fixtures3.json for the
 * objects) and its idempotency documentation, not to our adapter:
 * - POST /v1/transfers, form-encoded (`metadata[payout_id]=…`), with Idempotency-Key;
 * - GET /v1/transfers (filters transfer_group, destination; limit);
 * - GET /v1/accounts/{account};
 * - errors as `{error: {type, code, message, param}}`.
 *
 * Idempotency as documented: a key's first result is saved once the endpoint
 * starts executing (a request failing validation saves nothing); the same key
 * and the same parameters replay it (errors and 500s included) with
 * `Idempotent-Replayed: true`; the same key with other parameters is a 400
 * idempotency_error.
 */
type StripeAccountState = { transfers?: "active" | "inactive" | "pending"; payoutsEnabled?: boolean };

type StripeTransfer = {
  id: string;
  object: "transfer";
  amount: number;
  amount_reversed: number;
  balance_transaction: string;
  created: number;
  currency: string;
  description: string | null;
  destination: string;
  destination_payment: string;
  livemode: false;
  metadata: Record<string, string>;
  reversals: { object: "list"; data: []; has_more: false; url: string };
  reversed: false;
  source_transaction: null;
  source_type: "card";
  transfer_group: string | null;
};

export type FakeStripe = {
  url: string;
  secretKey: string;
  /** The ledger: every transfer made, in order. */
  transfers: StripeTransfer[];
  /** Available balance per lower-case currency, in minor units; a transfer above it fails with balance_insufficient. */
  balance: Map<string, number>;
  /** Every request, in order. */
  requests: { method: string; path: string; idempotencyKey: string | undefined; replayed: boolean }[];
  addAccount(id: string, state?: StripeAccountState): void;
  inject(method: "GET" | "POST", path: RegExp, fault: Fault): void;
  close(): Promise<void>;
};

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

function error(status: number, type: string, message: string, extra: { code?: string; param?: string } = {}): Answer {
  return { status, body: { error: { type, message, ...extra } } };
}

/** `a[b]=c` form fields as nested objects, the way Stripe reads them. */
function formFields(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const nested = /^([^[]+)\[([^\]]*)\]$/.exec(key);
    if (nested === null) {
      out[key] = value;
      continue;
    }
    const inner = (out[nested[1]!] ??= {}) as Record<string, string>;
    inner[nested[2]!] = value;
  }
  return out;
}

export async function startFakeStripe(options: { secretKey?: string } = {}): Promise<FakeStripe> {
  const secretKey = options.secretKey ?? `sk_test_${randomBytes(16).toString("hex")}`;
  const accounts = new Map<string, StripeAccountState>();
  const transfers: StripeTransfer[] = [];
  const balance = new Map<string, number>();
  const requests: FakeStripe["requests"] = [];
  const faults = new FaultPlan();
  /** Idempotency-Key → the request's parameters and its saved answer (undefined while it executes). */
  const saved = new Map<string, { fingerprint: string; answer: Answer | undefined }>();

  function createTransfer(fields: Record<string, unknown>): Answer {
    const amount = Number(fields.amount);
    const currency = String(fields.currency);
    const destination = String(fields.destination);
    const account = accounts.get(destination);
    if (account === undefined) return error(400, "invalid_request_error", `No such destination: '${destination}'`, { code: "resource_missing", param: "destination" });
    if ((account.transfers ?? "active") !== "active") {
      return error(400, "invalid_request_error", "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments", {
        param: "destination",
      });
    }
    const available = balance.get(currency) ?? 0;
    if (available < amount) {
      return error(400, "invalid_request_error", "You have insufficient available funds in your Stripe account. Try adding funds directly to your available balance by creating Charges using the 4000000000000077 test card.", {
        code: "balance_insufficient",
      });
    }
    balance.set(currency, available - amount);
    const transferId = id("tr");
    const transfer: StripeTransfer = {
      id: transferId,
      object: "transfer",
      amount,
      amount_reversed: 0,
      balance_transaction: id("txn"),
      created: Math.floor(Date.now() / 1000),
      currency,
      description: typeof fields.description === "string" ? fields.description : null,
      destination,
      destination_payment: id("py"),
      livemode: false,
      metadata: (fields.metadata as Record<string, string> | undefined) ?? {},
      reversals: { object: "list", data: [], has_more: false, url: `/v1/transfers/${transferId}/reversals` },
      reversed: false,
      source_transaction: null,
      source_type: "card",
      transfer_group: typeof fields.transfer_group === "string" ? fields.transfer_group : null,
    };
    transfers.push(transfer);
    return { status: 200, body: transfer };
  }

  /** Parameter checks done before the endpoint executes: their errors are not saved under the key. */
  function invalidTransfer(fields: Record<string, unknown>): Answer | undefined {
    const known = new Set(["amount", "currency", "description", "destination", "expand", "metadata", "source_transaction", "source_type", "transfer_group"]);
    for (const name of Object.keys(fields)) {
      if (!known.has(name)) return error(400, "invalid_request_error", `Received unknown parameter: ${name}`, { code: "parameter_unknown", param: name });
    }
    for (const name of ["currency", "destination"]) {
      if (fields[name] === undefined) return error(400, "invalid_request_error", `Missing required param: ${name}.`, { code: "parameter_missing", param: name });
    }
    if (fields.amount !== undefined && !/^[1-9]\d*$/.test(String(fields.amount))) {
      return error(400, "invalid_request_error", "Invalid positive integer", { code: "parameter_invalid_integer", param: "amount" });
    }
    if (!/^[a-z]{3}$/.test(String(fields.currency))) return error(400, "invalid_request_error", `Invalid currency: ${String(fields.currency)}.`, { param: "currency" });
    return undefined;
  }

  function deliver(res: http.ServerResponse, answer: Answer, fault: Fault | undefined): void {
    if (fault?.kind === "hang") return;
    if (fault?.kind === "reset") return resetMidBody(res, answer);
    if (fault?.kind === "error-after") return send(res, error(500, "api_error", "An unknown error occurred while processing your request."));
    send(res, answer);
  }

  const server = await listen((req, body, res) => {
    const url = new URL(req.url ?? "/", "http://stripe.invalid");
    const method = req.method ?? "GET";
    const key = typeof req.headers["idempotency-key"] === "string" ? req.headers["idempotency-key"] : undefined;
    const log = { method, path: url.pathname, idempotencyKey: key, replayed: false };
    requests.push(log);
    res.setHeader("Request-Id", id("req"));

    const auth = req.headers.authorization ?? "";
    if (auth !== `Bearer ${secretKey}`) {
      const given = auth.replace(/^Bearer /, "");
      return send(res, error(401, "invalid_request_error", `Invalid API Key provided: ${given.slice(0, 8)}${"*".repeat(Math.max(0, given.length - 12))}${given.slice(-4)}`));
    }

    const fault = faults.take(method, url.pathname);
    if (fault?.kind === "respond") return send(res, fault);
    if (fault?.kind === "hang" && !fault.afterWork) return;

    if (method === "GET" && url.pathname === "/v1/transfers") {
      const group = url.searchParams.get("transfer_group");
      const destination = url.searchParams.get("destination");
      const limit = Number(url.searchParams.get("limit") ?? "10");
      const data = transfers
        .filter((t) => (group === null || t.transfer_group === group) && (destination === null || t.destination === destination))
        .reverse();
      return deliver(res, { status: 200, body: { object: "list", data: data.slice(0, limit), has_more: data.length > limit, url: "/v1/transfers" } }, fault);
    }

    const account = /^\/v1\/accounts\/([^/]+)$/.exec(url.pathname);
    if (method === "GET" && account !== null) {
      const accountId = decodeURIComponent(account[1]!);
      const state = accounts.get(accountId);
      if (state === undefined) {
        return deliver(res, error(404, "invalid_request_error", `No such account: '${accountId}'`, { code: "resource_missing", param: "account" }), fault);
      }
      const transfersCapability = state.transfers;
      return deliver(
        res,
        {
          status: 200,
          body: {
            id: accountId,
            object: "account",
            type: "express",
            country: "US",
            default_currency: "usd",
            charges_enabled: false,
            details_submitted: true,
            payouts_enabled: state.payoutsEnabled ?? transfersCapability === "active",
            capabilities: transfersCapability === undefined ? {} : { transfers: transfersCapability },
            metadata: {},
          },
        },
        fault,
      );
    }

    if (method === "POST" && url.pathname === "/v1/transfers") {
      if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
        return send(res, error(400, "invalid_request_error", "Invalid request: the body must be application/x-www-form-urlencoded."));
      }
      const fields = formFields(body);
      const fingerprint = `${method} ${url.pathname} ${[...new URLSearchParams(body)].map(([k, v]) => `${k}=${v}`).sort().join("&")}`;
      if (key !== undefined) {
        const earlier = saved.get(key);
        if (earlier !== undefined) {
          if (earlier.fingerprint !== fingerprint) {
            return send(
              res,
              error(
                400,
                "idempotency_error",
                `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
              ),
            );
          }
          if (earlier.answer === undefined) {
            return send(res, error(409, "invalid_request_error", "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): " + key + ". Please try again later.", { code: "idempotency_key_in_use" }));
          }
          log.replayed = true;
          return deliver(res, { ...earlier.answer, headers: { ...earlier.answer.headers, "Idempotent-Replayed": "true", "Original-Request": "req_original" } }, fault);
        }
      }
      const invalid = invalidTransfer(fields);
      if (invalid !== undefined) return send(res, invalid);
      if (key !== undefined) saved.set(key, { fingerprint, answer: undefined });
      const made = createTransfer(fields);
      // Stripe saves the result of an executed request, a 500 included, and replays it.
      const answer = fault?.kind === "error-after" ? error(500, "api_error", "An unknown error occurred while processing your request.") : made;
      if (key !== undefined) saved.set(key, { fingerprint, answer });
      return deliver(res, answer, fault);
    }

    return send(res, error(404, "invalid_request_error", `Unrecognized request URL (${method}: ${url.pathname}).`));
  });

  return {
    url: server.url,
    secretKey,
    transfers,
    balance,
    requests,
    addAccount: (accountId, state = { transfers: "active" }) => accounts.set(accountId, state),
    inject: (method, path, fault) => faults.inject(method, path, fault),
    close: server.close,
  };
}
