import type { ConnectRouter } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "./gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "./gen/google/rpc/status_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ReferralCodeService } from "./gen/referral/v1/referral_code_service_pb.js";
import { type HealthMonitor, registerHealth } from "./health.ts";
import { registerReflection } from "./reflection.ts";
import { createReferralCodeService, type ServiceDependencies } from "./service.ts";

/** Every service on the port: the product, health and reflection. */
export function routes(deps: ServiceDependencies & { health: HealthMonitor }) {
  const services = [ReferralCodeService, Health, ServerReflection, ServerReflectionV1alpha];
  return (router: ConnectRouter) => {
    router.service(ReferralCodeService, createReferralCodeService(deps));
    registerHealth(router, deps.health, [ReferralCodeService.typeName]);
    // Error details too, so reflection clients can decode ErrorInfo and BadRequest.
    registerReflection(router, services, [file_google_rpc_status, file_google_rpc_error_details]);
  };
}
