import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../api/reasons.ts";
import { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";

/**
 * Bounds the product's calls in flight in this process: past `max`, a call is
 * answered RESOURCE_EXHAUSTED at once instead of queueing without end. Health
 * and reflection are not counted, so probes still answer under overload.
 */
export function inFlightLimitInterceptor(max: number): Interceptor {
  let inFlight = 0;
  return (next) => async (request) => {
    if (request.service.typeName !== ReferralCodeService.typeName) return next(request);
    if (inFlight >= max) {
      throw new DomainError("OVERLOADED", "the server is at its limit of calls in flight; retry with backoff", {
        maxCallsInFlight: String(max),
      });
    }
    inFlight++;
    try {
      return await next(request);
    } finally {
      inFlight--;
    }
  };
}
