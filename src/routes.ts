import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "./gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "./gen/google/rpc/status_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ReferralCodeService } from "./gen/referral/v1/referral_code_service_pb.js";
import { type HealthMonitor, healthImpl } from "./health.ts";
import { registerReflection } from "./reflection.ts";
import { createReferralCodeService, type ServiceDependencies } from "./service.ts";

/** A service and its implementation (a ServiceImpl of that service). */
export type Implementation = { service: DescService; impl: object };

/** The product service and health: what every transport serves. */
export function implementations(deps: ServiceDependencies & { health: HealthMonitor }): Implementation[] {
  return [
    { service: ReferralCodeService, impl: createReferralCodeService(deps) },
    { service: Health, impl: healthImpl(deps.health, [ReferralCodeService.typeName]) },
  ];
}

/** Every service on the Connect port: the implementations, plus server reflection. */
export function routes(served: readonly Implementation[]) {
  const services = [...served.map((s) => s.service), ServerReflection, ServerReflectionV1alpha];
  return (router: ConnectRouter) => {
    for (const { service, impl } of served) router.service(service, impl as Partial<ServiceImpl<DescService>>);
    // Error details too, so reflection clients can decode ErrorInfo and BadRequest.
    registerReflection(router, services, [file_google_rpc_status, file_google_rpc_error_details]);
  };
}
