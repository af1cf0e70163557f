import { randomBytes } from "node:crypto";

/** Crockford base32: 0-9 and A-Z without I, L, O, U. */
export const CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Makes the random part of a code: `length` characters. */
export type CodeGenerator = (length: number) => string;

/**
 * Cryptographic randomness, 5 bits per character: 32 divides 256, so taking
 * each byte modulo 32 is exactly uniform (no modulo bias).
 */
export const randomCode: CodeGenerator = (length) => {
  const bytes = randomBytes(length);
  let out = "";
  for (const byte of bytes) out += CROCKFORD_ALPHABET[byte & 31];
  return out;
};

/** `PREFIX-XXXXXXXXXX`, or the bare random part when the program has no prefix. */
export function formatCode(prefix: string, random: string): string {
  return prefix === "" ? random : `${prefix}-${random}`;
}
