import { create } from "@bufbuild/protobuf";
import { ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type ReferralCodeService, StreamEventsResponseSchema } from "../gen/referral/v1/referral_code_service_pb.js";
import type { EventFeed } from "./feed.ts";
import type { EventLog } from "./log.ts";
import { toEventMessage } from "./mapper.ts";
import { parseListEvents, parseStreamEvents } from "./requests.ts";
import { streamEvents } from "./stream.ts";

type EventMethods = Pick<ServiceImpl<typeof ReferralCodeService>, "listEvents" | "streamEvents">;

/** The event RPCs: decode the request and cursor, read the log (or follow the feed), encode. */
export function createEventHandlers(deps: { log: EventLog; feed: EventFeed; heartbeatMs: number }): EventMethods {
  const { log } = deps;
  return {
    async listEvents(request) {
      const input = parseListEvents(request);
      const cursors = await log.cursors();
      const after = input.afterCursor === "" ? null : cursors.decode(input.afterCursor, "after_cursor");
      const page = await log.page(after, input.filter, input.pageSize);
      return { events: page.events.map((event) => toEventMessage(event, cursors)), nextCursor: cursors.encode(page.next) };
    },

    async *streamEvents(request, context) {
      const input = parseStreamEvents(request);
      const cursors = await log.cursors();
      const after = input.afterCursor === "" ? null : cursors.decode(input.afterCursor, "after_cursor");
      for await (const batch of streamEvents(deps, after, input.filter, context.signal)) {
        yield create(StreamEventsResponseSchema, { events: batch.events, cursor: cursors.encode(batch.cursor) });
      }
      // Cancelled by the caller or its deadline: end with why.
      if (context.signal.aborted) throw ConnectError.from(context.signal.reason);
    },
  };
}
