import type { DatabasePool } from "slonik";
import { type PeriodicJob, startPeriodic } from "../db/periodic.ts";
import { withConnection } from "../db/transaction.ts";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { foldEvents, statsAsOf } from "./repository.ts";

/** Events folded per statement (one short transaction each). */
const FOLD_BATCH = 5000;

/**
 * Folds the event log into the statistics' rollups, every `intervalMs`, in
 * every replica; an advisory lock lets one replica at a time do it, in log
 * order. Each replica exports how stale the figures are.
 */
export class StatsFolder {
  readonly #db: DatabasePool;
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #intervalMs: number;
  #job: PeriodicJob | undefined;

  constructor(options: { db: DatabasePool; logger: Logger; metrics: Metrics; intervalMs: number }) {
    this.#db = options.db;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#intervalMs = options.intervalMs;
  }

  start(): void {
    this.#job ??= startPeriodic(this.#intervalMs, () => this.#fold());
  }

  async stop(): Promise<void> {
    await this.#job?.stop();
  }

  async #fold(): Promise<void> {
    try {
      for (;;) {
        const folded = await withConnection(this.#db, (db) => foldEvents(db, FOLD_BATCH));
        if (folded === null || folded < FOLD_BATCH || this.#job?.stopped !== false) break;
      }
      const asOf = await withConnection(this.#db, statsAsOf);
      this.#metrics.statsStaleness.set(Math.max(0, (Date.now() - asOf.getTime()) / 1000));
    } catch (error) {
      this.#logger.warn("statistics fold failed; retrying at the next interval", { error: String(error) });
    }
  }
}
