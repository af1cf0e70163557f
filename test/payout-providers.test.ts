import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import type { PayoutProvider, TransferRequest } from "../src/payouts/providers/provider.ts";
import { buildPayoutProviders } from "../src/payouts/providers/registry.ts";
import { type FakeStripe, startFakeStripe } from "./support/fake-stripe.ts";
import { type FakeWise, startFakeWise } from "./support/fake-wise.ts";
import type { Fault } from "./support/provider-faults.ts";

/** The providers exactly as the service builds them, from its environment; only the URLs point here. */
const providersFrom = (env: Record<string, string>) => buildPayoutProviders(loadConfig({ PAYOUT_PROVIDER_TIMEOUT_MS: "400", ...env }).payoutProviders);

const faultsThenRetry: [string, Fault][] = [
  ["a 500 answered after the transfer was made", { kind: "error-after" }],
  ["no answer after the transfer was made (timeout)", { kind: "hang", afterWork: true }],
  ["no answer and nothing done (timeout)", { kind: "hang", afterWork: false }],
  ["a connection reset in the middle of the answer", { kind: "reset" }],
];

describe("Stripe Connect provider", () => {
  let stripe: FakeStripe;
  let provider: PayoutProvider;
  const payout = (overrides: Partial<TransferRequest> = {}): TransferRequest => ({
    payoutId: randomUUID(),
    amountMinor: 1234n,
    currency: "USD",
    accountRef: "acct_1Referrer",
    description: "Referral rewards",
    attempt: 1,
    ...overrides,
  });

  beforeEach(async () => {
    stripe = await startFakeStripe();
    stripe.addAccount("acct_1Referrer");
    stripe.balance.set("usd", 1_000_000);
    stripe.balance.set("jpy", 1_000_000);
    provider = providersFrom({ STRIPE_SECRET_KEY: stripe.secretKey, STRIPE_API_URL: stripe.url }).get("STRIPE_CONNECT")!;
  });
  afterEach(async () => {
    await stripe.close();
  });

  it("pays with one form-encoded transfer keyed by the payout id", async () => {
    const request = payout();
    const outcome = await provider.sendTransfer(request);
    expect(stripe.transfers).toHaveLength(1);
    const [transfer] = stripe.transfers;
    expect(outcome).toEqual({ status: "paid", reference: transfer!.id });
    expect(transfer).toMatchObject({ amount: 1234, currency: "usd", destination: "acct_1Referrer", metadata: { payout_id: request.payoutId } });
    expect(stripe.requests.filter((r) => r.method === "POST")).toEqual([{ method: "POST", path: "/v1/transfers", idempotencyKey: request.payoutId, replayed: false }]);
  });

  it("sends a zero-decimal currency's amount as it is (JPY 500 is 500)", async () => {
    const outcome = await provider.sendTransfer(payout({ amountMinor: 500n, currency: "JPY" }));
    expect(outcome.status).toBe("paid");
    expect(stripe.transfers[0]).toMatchObject({ amount: 500, currency: "jpy" });
  });

  it("answers a payout sent again with its first transfer", async () => {
    const request = payout();
    const first = await provider.sendTransfer(request);
    expect(await provider.sendTransfer({ ...request, attempt: 2 })).toEqual(first);
    expect(stripe.transfers).toHaveLength(1);
  });

  describe.each(faultsThenRetry)("after %s", (_name, fault) => {
    it.each([
      ["creating the transfer", /^\/v1\/transfers$/, "POST"],
      ["looking the transfer up", /^\/v1\/transfers$/, "GET"],
    ] as const)("while %s, the outcome is ambiguous and a retry with the same payout id pays exactly once", async (_step, path, method) => {
      stripe.inject(method, path, fault);
      const request = payout();
      const first = await provider.sendTransfer(request);
      expect(first.status).toBe("ambiguous");
      const second = await provider.sendTransfer({ ...request, attempt: 2 });
      expect(stripe.transfers).toHaveLength(1);
      expect(second).toEqual({ status: "paid", reference: stripe.transfers[0]!.id });
    });
  });

  it("two replicas sending the same payout at once make one transfer (the second gets Stripe's replay)", async () => {
    const request = payout();
    const [a, b] = await Promise.all([provider.sendTransfer(request), provider.sendTransfer(request)]);
    expect(stripe.transfers).toHaveLength(1);
    expect(a).toEqual({ status: "paid", reference: stripe.transfers[0]!.id });
    expect(b).toEqual(a);
    expect(stripe.requests.filter((r) => r.method === "POST").map((r) => r.replayed)).toEqual([false, true]);
  });

  it("fails with Stripe's reason when the balance cannot cover the transfer (400 balance_insufficient)", async () => {
    stripe.balance.set("usd", 100);
    const outcome = await provider.sendTransfer(payout());
    expect(outcome).toEqual({ status: "failed", reason: expect.stringMatching(/^balance_insufficient: You have insufficient available funds/) });
    expect(stripe.transfers).toHaveLength(0);
  });

  it.each([
    [400, { type: "invalid_request_error", code: "account_invalid", message: "The provided key does not have access to account 'acct_1Referrer'.", param: "destination" }],
    [402, { type: "card_error", code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." }],
  ])("fails with the provider's code and message on a %i", async (status, error) => {
    stripe.inject("POST", /^\/v1\/transfers$/, { kind: "respond", status, body: { error } });
    const outcome = await provider.sendTransfer(payout());
    expect(outcome).toEqual({ status: "failed", reason: `${error.code}: ${error.message}` });
    expect(stripe.transfers).toHaveLength(0);
  });

  it("is ambiguous on a 429, with Retry-After as retryAfterMs, and the retry pays", async () => {
    stripe.inject("POST", /^\/v1\/transfers$/, {
      kind: "respond",
      status: 429,
      headers: { "Retry-After": "7" },
      body: { error: { type: "invalid_request_error", code: "rate_limit", message: "Too many requests hit the API too quickly." } },
    });
    const request = payout();
    expect(await provider.sendTransfer(request)).toEqual({ status: "ambiguous", detail: expect.stringContaining("429 rate_limit"), retryAfterMs: 7000 });
    expect((await provider.sendTransfer({ ...request, attempt: 2 })).status).toBe("paid");
    expect(stripe.transfers).toHaveLength(1);
  });

  describe("verifyAccount", () => {
    it("accepts an account whose transfers capability is active", async () => {
      expect(await provider.verifyAccount("acct_1Referrer")).toEqual({ status: "ok" });
    });

    it("refuses an account Stripe does not know", async () => {
      expect(await provider.verifyAccount("acct_1Nobody")).toEqual({ status: "refused", reason: "resource_missing: No such account: 'acct_1Nobody'" });
    });

    it.each(["pending", "inactive"] as const)("refuses an account whose transfers capability is %s", async (state) => {
      stripe.addAccount("acct_1Onboarding", { transfers: state, payoutsEnabled: false });
      expect(await provider.verifyAccount("acct_1Onboarding")).toEqual({ status: "refused", reason: `the account's transfers capability is ${state}` });
    });

    it("without a transfers capability, goes by payouts_enabled", async () => {
      stripe.addAccount("acct_1Old", { payoutsEnabled: true });
      stripe.addAccount("acct_1Off", { payoutsEnabled: false });
      expect(await provider.verifyAccount("acct_1Old")).toEqual({ status: "ok" });
      expect(await provider.verifyAccount("acct_1Off")).toEqual({ status: "refused", reason: "payouts are not enabled on the account" });
    });

    it("refuses what is not an acct_ id without asking Stripe", async () => {
      expect((await provider.verifyAccount("cus_123")).status).toBe("refused");
      expect(stripe.requests).toHaveLength(0);
    });

    it("is unavailable when Stripe cannot answer", async () => {
      stripe.inject("GET", /^\/v1\/accounts\//, { kind: "error-after" });
      expect(await provider.verifyAccount("acct_1Referrer")).toMatchObject({ status: "unavailable" });
    });
  });

  describe("the secret key", () => {
    it("never appears in a reason, even when an answer quotes it", async () => {
      stripe.inject("POST", /^\/v1\/transfers$/, {
        kind: "respond",
        status: 400,
        body: { error: { type: "invalid_request_error", message: `Your key ${stripe.secretKey} cannot do this` } },
      });
      const outcome = await provider.sendTransfer(payout());
      expect(outcome).toEqual({ status: "failed", reason: "invalid_request_error: Your key [redacted] cannot do this" });
    });

    it("is not shown when Stripe refuses it", async () => {
      const wrong = providersFrom({ STRIPE_SECRET_KEY: "sk_test_wrongwrongwrong1234", STRIPE_API_URL: stripe.url }).get("STRIPE_CONNECT")!;
      const outcome = await wrong.sendTransfer(payout());
      expect(outcome.status).toBe("failed");
      expect(JSON.stringify(outcome)).not.toContain("sk_test_wrongwrongwrong1234");
      expect(JSON.stringify(outcome)).not.toContain(stripe.secretKey);
    });
  });

  it("the fake replays a key's first answer and refuses the key with other parameters, as Stripe documents", async () => {
    const post = (body: string, key: string) =>
      fetch(`${stripe.url}/v1/transfers`, {
        method: "POST",
        headers: { Authorization: `Bearer ${stripe.secretKey}`, "Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": key },
        body,
      });
    const key = randomUUID();
    const first = await post("amount=100&currency=usd&destination=acct_1Referrer", key);
    const again = await post("amount=100&currency=usd&destination=acct_1Referrer", key);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual(await first.json());
    const other = await post("amount=200&currency=usd&destination=acct_1Referrer", key);
    expect(other.status).toBe(400);
    expect(((await other.json()) as { error: { type: string } }).error.type).toBe("idempotency_error");
    expect(stripe.transfers).toHaveLength(1);
  });
});

describe("Wise provider", () => {
  let wise: FakeWise;
  let provider: PayoutProvider;
  const RECIPIENT = 40_000_001;
  const payout = (overrides: Partial<TransferRequest> = {}): TransferRequest => ({
    payoutId: randomUUID(),
    amountMinor: 1234n,
    currency: "EUR",
    accountRef: String(RECIPIENT),
    description: "Referral rewards",
    attempt: 1,
    ...overrides,
  });

  beforeEach(async () => {
    wise = await startFakeWise();
    wise.addRecipient({ id: RECIPIENT, currency: "EUR" });
    wise.balance.set("EUR", 10_000);
    wise.balance.set("JPY", 100_000);
    provider = providersFrom({ WISE_API_TOKEN: wise.token, WISE_PROFILE_ID: String(wise.profileId), WISE_API_URL: wise.url }).get("WISE")!;
  });
  afterEach(async () => {
    await wise.close();
  });

  it("pays through quote, transfer (customerTransactionId = payout id) and funding from the balance", async () => {
    const request = payout();
    const outcome = await provider.sendTransfer(request);
    expect(wise.transfers).toHaveLength(1);
    const [transfer] = wise.transfers;
    expect(outcome).toEqual({ status: "paid", reference: String(transfer!.id) });
    expect(transfer).toMatchObject({ customerTransactionId: request.payoutId, targetAccount: RECIPIENT, targetCurrency: "EUR", targetValue: 12.34, status: "processing" });
    expect(wise.fundings).toEqual([transfer!.id]);
    expect(wise.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `POST /v3/profiles/${wise.profileId}/quotes`,
      "POST /v1/transfers",
      `POST /v3/profiles/${wise.profileId}/transfers/${transfer!.id}/payments`,
    ]);
  });

  it("converts minor units with the currency's own digits (JPY 500 is 500)", async () => {
    wise.addRecipient({ id: RECIPIENT + 1, currency: "JPY" });
    expect((await provider.sendTransfer(payout({ amountMinor: 500n, currency: "JPY", accountRef: String(RECIPIENT + 1) }))).status).toBe("paid");
    expect(wise.transfers[0]).toMatchObject({ targetCurrency: "JPY", targetValue: 500 });
  });

  describe.each(faultsThenRetry)("after %s", (_name, fault) => {
    it.each([
      ["quote", () => new RegExp(`^/v3/profiles/\\d+/quotes$`)],
      ["transfer", () => /^\/v1\/transfers$/],
      ["funding", () => /^\/v3\/profiles\/\d+\/transfers\/\d+\/payments$/],
    ] as const)("at the %s step, the outcome is ambiguous and a retry with the same payout id makes and funds exactly one transfer", async (_step, path) => {
      wise.inject("POST", path(), fault);
      const request = payout();
      const first = await provider.sendTransfer(request);
      expect(first.status).toBe("ambiguous");
      const second = await provider.sendTransfer({ ...request, attempt: 2 });
      expect(wise.transfers).toHaveLength(1);
      expect(wise.fundings).toEqual([wise.transfers[0]!.id]);
      expect(second).toEqual({ status: "paid", reference: String(wise.transfers[0]!.id) });
      expect(wise.balance.get("EUR")).toBeCloseTo(10_000 - 12.34, 6);
    });
  });

  it("fails with Wise's code and message on a 422, and makes nothing", async () => {
    wise.inject("POST", /^\/v1\/transfers$/, {
      kind: "respond",
      status: 422,
      body: { errors: [{ code: "error.transfer.limit", message: "This transfer exceeds your limit", path: "targetAmount", arguments: [] }] },
    });
    expect(await provider.sendTransfer(payout())).toEqual({ status: "failed", reason: "transfer: error.transfer.limit: This transfer exceeds your limit" });
    expect(wise.transfers).toHaveLength(0);
  });

  it("on a retry, a refused quote is ambiguous: the lost first try may have paid", async () => {
    wise.inject("POST", /\/payments$/, { kind: "reset" });
    const request = payout();
    expect((await provider.sendTransfer(request)).status).toBe("ambiguous");
    wise.inject("POST", /\/quotes$/, { kind: "respond", status: 422, body: { errors: [{ code: "error.route", message: "Route unavailable", path: "targetCurrency" }] } });
    expect(await provider.sendTransfer({ ...request, attempt: 2 })).toEqual({
      status: "ambiguous",
      detail: "quote: 422 error.route: Route unavailable (on try 2: an earlier try may have made the transfer)",
    });
    expect(await provider.sendTransfer({ ...request, attempt: 3 })).toEqual({ status: "paid", reference: String(wise.transfers[0]!.id) });
    expect(wise.fundings).toHaveLength(1);
  });

  it("fails when funding is rejected for insufficient funds, and nothing is funded", async () => {
    wise.balance.set("EUR", 5);
    expect(await provider.sendTransfer(payout())).toEqual({ status: "failed", reason: "funding: transfer.insufficient_funds" });
    expect(wise.fundings).toHaveLength(0);
  });

  it("is ambiguous on a 429, with Retry-After as retryAfterMs, and the retry pays", async () => {
    wise.inject("POST", /^\/v1\/transfers$/, { kind: "respond", status: 429, headers: { "Retry-After": "3" }, body: { errors: [{ code: "TOO_MANY_REQUESTS", message: "Slow down" }] } });
    const request = payout();
    expect(await provider.sendTransfer(request)).toMatchObject({ status: "ambiguous", retryAfterMs: 3000 });
    expect((await provider.sendTransfer({ ...request, attempt: 2 })).status).toBe("paid");
    expect(wise.transfers).toHaveLength(1);
  });

  describe("verifyAccount", () => {
    it("accepts a recipient of the configured profile", async () => {
      expect(await provider.verifyAccount(String(RECIPIENT))).toEqual({ status: "ok" });
    });

    it("refuses a recipient Wise does not know", async () => {
      expect(await provider.verifyAccount("40000999")).toEqual({ status: "refused", reason: "no recipient 40000999" });
    });

    it("refuses a recipient of another profile, and a deactivated one", async () => {
      wise.addRecipient({ id: 41_000_000, currency: "EUR", profileId: 999 });
      wise.addRecipient({ id: 42_000_000, currency: "EUR", active: false });
      expect(await provider.verifyAccount("41000000")).toEqual({ status: "refused", reason: "recipient 41000000 belongs to another profile" });
      expect(await provider.verifyAccount("42000000")).toEqual({ status: "refused", reason: "recipient 42000000 is deactivated" });
    });

    it("refuses what is not a recipient id without asking Wise", async () => {
      expect((await provider.verifyAccount("GB29NWBK60161331926819")).status).toBe("refused");
      expect(wise.requests).toHaveLength(0);
    });
  });

  describe("the API token", () => {
    it("never appears in a reason, even when an answer quotes it", async () => {
      wise.inject("POST", /^\/v1\/transfers$/, { kind: "respond", status: 400, body: { errors: [{ code: "ERROR", message: `Bearer ${wise.token} is not allowed here` }] } });
      const outcome = await provider.sendTransfer(payout());
      expect(outcome).toEqual({ status: "failed", reason: "transfer: ERROR: Bearer [redacted] is not allowed here" });
    });

    it("is not shown when Wise refuses it", async () => {
      const wrong = providersFrom({ WISE_API_TOKEN: "not-the-token-5f1c", WISE_PROFILE_ID: String(wise.profileId), WISE_API_URL: wise.url }).get("WISE")!;
      const outcome = await wrong.sendTransfer(payout());
      expect(outcome).toEqual({ status: "failed", reason: "quote: invalid_token: Invalid token" });
    });
  });
});

describe("provider configuration", () => {
  it("builds only the providers with credentials; MANUAL is always there", () => {
    expect([...providersFrom({}).keys()]).toEqual(["MANUAL"]);
    expect([...providersFrom({ STRIPE_SECRET_KEY: "sk_test_abc" }).keys()]).toEqual(["MANUAL", "STRIPE_CONNECT"]);
    expect([...providersFrom({ WISE_API_TOKEN: "t0ken", WISE_PROFILE_ID: "12" }).keys()]).toEqual(["MANUAL", "WISE"]);
  });

  it("wants Wise's token and profile together", () => {
    expect(() => loadConfig({ WISE_API_TOKEN: "t0ken" })).toThrow(ConfigError);
    expect(() => loadConfig({ WISE_PROFILE_ID: "12" })).toThrow("invalid configuration: WISE_PROFILE_ID needs WISE_API_TOKEN");
  });

  it("names a malformed secret without showing it", () => {
    expect(() => loadConfig({ STRIPE_SECRET_KEY: "pk_live_oops" })).toThrow(/^invalid configuration: STRIPE_SECRET_KEY: must be/);
    expect(() => loadConfig({ WISE_API_TOKEN: "two words" })).toThrow(/^invalid configuration: WISE_API_TOKEN: must be/);
  });

  it("a manual account is any non-empty reference, and a manual payout waits for an operator", async () => {
    const manual = providersFrom({}).get("MANUAL")!;
    expect(await manual.verifyAccount("IBAN on file, ticket 42")).toEqual({ status: "ok" });
    expect((await manual.verifyAccount("  ")).status).toBe("refused");
    expect((await manual.sendTransfer({ payoutId: randomUUID(), amountMinor: 1n, currency: "EUR", accountRef: "x", description: "", attempt: 1 })).status).toBe("ambiguous");
  });
});
