/** ISO 4217 minor-unit digits of a currency (2 for EUR, 0 for JPY, 3 for KWD), from the runtime's ICU data. */
function minorDigits(currency: string): number {
  return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
}

/**
 * Minor units as the decimal amount an API in major units expects (1234n EUR
 * → 12.34). Exact: the string is built from the integer, and only amounts a
 * double holds exactly are accepted.
 */
export function toMajorUnits(amountMinor: bigint, currency: string): number {
  if (amountMinor <= 0n || amountMinor > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`amount out of range: ${amountMinor}`);
  const digits = minorDigits(currency);
  if (digits === 0) return Number(amountMinor);
  const text = amountMinor.toString().padStart(digits + 1, "0");
  return Number(`${text.slice(0, -digits)}.${text.slice(-digits)}`);
}
