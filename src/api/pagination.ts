import { createHash } from "node:crypto";
import type { z } from "zod";
import { invalidArgument } from "./reasons.ts";

/**
 * Opaque keyset page tokens: the last row's sort key plus a fingerprint of the
 * filters, so a token cannot be replayed with other filters. Stable under
 * inserts: the next page starts strictly after the last key returned.
 */
export type PageKey = readonly (string | number)[];

function encodePageToken(key: PageKey, filters: unknown): string {
  return Buffer.from(JSON.stringify({ k: key, f: fingerprint(filters) })).toString("base64url");
}

/**
 * The sort key a token carries, checked against `keySchema`: a token is only
 * opaque, not secret, so its contents are input like any other.
 */
export function decodePageToken<S extends z.ZodType>(token: string, filters: unknown, keySchema: S): z.output<S> | null {
  if (token === "") return null;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (
      typeof parsed === "object" &&
      parsed !== null &&
      "k" in parsed &&
      "f" in parsed &&
      Array.isArray(parsed.k) &&
      parsed.k.every((part: unknown) => typeof part === "string" || typeof part === "number") &&
      parsed.f === fingerprint(filters)
    ) {
      const key = keySchema.safeParse(parsed.k);
      if (key.success) return key.data;
    }
  } catch {
    // falls through to the error below
  }
  throw invalidArgument("page_token", "is not a token returned by this method with the same filters");
}

function fingerprint(filters: unknown): string {
  const json = JSON.stringify(filters, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
  return createHash("sha256").update(json).digest("base64url").slice(0, 16);
}

/** Splits a `limit + 1` fetch into the page and the token for the next one. */
export function page<T>(rows: readonly T[], pageSize: number, keyOf: (row: T) => PageKey, filters: unknown) {
  const items = rows.slice(0, pageSize);
  const last = items.at(-1);
  const nextPageToken = rows.length > pageSize && last !== undefined ? encodePageToken(keyOf(last), filters) : "";
  return { items, nextPageToken };
}
