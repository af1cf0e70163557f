import { outsideCallDeadline } from "../db/call-deadline.ts";
import { outsideTracedCall } from "../platform/trace-context.ts";
import type { Event } from "../gen/referral/v1/resources_pb.js";
import type { EventFeed } from "./feed.ts";
import type { EventLog } from "./log.ts";
import { toEventMessage } from "./mapper.ts";
import { comparePositions, type EventFilter, type EventPosition, matches } from "./model.ts";

/** Events read from the log per page while a stream catches up. */
const CATCH_UP_PAGE = 500;

export type StreamBatch = { events: Event[]; cursor: EventPosition };

/**
 * One consumer's stream: from `after` (null: the oldest retained event), it
 * reads the log page by page at the consumer's pace, then follows the
 * replica's shared feed. A feed batch that starts past the stream's cursor
 * (the consumer fell behind and batches were dropped, or the feed moved on
 * while the stream caught up) sends it back to reading the log, so the
 * consumer sees every event once and in log order, and no buffer grows for
 * it. Yields an empty batch as a heartbeat after `heartbeatMs` without one.
 * Ends when the feed closes (shutdown) or `signal` fires.
 */
export async function* streamEvents(
  deps: { log: EventLog; feed: EventFeed; heartbeatMs: number },
  after: EventPosition | null,
  filter: EventFilter,
  signal: AbortSignal,
): AsyncGenerator<StreamBatch> {
  const { log, feed, heartbeatMs } = deps;
  // Subscribed before the first read, so no batch is missed after it. The
  // shared poller it may start belongs to no call's deadline or trace.
  const subscription = outsideCallDeadline(() => outsideTracedCall(() => feed.subscribe()));
  try {
    let cursor = after;
    let catchingUp = true;
    let lastSent = Date.now();
    while (!signal.aborted && !subscription.closed) {
      if (catchingUp || cursor === null) {
        const page = await outsideCallDeadline(() => log.page(cursor, filter, CATCH_UP_PAGE));
        const cursors = await log.cursors();
        cursor = page.next;
        catchingUp = page.events.length === CATCH_UP_PAGE;
        if (page.events.length > 0) {
          yield { events: page.events.map((event) => toEventMessage(event, cursors)), cursor };
          lastSent = Date.now();
        }
        continue;
      }
      const batch = await subscription.next(Math.max(0, lastSent + heartbeatMs - Date.now()), signal);
      if (batch === "closed") return;
      if (batch === "idle") {
        if (!signal.aborted && Date.now() - lastSent >= heartbeatMs) {
          yield { events: [], cursor };
          lastSent = Date.now();
        }
        continue;
      }
      if (comparePositions(batch.to, cursor) <= 0) continue;
      if (comparePositions(batch.from, cursor) > 0) {
        catchingUp = true;
        continue;
      }
      const from = cursor;
      const events = batch.events.filter(({ event }) => comparePositions(event.position, from) > 0 && matches(filter, event));
      cursor = batch.to;
      if (events.length > 0) {
        yield { events: events.map(({ message }) => message), cursor };
        lastSent = Date.now();
      }
    }
  } finally {
    subscription.close();
  }
}
