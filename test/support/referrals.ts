import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TrackReferralRequestSchema } from "../../src/gen/referral/v1/referral_code_service_pb.js";
import type { Program, ReferralCode } from "../../src/gen/referral/v1/resources_pb.js";
import { createProgram } from "./fixtures.ts";
import type { TestServer } from "./server.ts";

let sequence = 0;
/** A fresh id for referred users and transactions. */
export function nextId(prefix: string): string {
  sequence += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${sequence}`;
}

/** A program and one code in it, held by `referrer`. */
export async function programWithCode(
  t: Pick<TestServer, "grpc">,
  program: Parameters<typeof createProgram>[1] = {},
  referrer = "referrer",
): Promise<{ program: Program; code: ReferralCode }> {
  const created = await createProgram(t, program);
  const { code } = await t.grpc.createCode({ programKey: created.programKey, userId: referrer });
  return { program: created, code: code! };
}

/** TrackReferral with a fresh referred user and transaction unless given. */
export function track(t: TestServer, code: string, request: MessageInitShape<typeof TrackReferralRequestSchema> = {}) {
  return t.grpc.trackReferral({
    code,
    referredUserId: nextId("friend"),
    transactionId: nextId("txn"),
    ...request,
  });
}
