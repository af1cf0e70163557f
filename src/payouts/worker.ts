import type { DatabasePool } from "slonik";
import { type PeriodicJob, startPeriodic } from "../db/periodic.ts";
import { withConnection } from "../db/transaction.ts";
import type { Clock } from "../platform/clock.ts";
import type { Logger } from "../platform/logger.ts";
import type { PayoutProviders } from "./accounts.ts";
import type { Payout, PayoutProviderName } from "./model.ts";
import type { TransferOutcome } from "./providers/provider.ts";
import { claimDuePayouts, deferPayout, settleFailed, settlePaid } from "./repository.ts";

/** Payouts claimed per tick. */
const BATCH = 20;
/** The longest wait between two tries of an ambiguous payout. */
const MAX_RETRY_MS = 60 * 60 * 1000;
/** What the payouts table keeps of a reason (payouts_failure_reason_length). */
const MAX_REASON = 1024;

export type PayoutWorkerOptions = {
  db: DatabasePool;
  logger: Logger;
  clock: Clock;
  providers: PayoutProviders;
  /** How often a replica looks for payouts to send. */
  intervalMs: number;
  /** How long a claimed payout is this worker's before another may send it again (longer than a provider request). */
  leaseSeconds: number;
  /** Wait before the second try of an ambiguous payout; doubled for each later one. */
  retryBaseMs: number;
};

/**
 * Sends payouts, in every replica: claims due payouts (FOR UPDATE SKIP
 * LOCKED, so replicas share the queue without sending one twice at once),
 * sends each through its provider with the payout's id as the idempotency
 * key, and records the outcome. Paid and refused settle the payout; an
 * ambiguous outcome (timeout, 5xx, reset, 429) keeps it PROCESSING and tries
 * again with backoff, with the same key. A replica that dies mid-send leaves
 * its claim to expire (`leaseSeconds`); another then sends again, same key.
 */
export class PayoutWorker {
  readonly #options: PayoutWorkerOptions;
  /** The providers this replica can send through: it leaves other providers' payouts to replicas that can. */
  readonly #sending: PayoutProviderName[];
  #job: PeriodicJob | undefined;

  constructor(options: PayoutWorkerOptions) {
    this.#options = options;
    this.#sending = [...options.providers.keys()].filter((name) => name !== "MANUAL");
  }

  start(): void {
    if (this.#options.intervalMs > 0 && this.#sending.length > 0) this.#job ??= startPeriodic(this.#options.intervalMs, () => this.#tick());
  }

  async stop(): Promise<void> {
    await this.#job?.stop();
  }

  async #tick(): Promise<void> {
    const { db, logger, leaseSeconds } = this.#options;
    try {
      for (;;) {
        const claimed = await withConnection(db, (connection) => claimDuePayouts(connection, { providers: this.#sending, limit: BATCH, leaseSeconds }));
        await Promise.all(claimed.map((payout) => this.#send(payout)));
        if (claimed.length < BATCH || this.#job?.stopped !== false) break;
      }
    } catch (error) {
      logger.warn("payout worker failed; retrying at the next interval", { error: String(error) });
    }
  }

  async #send(payout: Payout): Promise<void> {
    const { db, logger, clock, providers, retryBaseMs } = this.#options;
    // Claimed only for providers this replica has.
    const outcome: TransferOutcome = await providers.get(payout.provider)!.sendTransfer({
      payoutId: payout.id,
      amountMinor: payout.amountMinor,
      currency: payout.currency,
      accountRef: payout.accountRef,
      description: `Referral rewards, payout ${payout.id}`,
      attempt: payout.attemptCount,
    });
    const fields = { payoutId: payout.id, provider: payout.provider, attempt: payout.attemptCount };
    await withConnection(db, async (connection) => {
      switch (outcome.status) {
        case "paid":
          await settlePaid(connection, { id: payout.id, manualOnly: false }, outcome.reference, clock.now());
          logger.info("payout paid", { ...fields, reference: outcome.reference });
          return;
        case "failed":
          await settleFailed(connection, { id: payout.id, manualOnly: false }, outcome.reason.slice(0, MAX_REASON), clock.now());
          logger.warn("payout refused by its provider", { ...fields, reason: outcome.reason });
          return;
        case "ambiguous": {
          const backoff = Math.min(MAX_RETRY_MS, retryBaseMs * 2 ** Math.max(0, payout.attemptCount - 1));
          const retryInMs = Math.max(backoff, outcome.retryAfterMs ?? 0);
          await deferPayout(connection, payout.id, outcome.detail.slice(0, MAX_REASON), retryInMs / 1000);
          logger.warn("payout outcome unknown; it stays PROCESSING and is retried with the same idempotency key", { ...fields, detail: outcome.detail, retryInMs });
          return;
        }
      }
    });
  }
}
