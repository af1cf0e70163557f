import pg from "pg";
import { type DatabasePool, sql } from "slonik";
import { z } from "zod";
import { outsideCallDeadline } from "../db/call-deadline.ts";
import { connectClient } from "../db/hosts.ts";
import { withConnection } from "../db/transaction.ts";
import type { Event } from "../gen/referral/v1/resources_pb.js";
import type { Logger } from "../platform/logger.ts";
import type { Metrics } from "../platform/metrics.ts";
import { outsideTracedCall } from "../platform/trace-context.ts";
import type { EventLog } from "./log.ts";
import { toEventMessage } from "./mapper.ts";
import { comparePositions, type EventPosition, type ReferralEvent } from "./model.ts";

/** The channel a replica NOTIFYs after its writes commit, and every poller LISTENs on. */
const CHANNEL = "referral_events";

/** An event as the poller read it, encoded once for every stream. */
type FedEvent = { event: ReferralEvent; message: Event };

/**
 * What one poll read: every event between `from` (exclusive) and `to`, so
 * consecutive batches cover the log without gap or overlap.
 */
export type FeedBatch = { from: EventPosition; to: EventPosition; events: readonly FedEvent[] };

/** Batches a subscriber may have waiting; past it the oldest are dropped and the stream catches up from the log. */
const MAX_QUEUED_BATCHES = 8;

/** One stream's view of the feed: a short queue of batches. */
export class Subscription {
  readonly #queue: FeedBatch[] = [];
  readonly #onClose: (subscription: Subscription) => void;
  readonly #onDrop: () => void;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(onClose: (subscription: Subscription) => void, onDrop: () => void) {
    this.#onClose = onClose;
    this.#onDrop = onDrop;
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(batch: FeedBatch): void {
    this.#queue.push(batch);
    // A consumer this far behind is not buffered for: it leaves a gap,
    // which the stream fills from the log at the consumer's pace.
    if (this.#queue.length > MAX_QUEUED_BATCHES) {
      this.#queue.shift();
      this.#onDrop();
    }
    this.#wake?.();
  }

  /** The next batch; "idle" when none came within `timeoutMs` or `signal` fired; "closed" once the feed closed. */
  async next(timeoutMs: number, signal: AbortSignal): Promise<FeedBatch | "idle" | "closed"> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return queued;
    if (this.#closed) return "closed";
    if (signal.aborted) return "idle";
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener("abort", done);
      this.#wake = done;
    });
    return this.#queue.shift() ?? (this.#closed ? "closed" : "idle");
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.#onClose(this);
  }
}

export type FeedOptions = {
  log: EventLog;
  db: DatabasePool;
  logger: Logger;
  metrics: Metrics;
  /** Longest wait between polls, also when nothing woke the poller (default 250 ms). */
  pollIntervalMs?: number;
  /**
   * A direct connection to PostgreSQL to LISTEN on, so the poller wakes when
   * another replica commits a change; null: poll only (behind a transaction
   * pooler, where LISTEN cannot work).
   */
  listenUrl: string | null;
  /** Most events one poll reads (default 1000). */
  batchLimit?: number;
};

/**
 * The one poller of this replica, shared by all of its streams: it reads the
 * log's new events (one statement per poll, whatever the number of streams),
 * encodes each once, and hands the batch to every subscriber. It runs only
 * while someone subscribes. It polls at most `pollIntervalMs` apart, and
 * sooner when woken: by this replica's own writes (`changed`) and, over
 * LISTEN, by the other replicas' NOTIFY.
 */
export class EventFeed {
  readonly #options: Required<FeedOptions>;
  readonly #subscriptions = new Set<Subscription>();
  #position: EventPosition | undefined;
  #running = false;
  #closed = false;
  #woken = false;
  #wake: (() => void) | undefined;
  /** The LISTEN session, from the moment it starts connecting. */
  #listener: Promise<pg.Client> | undefined;
  #notifying = false;
  #notifyAgain = false;

  constructor(options: FeedOptions) {
    this.#options = { pollIntervalMs: 250, batchLimit: 1000, ...options };
  }

  subscribe(): Subscription {
    const { metrics } = this.#options;
    const subscription = new Subscription(
      (closed) => {
        this.#subscriptions.delete(closed);
        metrics.eventStreams.dec();
      },
      () => metrics.eventBatchesDropped.inc(),
    );
    metrics.eventStreams.inc();
    if (this.#closed) {
      subscription.close();
      return subscription;
    }
    this.#subscriptions.add(subscription);
    if (!this.#running) {
      this.#running = true;
      void this.#run();
    }
    if (this.#options.listenUrl !== null && this.#listener === undefined) void this.#listen(this.#options.listenUrl);
    return subscription;
  }

  /**
   * Says this replica committed a change: the poller looks now, and the
   * other replicas are told over NOTIFY (at most one NOTIFY in flight, so a
   * burst of writes costs a few). The writes themselves never NOTIFY: a
   * notifying transaction holds a database-wide lock through its commit.
   */
  changed(): void {
    this.#poke();
    if (this.#closed) return;
    if (this.#notifying) {
      this.#notifyAgain = true;
      return;
    }
    this.#notifying = true;
    // Not part of the call that wrote: neither bound by its deadline nor a span of its trace.
    outsideTracedCall(() =>
      outsideCallDeadline(() => withConnection(this.#options.db, (db) => db.query(sql.type(z.object({}))`SELECT pg_notify(${CHANNEL}, '')`))),
    )
      .catch(() => {})
      .finally(() =>
        setTimeout(() => {
          this.#notifying = false;
          if (this.#notifyAgain) {
            this.#notifyAgain = false;
            this.changed();
          }
        }, 20).unref(),
      );
  }

  /** Ends every subscription (their streams end cleanly) and stops polling and listening. */
  close(): void {
    this.#closed = true;
    for (const subscription of [...this.#subscriptions]) subscription.close();
    this.#poke();
    const listener = this.#listener;
    this.#listener = undefined;
    void listener?.then((client) => client.end()).catch(() => {});
  }

  #poke(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#woken) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#wake?.(), ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  async #run(): Promise<void> {
    const { log, db, logger, metrics, pollIntervalMs, batchLimit } = this.#options;
    const all = { types: null, programKey: null };
    while (!this.#closed && this.#subscriptions.size > 0) {
      this.#woken = false;
      try {
        // Starts at the log's head (where an empty page resumes): streams
        // catch up to it from the log themselves.
        this.#position ??= (await log.page(null, all, 0)).next;
        const from = this.#position;
        const [page, cursors] = await Promise.all([log.page(from, all, batchLimit), log.cursors()]);
        const last = page.events.at(-1);
        const oldestWaiting = page.events.length === batchLimit && last !== undefined ? last.occurredAt : page.heldSince;
        metrics.eventLag.set(oldestWaiting === null ? 0 : Math.max(0, (Date.now() - oldestWaiting.getTime()) / 1000));
        if (comparePositions(page.next, from) > 0) {
          const batch = { from, to: page.next, events: page.events.map((event) => ({ event, message: toEventMessage(event, cursors) })) };
          this.#position = page.next;
          for (const subscription of this.#subscriptions) subscription.push(batch);
        }
        if (page.events.length === batchLimit) continue;
        await this.#sleep(pollIntervalMs);
      } catch (error) {
        // Pruned past this replica's position (it was far behind): start at
        // the head again; each stream sees the gap and resumes from the log.
        this.#position = undefined;
        logger.warn("event poll failed", { error: String(error) });
        await this.#sleep(Math.max(pollIntervalMs, 1000));
      }
    }
    this.#running = false;
    this.#position = undefined;
  }

  /** LISTENs for other replicas' NOTIFY until the feed closes, reconnecting after a failure. */
  async #listen(url: string): Promise<void> {
    // On the host that fits the URL's target: the primary, through a failover too.
    const connecting = connectClient(url);
    this.#listener = connecting;
    let client: pg.Client;
    try {
      client = await connecting;
    } catch (error) {
      this.#options.logger.warn("event LISTEN failed; polling only until it reconnects", { error: String(error) });
      this.#listenAgain(connecting, url);
      return;
    }
    let lost = false;
    const reconnect = () => {
      if (lost) return;
      lost = true;
      void client.end().catch(() => {});
      this.#listenAgain(connecting, url);
    };
    client.on("notification", () => this.#poke());
    client.on("error", reconnect);
    client.on("end", reconnect);
    try {
      await client.query(`LISTEN ${CHANNEL}`);
      // A change committed while not listening was caught by polling.
      this.#poke();
    } catch (error) {
      this.#options.logger.warn("event LISTEN failed; polling only until it reconnects", { error: String(error) });
      reconnect();
    }
  }

  /** The LISTEN session `lost` ended: a new one in a second, unless the feed closed or moved on. */
  #listenAgain(lost: Promise<pg.Client>, url: string): void {
    if (this.#listener !== lost) return;
    this.#listener = undefined;
    setTimeout(() => {
      if (!this.#closed && this.#listener === undefined) void this.#listen(url);
    }, 1000).unref();
  }
}
