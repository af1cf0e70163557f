import type { Interceptor } from "@connectrpc/connect";
import { snakeCase } from "../api/input.ts";
import { invalidArgument } from "../api/reasons.ts";

/**
 * Refuses a unary request holding text that is not well-formed Unicode (a
 * lone surrogate: bytes that were not valid UTF-8, see
 * transport/utf8.ts, or a JSON escape of one) with INVALID_ARGUMENT naming the
 * field, before anything else reads it.
 */
export function wellFormedTextInterceptor(): Interceptor {
  return (next) => async (request) => {
    if (!request.stream) {
      const field = malformedField(request.message, "");
      if (field !== null) throw invalidArgument(field || "request", "must be valid UTF-8");
    }
    return next(request);
  };
}

/** The proto path of the first string (or map key) that is not well-formed, or null. */
function malformedField(value: unknown, path: string): string | null {
  if (typeof value === "string") return value.isWellFormed() ? null : path;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = malformedField(item, `${path}[${index}]`);
      if (found !== null) return found;
    }
    return null;
  }
  if (typeof value !== "object" || value === null || value instanceof Uint8Array) return null;
  // A protobuf-es message names its fields in lowerCamelCase; a map's keys are the caller's.
  const isMessage = "$typeName" in value;
  for (const [key, item] of Object.entries(value)) {
    if (key === "$typeName" || key === "$unknown") continue;
    const name = isMessage ? snakeCase(key) : key;
    const at = path === "" ? name : `${path}.${name}`;
    if (!key.isWellFormed()) return at;
    const found = malformedField(item, at);
    if (found !== null) return found;
  }
  return null;
}
