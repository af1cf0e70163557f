import type { DatabasePool } from "slonik";
import { type PeriodicJob, startPeriodic } from "../db/periodic.ts";
import { withConnection } from "../db/transaction.ts";
import type { Logger } from "../platform/logger.ts";
import { pruneEvents } from "./repository.ts";

/** How long events are kept unless EVENT_RETENTION_DAYS says otherwise. */
export const DEFAULT_EVENT_RETENTION_DAYS = 30;

/** Events deleted per statement: each is its own short transaction, which holds the log back while it runs. */
const PRUNE_BATCH = 5000;

/**
 * Deletes events older than the retention, every `intervalMs`, in every
 * replica; an advisory lock lets one replica at a time do it. Readers whose
 * cursor lies before what was pruned get CURSOR_EXPIRED.
 */
export class EventPruner {
  readonly #db: DatabasePool;
  readonly #logger: Logger;
  readonly #retentionSeconds: number;
  readonly #intervalMs: number;
  #job: PeriodicJob | undefined;

  constructor(options: { db: DatabasePool; logger: Logger; retentionSeconds: number; intervalMs: number }) {
    this.#db = options.db;
    this.#logger = options.logger;
    this.#retentionSeconds = options.retentionSeconds;
    this.#intervalMs = options.intervalMs;
  }

  start(): void {
    this.#job ??= startPeriodic(this.#intervalMs, () => this.#prune());
  }

  async stop(): Promise<void> {
    await this.#job?.stop();
  }

  async #prune(): Promise<void> {
    try {
      let deleted = 0;
      for (;;) {
        const batch = await withConnection(this.#db, (db) => pruneEvents(db, this.#retentionSeconds, PRUNE_BATCH));
        deleted += batch;
        if (batch < PRUNE_BATCH || this.#job?.stopped !== false) break;
      }
      if (deleted > 0) this.#logger.info("events pruned", { deleted });
    } catch (error) {
      this.#logger.warn("event pruning failed; retrying at the next interval", { error: String(error) });
    }
  }
}
