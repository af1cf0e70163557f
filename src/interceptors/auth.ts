import { createHash, timingSafeEqual } from "node:crypto";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import { DomainError } from "../api/reasons.ts";
import { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";

/** What a calling service may do; each role includes the ones before it. */
const ROLES = ["reader", "writer", "admin"] as const;
type Role = (typeof ROLES)[number];

/** A calling service's bearer token, known only by its SHA-256. */
export type TokenEntry = { name: string; role: Role; sha256: Buffer };

/** The role each ReferralCodeService method needs. */
const requiredRoles: Record<string, Role> = {
  GetProgram: "reader",
  ListPrograms: "reader",
  GetCode: "reader",
  ListCodes: "reader",
  ValidateCode: "reader",
  GetReferral: "reader",
  ListReferrals: "reader",
  GetUserEarnings: "reader",
  ListEvents: "reader",
  StreamEvents: "reader",
  GetProgramStats: "reader",
  ListTopReferrers: "reader",
  GetPayoutAccount: "reader",
  GetPayout: "reader",
  ListPayouts: "reader",
  SetPayoutAccount: "writer",
  CreateCode: "writer",
  BatchCreateCodes: "writer",
  UpdateCode: "writer",
  TrackReferral: "writer",
  UpdatePayoutStatus: "writer",
  ReverseReferral: "writer",
  CreateProgram: "admin",
  UpdateProgram: "admin",
  // Payouts move money.
  CreatePayouts: "admin",
  ApprovePayout: "admin",
  CancelPayout: "admin",
  MarkPayoutPaid: "admin",
  MarkPayoutFailed: "admin",
};

// Every RPC of the service has a role: a new RPC without one fails at start.
for (const method of ReferralCodeService.methods) {
  if (!(method.name in requiredRoles)) throw new Error(`no role for ${method.name}`);
}

export function sha256(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/**
 * Parses `name:role:sha256hex` entries separated by commas (the AUTH_TOKENS
 * setting). Throws with a message naming the bad entry.
 */
export function parseTokens(setting: string): TokenEntry[] {
  const entries = setting
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  const names = new Set<string>();
  return entries.map((entry, index) => {
    const [name, role, hash, ...rest] = entry.split(":");
    if (name === undefined || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`entry ${index + 1}: name must be 1-64 of [A-Za-z0-9_.-]`);
    if (!ROLES.includes(role as Role)) throw new Error(`entry ${index + 1} (${name}): role must be reader, writer or admin`);
    if (hash === undefined || !/^[0-9a-f]{64}$/i.test(hash) || rest.length > 0) {
      throw new Error(`entry ${index + 1} (${name}): expected name:role:<64 hex characters of SHA-256>`);
    }
    if (names.has(name)) throw new Error(`entry ${index + 1}: duplicate name ${name}`);
    names.add(name);
    return { name, role: role as Role, sha256: Buffer.from(hash, "hex") };
  });
}

/** The caller a token belongs to. Compares against every entry in constant time. */
function findCaller(tokens: readonly TokenEntry[], presented: string): TokenEntry | undefined {
  const digest = sha256(presented);
  let found: TokenEntry | undefined;
  for (const entry of tokens) {
    if (timingSafeEqual(digest, entry.sha256) && found === undefined) found = entry;
  }
  return found;
}

function allows(role: Role, required: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(required);
}

export type AuthOptions = {
  tokens: readonly TokenEntry[];
  /** Health and reflection answer without a token. */
  openHealthAndReflection: boolean;
};

/** The authenticated caller's name, for logs; "anonymous" when the service runs open. */
export const callerKey = createContextKey<string>("anonymous");

/**
 * Bearer-token authentication and role checks. With no tokens configured the
 * service is open. Missing or unknown token: UNAUTHENTICATED; a role too
 * small for the method: PERMISSION_DENIED.
 */
export function authInterceptor(options: AuthOptions): Interceptor {
  return (next) => async (request) => {
    if (options.tokens.length === 0) return next(request);
    const isProduct = request.service.typeName === ReferralCodeService.typeName;
    if (!isProduct && options.openHealthAndReflection) return next(request);
    const header = request.header.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    const caller = match?.[1] === undefined ? undefined : findCaller(options.tokens, match[1]);
    if (caller === undefined) throw new DomainError("UNAUTHENTICATED", "a valid bearer token is required");
    const required: Role = isProduct ? (requiredRoles[request.method.name] ?? "admin") : "reader";
    if (!allows(caller.role, required)) {
      throw new DomainError("PERMISSION_DENIED", `${caller.name} (${caller.role}) may not call ${request.method.name}`, {
        caller: caller.name,
        requiredRole: required,
      });
    }
    request.contextValues.set(callerKey, caller.name);
    return next(request);
  };
}
