import { z } from "zod";
import type {
  BatchCreateCodesRequest,
  CreateCodeRequest,
  ListCodesRequest,
  UpdateCodeRequest,
  ValidateCodeRequest,
} from "../gen/referral/v1/referral_code_service_pb.js";
import { CodeStatus as CodeStatusEnum } from "../gen/referral/v1/resources_pb.js";
import { invalidArgument } from "../api/reasons.ts";
import { bigintRange, intRange, metadata, NUL_MESSAGE, noNul, optionalText, pageSize, parseInput, programKey, timestamp, userId } from "../api/input.ts";
import type { CodeStatus, StoredCodeStatus } from "./model.ts";
import { normalizeCode } from "./model.ts";
import type { CodeChanges } from "./repository.ts";

const VANITY = /^[A-Z0-9_-]{4,20}$/;

/** A code as typed: trimmed and upper-cased, at most 64 characters. */
export const codeText = z
  .string()
  .transform(normalizeCode)
  .pipe(z.string().min(1, "is required").max(64, "must be at most 64 characters").refine(noNul, NUL_MESSAGE));

const vanityCode = z
  .string()
  .transform(normalizeCode)
  .refine((code) => code === "" || VANITY.test(code), "must be 4 to 20 of [A-Z0-9_-] (case-insensitive)")
  .transform((code) => (code === "" ? null : code));

const maxUses = intRange(1, 1_000_000_000);

export type CodeRequest = {
  programKey: string;
  userId: string;
  vanityCode: string | null;
  maxUses: number | null;
  expiresAt: Date | null;
  metadata: Record<string, string>;
  requestId: string | null;
  reuseExisting: boolean;
};

const createCodeSchema = z.object({
  programKey,
  userId,
  code: vanityCode,
  maxUses: maxUses.optional(),
  expiresAt: timestamp.optional(),
  metadata,
  requestId: optionalText(255),
  reuseExisting: z.boolean(),
});

export function parseCreateCode(request: CreateCodeRequest, now: Date): CodeRequest {
  const input = parseInput(createCodeSchema, request);
  if (input.expiresAt !== undefined && input.expiresAt.getTime() <= now.getTime()) {
    throw invalidArgument("expires_at", "must be in the future");
  }
  return {
    programKey: input.programKey,
    userId: input.userId,
    vanityCode: input.code,
    maxUses: input.maxUses ?? null,
    expiresAt: input.expiresAt ?? null,
    metadata: input.metadata,
    requestId: input.requestId,
    reuseExisting: input.reuseExisting,
  };
}

const batchSchema = z.object({
  programKey,
  userIds: z
    .array(userId)
    .min(1, "must name at least one user")
    .max(1000, "must name at most 1000 users")
    .superRefine((ids, ctx) => {
      const seen = new Set<string>();
      ids.forEach((id, index) => {
        if (seen.has(id)) ctx.addIssue({ code: "custom", path: [index], message: "is a duplicate: user ids must be distinct" });
        seen.add(id);
      });
    }),
});

export function parseBatchCreateCodes(request: BatchCreateCodesRequest): { programKey: string; userIds: string[] } {
  return parseInput(batchSchema, request);
}

export function parseCodeLookup(code: string, field = "code"): string {
  return parseInput(codeText, code, field);
}

const statuses = new Map<number, CodeStatus>([
  [CodeStatusEnum.ACTIVE, "ACTIVE"],
  [CodeStatusEnum.INACTIVE, "INACTIVE"],
  [CodeStatusEnum.SUSPENDED, "SUSPENDED"],
  [CodeStatusEnum.EXPIRED, "EXPIRED"],
  [CodeStatusEnum.EXHAUSTED, "EXHAUSTED"],
]);

const listSchema = z.object({
  pageSize,
  pageToken: z.string().max(1024, "must be at most 1024 characters"),
  userId: z.string().transform((v) => (v === "" ? null : v)).pipe(userId.nullable()),
  programKey: z.string().transform((v) => (v === "" ? null : v)).pipe(programKey.nullable()),
  status: z
    .number()
    .refine((value) => value === CodeStatusEnum.UNSPECIFIED || statuses.has(value), "must be a CodeStatus value")
    .transform((value) => statuses.get(value) ?? null),
});

export function parseListCodes(request: ListCodesRequest) {
  return parseInput(listSchema, request);
}

const storedStatuses = new Map<number, StoredCodeStatus>([
  [CodeStatusEnum.ACTIVE, "ACTIVE"],
  [CodeStatusEnum.INACTIVE, "INACTIVE"],
  [CodeStatusEnum.SUSPENDED, "SUSPENDED"],
]);

const updatable = {
  status: z
    .number()
    .refine((value) => storedStatuses.has(value), "must be CODE_STATUS_ACTIVE, CODE_STATUS_INACTIVE or CODE_STATUS_SUSPENDED")
    .transform((value) => storedStatuses.get(value) as StoredCodeStatus),
  max_uses: maxUses.optional().transform((value) => value ?? null),
  expires_at: timestamp.optional().transform((value) => value ?? null),
  metadata,
} as const;

const changeKeys = { status: "status", max_uses: "maxUses", expires_at: "expiresAt", metadata: "metadata" } as const;

export function parseUpdateCode(request: UpdateCodeRequest): { code: string; changes: CodeChanges } {
  if (request.code === undefined) throw invalidArgument("code", "is required");
  const code = parseCodeLookup(request.code.code, "code.code");
  const paths = request.updateMask?.paths ?? [];
  if (paths.length === 0) throw invalidArgument("update_mask", "must name at least one field");
  const changes: CodeChanges = {};
  for (const path of new Set(paths)) {
    if (!(path in updatable)) throw invalidArgument("update_mask", `${JSON.stringify(path)} is not a field UpdateCode can change`);
    const key = path as keyof typeof updatable;
    const field = changeKeys[key];
    Object.assign(changes, { [field]: parseInput(updatable[key] as z.ZodType, request.code[field], `code.${path}`) });
  }
  return { code, changes };
}

const validateSchema = z.object({
  code: codeText,
  referredUserId: z.string().transform((v) => (v === "" ? null : v)).pipe(userId.nullable()),
  transactionAmountMinor: bigintRange(0n, 1_000_000_000_000_000n)
    .optional()
    .transform((value) => value ?? null),
});

export function parseValidateCode(request: ValidateCodeRequest): { code: string; referredUserId: string | null; transactionAmountMinor: bigint | null } {
  return parseInput(validateSchema, request);
}
