import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";

/** How a batch of calls ended: "ok", or the ErrorInfo reason (the gRPC code name when there is none). */
export function outcomes(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) {
    let key = "ok";
    if (result.status === "rejected") {
      const error = ConnectError.from(result.reason);
      key = error.findDetails(ErrorInfoSchema)[0]?.reason ?? Code[error.code];
    }
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
