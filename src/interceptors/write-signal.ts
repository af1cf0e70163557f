import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import type { Interceptor } from "@connectrpc/connect";
import { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";

/**
 * Calls `onWrite` after each write call of the service completes, that is
 * after its transaction committed: the event feed looks for new events then,
 * instead of at its next poll.
 */
export function writeSignalInterceptor(onWrite: () => void): Interceptor {
  return (next) => async (request) => {
    const response = await next(request);
    if (
      request.service.typeName === ReferralCodeService.typeName &&
      request.method.methodKind === "unary" &&
      request.method.idempotency !== Idempotency.NO_SIDE_EFFECTS
    ) {
      onWrite();
    }
    return response;
  };
}
