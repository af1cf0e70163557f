import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import type { ReferralCodeService } from "./gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "./clock.ts";
import { createCodeHandlers } from "./codes/handlers.ts";
import type { CodeGenerator } from "./codes/generator.ts";
import { createProgramHandlers } from "./programs/handlers.ts";
import { createReferralHandlers } from "./referrals/handlers.ts";

export type ServiceDependencies = {
  db: DatabasePool;
  clock: Clock;
  generateCode: CodeGenerator;
  /** How many days before the call a conversion's occurred_at may lie (0: none). */
  maxBackdateDays: number;
};

/** The ReferralCodeService implementation, composed from one module per resource. */
export function createReferralCodeService(deps: ServiceDependencies): ServiceImpl<typeof ReferralCodeService> {
  return {
    ...createProgramHandlers(deps.db),
    ...createCodeHandlers(deps),
    ...createReferralHandlers(deps),
  };
}
