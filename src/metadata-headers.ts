import type * as grpc from "@grpc/grpc-js";

/**
 * A call's grpc-js metadata as the `Headers` that interceptors read, without
 * building a WHATWG Headers object per call (undici's validates and copies
 * every name and value: about 2 % of a ValidateCode call's CPU). Names are
 * lower-case as grpc-js gives them; binary (`-bin`) entries are left out, as a
 * Headers object could not hold them either.
 */
export class MetadataHeaders implements Headers {
  readonly #values = new Map<string, string>();

  constructor(metadata: grpc.Metadata) {
    for (const [key, value] of Object.entries(metadata.getMap())) {
      if (typeof value === "string") this.#values.set(key, value);
    }
  }

  get(name: string): string | null {
    return this.#values.get(name.toLowerCase()) ?? null;
  }
  has(name: string): boolean {
    return this.#values.has(name.toLowerCase());
  }
  set(name: string, value: string): void {
    this.#values.set(name.toLowerCase(), String(value));
  }
  append(name: string, value: string): void {
    const key = name.toLowerCase();
    const earlier = this.#values.get(key);
    this.#values.set(key, earlier === undefined ? String(value) : `${earlier}, ${value}`);
  }
  delete(name: string): void {
    this.#values.delete(name.toLowerCase());
  }
  getSetCookie(): string[] {
    return [];
  }
  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
  *entries(): Generator<[string, string]> {
    yield* [...this.#values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  *keys(): Generator<string> {
    for (const [key] of this.entries()) yield key;
  }
  *values(): Generator<string> {
    for (const [, value] of this.entries()) yield value;
  }
  [Symbol.iterator](): Generator<[string, string]> {
    return this.entries();
  }
}
