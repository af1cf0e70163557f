/**
 * StreamEvents consumers for figure (7) of npm run bench, in a process of
 * their own so that their decoding does not delay the bench's load generator
 * (nor the other way round):
 *
 *   node bench/event-consumers.ts <grpc base URL> <consumers> <program key> <out file>
 *
 * Each consumer is its own HTTP/2 connection and stream, from an empty cursor,
 * for REFERRAL_CREATED events of the program. It notes the wall-clock time
 * (ms, sub-millisecond) at which each batch arrived, for every referral id in
 * it. Prints "ready" once every consumer received an event (the bench's
 * warm-up conversion: its stream is then subscribed and caught up); on
 * SIGTERM writes `[[referralId, receivedAtMs], …]` per consumer to the out
 * file as JSON and exits.
 */
import { writeFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { EventType } from "../src/gen/referral/v1/resources_pb.js";

const [baseUrl, count, programKey, outFile] = process.argv.slice(2);
if (baseUrl === undefined || count === undefined || programKey === undefined || outFile === undefined) {
  throw new Error("usage: event-consumers.ts <grpc base URL> <consumers> <program key> <out file>");
}

const controller = new AbortController();
const received: [string, number][][] = Array.from({ length: Number(count) }, () => []);
let ready = 0;

for (const mine of received) {
  const client = createClient(ReferralCodeService, createGrpcTransport({ baseUrl }));
  void (async () => {
    try {
      const request = { programKey, types: [EventType.REFERRAL_CREATED] };
      for await (const batch of client.streamEvents(request, { signal: controller.signal })) {
        const at = performance.timeOrigin + performance.now();
        const before = mine.length;
        for (const event of batch.events) if (event.subject.case === "referral") mine.push([event.subject.value.id, at]);
        if (before === 0 && mine.length > 0 && ++ready === received.length) console.log("ready");
      }
      if (!controller.signal.aborted) throw new Error("a StreamEvents stream ended before the bench stopped it");
    } catch (error) {
      if (controller.signal.aborted) return;
      console.error(error);
      process.exit(1);
    }
  })();
}

process.once("SIGTERM", () => {
  controller.abort();
  writeFileSync(outFile, JSON.stringify(received));
  process.exit(0);
});
