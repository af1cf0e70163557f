import { Code } from "@connectrpc/connect";

/** gRPC status names as gRPC spells them: "OK", "INVALID_ARGUMENT", … */
export function grpcCodeName(code: Code | 0): string {
  if (code === 0) return "OK";
  return (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
