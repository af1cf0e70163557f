import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import type { ReferralCodeService } from "./gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "./clock.ts";
import { createCodeHandlers } from "./codes/handlers.ts";
import type { CodeGenerator } from "./codes/generator.ts";
import { createProgramHandlers } from "./programs/handlers.ts";

export type ServiceDependencies = {
  db: DatabasePool;
  clock: Clock;
  generateCode: CodeGenerator;
};

/**
 * The ReferralCodeService implementation, one resource module at a time. RPCs
 * not implemented yet are left out, and Connect answers them UNIMPLEMENTED.
 */
export function createReferralCodeService(deps: ServiceDependencies): Partial<ServiceImpl<typeof ReferralCodeService>> {
  return {
    ...createProgramHandlers(deps.db),
    ...createCodeHandlers(deps),
  };
}
