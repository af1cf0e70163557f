import type { DatabasePool } from "slonik";
import { outsideCallDeadline } from "../db/call-deadline.ts";
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
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: { db: DatabasePool; logger: Logger; retentionSeconds: number; intervalMs: number }) {
    this.#db = options.db;
    this.#logger = options.logger;
    this.#retentionSeconds = options.retentionSeconds;
    this.#intervalMs = options.intervalMs;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      this.#running ??= outsideCallDeadline(() => this.#prune()).finally(() => (this.#running = undefined));
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  async #prune(): Promise<void> {
    try {
      let deleted = 0;
      for (;;) {
        const batch = await withConnection(this.#db, (db) => pruneEvents(db, this.#retentionSeconds, PRUNE_BATCH));
        deleted += batch;
        if (batch < PRUNE_BATCH || this.#timer === undefined) break;
      }
      if (deleted > 0) this.#logger.info("events pruned", { deleted });
    } catch (error) {
      this.#logger.warn("event pruning failed; retrying at the next interval", { error: String(error) });
    }
  }
}
