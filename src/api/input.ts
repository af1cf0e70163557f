import { timestampDate } from "@bufbuild/protobuf/wkt";
import { z } from "zod";
import { type FieldViolation, InvalidArgumentError } from "./reasons.ts";

/**
 * Parses a request (or part of one) with a zod schema and turns the issues into
 * INVALID_ARGUMENT naming each field by its proto path, e.g.
 * `program.tiers[1].reward_basis_points`. Runs before any SQL.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const violations = result.error.issues.map(
    (issue): FieldViolation => ({ field: fieldPath(prefix, issue.path), description: issue.message }),
  );
  throw new InvalidArgumentError(violations as [FieldViolation, ...FieldViolation[]]);
}

function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  let mapKey = false;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    // Map keys (metadata) are the caller's own words: kept as they are.
    else out += `${out === "" ? "" : "."}${mapKey ? String(part) : snakeCase(String(part))}`;
    mapKey = part === "metadata";
  }
  return out || "request";
}

export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** PostgreSQL text cannot hold NUL: refused as input, never sent to the database. */
export const noNul = (value: string) => !value.includes("\u0000");
export const NUL_MESSAGE = "must not contain NUL characters";

/** Text of 1..max characters that is not blank. */
export const requiredText = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine((value) => value.trim().length > 0, "is required (not blank)")
    .refine(noNul, NUL_MESSAGE);

/** Optional text: empty means absent. */
export const optionalText = (max: number) =>
  z
    .string()
    .max(max, `must be at most ${max} characters`)
    .refine(noNul, NUL_MESSAGE)
    .transform((value) => (value === "" ? null : value));

/** Identifiers of users in the caller's systems. */
export const userId = requiredText(100).refine((value) => !/[\u0000-\u001f\u007f]/.test(value), "must not contain control characters");

export const programKey = z
  .string()
  .min(1, "is required")
  .max(100, "must be at most 100 characters")
  .regex(/^[a-z0-9][a-z0-9_-]*$/, "must match [a-z0-9][a-z0-9_-]{0,99}");

/** A UUID naming `what` (a referral, a payout), lower-cased. */
export const uuidOf = (what: string) =>
  z
    .string()
    .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, `must be ${what} id (a UUID)`)
    .transform((id) => id.toLowerCase());

export const currency = z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code of three upper-case letters");

/** Free-form metadata: at most 50 keys of 1..64 characters, values up to 1024. */
export const metadata = z
  .record(z.string(), z.string().max(1024, "values must be at most 1024 characters").refine(noNul, NUL_MESSAGE))
  .superRefine((value, ctx) => {
    const keys = Object.keys(value);
    if (!keys.every(noNul)) ctx.addIssue({ code: "custom", message: `keys ${NUL_MESSAGE}` });
    if (keys.length > 50) ctx.addIssue({ code: "custom", message: "must have at most 50 keys" });
    for (const key of keys) {
      if (key.length < 1 || key.length > 64) {
        ctx.addIssue({ code: "custom", message: `key ${JSON.stringify(key.slice(0, 70))} must be 1 to 64 characters` });
      }
    }
  });

/** AIP-158 page size: 0 means the default (50), at most 1000. */
export const pageSize = z
  .number()
  .int()
  .min(0, "must not be negative")
  .max(1000, "must be at most 1000")
  .transform((size) => (size === 0 ? 50 : size));

/** Bounded integer range with a message naming the bounds. */
export const intRange = (min: number, max: number) =>
  z.number().int().min(min, `must be between ${min} and ${max}`).max(max, `must be between ${min} and ${max}`);

export const bigintRange = (min: bigint, max: bigint) =>
  z.bigint().min(min, `must be between ${min} and ${max}`).max(max, `must be between ${min} and ${max}`);

/** A google.protobuf.Timestamp within its documented range, as a Date. */
export const timestamp = z
  .object({ seconds: z.bigint(), nanos: z.number().int() })
  .superRefine((value, ctx) => {
    // 0001-01-01 .. 9999-12-31, the range google.protobuf.Timestamp allows.
    if (value.seconds < -62_135_596_800n || value.seconds > 253_402_300_799n || value.nanos < 0 || value.nanos > 999_999_999) {
      ctx.addIssue({ code: "custom", message: "is not a valid timestamp" });
    }
  })
  .transform((value) => timestampDate({ ...value, $typeName: "google.protobuf.Timestamp" }));
