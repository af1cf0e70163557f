import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import { CursorCodec } from "./cursor.ts";
import { comparePositions, type EventFilter, type EventPosition, LOG_START, laterPosition, type ReferralEvent } from "./model.ts";
import { EventPrunedError, readCursorKey, readEvents } from "./repository.ts";

export type LogPage = {
  events: readonly ReferralEvent[];
  /** Where the next read resumes: the last event when the page is full, else the newest finished event (past filtered-out ones). */
  next: EventPosition;
  /** When the oldest event held back by an unfinished transaction was written; null: none is. */
  heldSince: Date | null;
};

function cursorExpired(): DomainError {
  return new DomainError(
    "CURSOR_EXPIRED",
    "the cursor is older than the retained events (EVENT_RETENTION_DAYS); start again from an empty cursor and reconcile",
  );
}

/**
 * The event log as readers see it: pages that resume exactly where the last
 * one ended, and cursors signed with the log's key.
 */
export class EventLog {
  readonly #db: DatabasePool;
  #codec: Promise<CursorCodec> | undefined;

  constructor(db: DatabasePool) {
    this.#db = db;
  }

  /** The cursor codec, with the key read once from the database (again after a failed read). */
  cursors(): Promise<CursorCodec> {
    this.#codec ??= withConnection(this.#db, readCursorKey).then(
      (key) => new CursorCodec(key),
      (error: unknown) => {
        this.#codec = undefined;
        throw error;
      },
    );
    return this.#codec;
  }

  /**
   * Up to `limit` events after `after` (null: from the oldest retained).
   * Fails CURSOR_EXPIRED when events after `after` were pruned.
   */
  async page(after: EventPosition | null, filter: EventFilter, limit: number): Promise<LogPage> {
    let page;
    try {
      page = await withConnection(this.#db, (db) => readEvents(db, { after: after ?? LOG_START, filter, limit }));
    } catch (error) {
      if (error instanceof EventPrunedError) throw cursorExpired();
      throw error;
    }
    if (after !== null && comparePositions(after, page.pruned) < 0) throw cursorExpired();
    const start = after === null ? page.pruned : laterPosition(after, page.pruned);
    const last = page.events.at(-1);
    const next = page.events.length === limit && last !== undefined ? last.position : laterPosition(start, page.lastFinished ?? start);
    return { events: page.events, next, heldSince: page.heldSince };
  }
}
