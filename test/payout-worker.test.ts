import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { checkInvariants } from "../faults/invariants.ts";
import { loadConfig } from "../src/config.ts";
import { type Payout, PayoutProvider, PayoutState, PayoutStatus } from "../src/gen/referral/v1/resources_pb.js";
import { buildPayoutProviders } from "../src/payouts/providers/registry.ts";
import { type FakeStripe, startFakeStripe } from "./support/fake-stripe.ts";
import { type FakeWise, startFakeWise } from "./support/fake-wise.ts";
import { createProgram } from "./support/fixtures.ts";
import type { Fault } from "./support/provider-faults.ts";
import { track } from "./support/referrals.ts";
import { spawnServer } from "./support/server-process.ts";
import { startTestServer, type TestServer, unique } from "./support/server.ts";

/**
 * Payouts sent by the service's worker to the local Stripe and Wise servers
 * (built to the providers' API references), through the same adapters as in
 * production: only the URLs point here. After every fault, each provider's
 * ledger holds exactly one transfer per payout, and what was paid equals the
 * rewards.
 */
let stripe: FakeStripe;
let wise: FakeWise;
let env: Record<string, string>;
const servers: TestServer[] = [];

/** A replica as src/main.ts builds it from `env`, with a fast worker: retries after 50 ms, claims expire after 2 s. */
async function replica(): Promise<TestServer> {
  const providers = buildPayoutProviders(loadConfig(env).payoutProviders);
  const server = await startTestServer({ server: { payouts: { providers, workerIntervalMs: 50, leaseSeconds: 2, retryBaseMs: 50 } } });
  servers.push(server);
  return server;
}

let t: TestServer;
beforeAll(async () => {
  stripe = await startFakeStripe();
  wise = await startFakeWise();
  stripe.balance.set("usd", 100_000_000);
  wise.balance.set("EUR", 1_000_000);
  env = {
    STRIPE_SECRET_KEY: stripe.secretKey,
    STRIPE_API_URL: stripe.url,
    WISE_API_TOKEN: wise.token,
    WISE_PROFILE_ID: String(wise.profileId),
    WISE_API_URL: wise.url,
    PAYOUT_PROVIDER_TIMEOUT_MS: "500",
  };
  t = await replica();
});
afterAll(async () => {
  for (const server of servers) await server.close();
  await stripe?.close();
  await wise?.close();
});

let recipients = 50_000_000;
/** A referrer paid through `provider`, with `conversions` rewards of 250 in a program of its own. */
async function referrer(provider: "stripe" | "wise", conversions: number) {
  const currency = provider === "stripe" ? "USD" : "EUR";
  const program = await createProgram(t, { rewardAmountMinor: 250n, rewardCurrency: currency });
  const userId = unique("payee");
  const accountRef = provider === "stripe" ? `acct_1${userId.replace(/[^A-Za-z0-9]/g, "")}` : String((recipients += 1));
  if (provider === "stripe") stripe.addAccount(accountRef);
  else wise.addRecipient({ id: Number(accountRef), currency });
  const { account } = await t.grpc.setPayoutAccount({
    account: { userId, provider: provider === "stripe" ? PayoutProvider.STRIPE_CONNECT : PayoutProvider.WISE, accountRef },
  });
  expect(account?.verifiedAt).toBeDefined();
  const { code } = await t.grpc.createCode({ programKey: program.programKey, userId });
  const ids: string[] = [];
  for (let i = 0; i < conversions; i++) ids.push((await track(t, code!.code, { currency })).referral!.id);
  return { programKey: program.programKey, currency, userId, accountRef, ids };
}

/** Polls GetPayout until the payout leaves PENDING / PROCESSING. */
async function settled(server: Pick<TestServer, "grpc">, id: string, withinMs = 20_000): Promise<Payout> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const { payout } = await server.grpc.getPayout({ id });
    if (payout!.state !== PayoutState.PENDING && payout!.state !== PayoutState.PROCESSING) return payout!;
    if (Date.now() > deadline) throw new Error(`payout ${id} still ${PayoutState[payout!.state]} after ${withinMs} ms: ${payout!.failureReason}`);
    await sleep(25);
  }
}

async function payOne(who: Awaited<ReturnType<typeof referrer>>): Promise<Payout> {
  const { payouts } = await t.grpc.createPayouts({ currency: who.currency, programKey: who.programKey, requestId: unique("run") });
  expect(payouts).toHaveLength(1);
  return payouts[0]!;
}

const stripeTransfersOf = (payoutId: string) => stripe.transfers.filter((transfer) => transfer.metadata.payout_id === payoutId);
const wiseTransfersOf = (payoutId: string) => wise.transfers.filter((transfer) => transfer.customerTransactionId === payoutId);

describe("the payout worker, through Stripe Connect", () => {
  it("sends a payout as one transfer and marks its rewards PAID with the transfer id", async () => {
    const who = await referrer("stripe", 3);
    const created = await payOne(who);
    expect(created).toMatchObject({ state: PayoutState.PENDING, provider: PayoutProvider.STRIPE_CONNECT, amountMinor: 750n });
    const paid = await settled(t, created.id);
    const transfers = stripeTransfersOf(created.id);
    expect(transfers).toHaveLength(1);
    expect(transfers[0]).toMatchObject({ amount: 750, currency: "usd", destination: who.accountRef });
    expect(paid).toMatchObject({ state: PayoutState.PAID, providerReference: transfers[0]!.id, attemptCount: 1 });
    for (const id of who.ids) expect((await t.grpc.getReferral({ id })).referral).toMatchObject({ payoutStatus: PayoutStatus.PAID, payoutReference: transfers[0]!.id });
  });

  it.each<[string, Fault]>([
    ["a 500 after the transfer was made", { kind: "error-after" }],
    ["a timeout after the transfer was made", { kind: "hang", afterWork: true }],
    ["a timeout before anything was done", { kind: "hang", afterWork: false }],
    ["a connection reset in the middle of the answer", { kind: "reset" }],
    ["a 429 with Retry-After", { kind: "respond", status: 429, body: { error: { type: "invalid_request_error", message: "Too many requests" } }, headers: { "Retry-After": "1" } }],
  ])("after %s: retried with the same key, paid exactly once", async (_name, fault) => {
    const who = await referrer("stripe", 2);
    stripe.inject("POST", /^\/v1\/transfers$/, fault);
    const created = await payOne(who);
    const paid = await settled(t, created.id);
    expect(paid.state).toBe(PayoutState.PAID);
    expect(paid.attemptCount).toBeGreaterThanOrEqual(2);
    expect(stripeTransfersOf(created.id)).toHaveLength(1);
    expect(stripeTransfersOf(created.id)[0]!.amount).toBe(500);
  });

  it("a refusal (402, insufficient balance) fails the payout with Stripe's reason and makes its rewards payable again", async () => {
    const who = await referrer("stripe", 1);
    stripe.inject("POST", /^\/v1\/transfers$/, {
      kind: "respond",
      status: 402,
      body: { error: { type: "invalid_request_error", code: "balance_insufficient", message: "Insufficient funds in Stripe account." } },
    });
    const created = await payOne(who);
    const failed = await settled(t, created.id);
    expect(failed).toMatchObject({ state: PayoutState.FAILED, failureReason: expect.stringContaining("balance_insufficient") });
    expect(stripeTransfersOf(created.id)).toHaveLength(0);
    expect((await t.grpc.getReferral({ id: who.ids[0]! })).referral).toMatchObject({ payoutStatus: PayoutStatus.FAILED, payoutId: "" });
    const again = await payOne(who);
    expect((await settled(t, again.id)).state).toBe(PayoutState.PAID);
    expect(stripeTransfersOf(again.id)).toHaveLength(1);
  });

  it("an account Stripe does not know, or that cannot receive transfers, is refused when set", async () => {
    stripe.addAccount("acct_1Restricted", { payoutsEnabled: false, transfers: "inactive" });
    for (const accountRef of ["acct_1Unknown", "acct_1Restricted"]) {
      const error = await t.grpc.setPayoutAccount({ account: { userId: unique("u"), provider: PayoutProvider.STRIPE_CONNECT, accountRef } }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 9, rawMessage: expect.stringContaining("refused") });
    }
  });

  it("two replicas racing for the same payouts send each once", async () => {
    const second = await replica();
    const payees = await Promise.all(Array.from({ length: 8 }, () => referrer("stripe", 2)));
    const created = await Promise.all(payees.map(payOne));
    for (const payout of created) {
      expect((await settled(second, payout.id)).state).toBe(PayoutState.PAID);
      expect(stripeTransfersOf(payout.id)).toHaveLength(1);
      expect(stripeTransfersOf(payout.id)[0]!.amount).toBe(500);
    }
  });
});

describe("the payout worker, through Wise", () => {
  it("sends a payout as one funded transfer (customerTransactionId = payout id)", async () => {
    const who = await referrer("wise", 2);
    const created = await payOne(who);
    const paid = await settled(t, created.id);
    const transfers = wiseTransfersOf(created.id);
    expect(transfers).toHaveLength(1);
    expect(transfers[0]).toMatchObject({ targetAccount: Number(who.accountRef), targetCurrency: "EUR", targetValue: 5 });
    expect(wise.fundings.filter((id) => id === transfers[0]!.id)).toHaveLength(1);
    expect(paid).toMatchObject({ state: PayoutState.PAID, providerReference: String(transfers[0]!.id) });
  });

  it.each<[string, RegExp, Fault]>([
    ["a 500 after the transfer was made", /^\/v1\/transfers$/, { kind: "error-after" }],
    ["a connection reset while funding", /\/payments$/, { kind: "reset" }],
    ["a timeout after funding", /\/payments$/, { kind: "hang", afterWork: true }],
  ])("after %s: one transfer, funded once", async (_name, path, fault) => {
    const who = await referrer("wise", 1);
    wise.inject("POST", path, fault);
    const created = await payOne(who);
    expect((await settled(t, created.id)).state).toBe(PayoutState.PAID);
    const transfers = wiseTransfersOf(created.id);
    expect(transfers).toHaveLength(1);
    expect(wise.fundings.filter((id) => id === transfers[0]!.id)).toHaveLength(1);
  });
});

describe("a replica SIGKILLed in the middle of a payout", () => {
  it("leaves its claim to expire; another replica sends again with the same key: one transfer", async () => {
    const who = await referrer("stripe", 2);
    // Only the replica about to die sends payouts now.
    for (const server of servers.splice(0)) await server.close();
    const dying = await spawnServer(inject("databaseUrl"), { ...env, PAYOUT_WORKER_INTERVAL_MS: "50" });
    // The transfer is made, but its answer never comes: the replica is killed while it waits.
    stripe.inject("POST", /^\/v1\/transfers$/, { kind: "hang", afterWork: true });
    const { payouts } = await dying.grpc.createPayouts({ currency: who.currency, programKey: who.programKey, requestId: unique("run") });
    const id = payouts[0]!.id;
    const deadline = Date.now() + 10_000;
    while (stripeTransfersOf(id).length === 0 && Date.now() < deadline) await sleep(10);
    expect(stripeTransfersOf(id)).toHaveLength(1);
    dying.child.kill("SIGKILL");
    await once(dying.child, "exit");
    t = await replica();
    expect((await t.grpc.getPayout({ id })).payout).toMatchObject({ state: PayoutState.PROCESSING, attemptCount: 1 });
    const paid = await settled(t, id, 30_000);
    expect(paid).toMatchObject({ state: PayoutState.PAID, attemptCount: 2, providerReference: stripeTransfersOf(id)[0]!.id });
    expect(stripeTransfersOf(id)).toHaveLength(1);
    await checkInvariants(inject("databaseUrl"));
  });
});
