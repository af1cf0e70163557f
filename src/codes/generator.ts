import { randomFillSync } from "node:crypto";

/** Crockford base32: 0-9 and A-Z without I, L, O, U. */
export const CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Makes the random part of a code: `length` characters. */
export type CodeGenerator = (length: number) => string;

/**
 * Random bytes are drawn from the cryptographic RNG 4 KiB at a time (as Node's
 * own randomUUID does) and each used once: a batch of 1000 codes costs one
 * call into the RNG, not 1000.
 */
const entropy = Buffer.alloc(4096);
let used = entropy.length;
const ALPHABET_BYTES = Buffer.from(CROCKFORD_ALPHABET, "latin1");

/**
 * Cryptographic randomness, 5 bits per character: 32 divides 256, so taking
 * each byte modulo 32 is exactly uniform (no modulo bias).
 */
export const randomCode: CodeGenerator = (length) => {
  if (length > entropy.length) throw new RangeError(`code length ${length} is too long`);
  if (used + length > entropy.length) {
    randomFillSync(entropy);
    used = 0;
  }
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = ALPHABET_BYTES[entropy[used + i]! & 31]!;
  used += length;
  return out.toString("latin1");
};

/** `PREFIX-XXXXXXXXXX`, or the bare random part when the program has no prefix. */
export function formatCode(prefix: string, random: string): string {
  return prefix === "" ? random : `${prefix}-${random}`;
}
