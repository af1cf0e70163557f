import type { Client } from "@connectrpc/connect";
import type { ReferralCodeService } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import { RewardKind } from "../../src/gen/referral/v1/resources_pb.js";
import { unique } from "./server.ts";

/**
 * Waits until every change committed before the call is in the event log.
 * The log hands an event out only once every older transaction on the
 * cluster has finished (other tests' included), so a test that reads the log
 * right after its own writes may not see them yet. A fence write, once
 * handed out, proves that every earlier write is.
 */
export async function logSettled(client: Client<typeof ReferralCodeService>, withinMs = 30_000): Promise<void> {
  const programKey = unique("fence");
  await client.createProgram({ program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 1n, rewardCurrency: "USD" } });
  const deadline = Date.now() + withinMs;
  while ((await client.listEvents({ programKey })).events.length === 0) {
    if (Date.now() > deadline) throw new Error(`the event log did not hand out a fence within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
