import type * as grpc from "@grpc/grpc-js";

/**
 * A call's grpc-js metadata as the `Headers` that interceptors read, without
 * building a WHATWG Headers object per call (undici's validates and copies
 * every name and value) or copying the metadata at all: a name is looked up
 * when asked (a call reads two or three), and what interceptors set or delete is kept beside it. Names are
 * lower-case as grpc-js gives them; binary (`-bin`) entries are left out, as a
 * Headers object could not hold them either.
 */
export class MetadataHeaders implements Headers {
  readonly #metadata: grpc.Metadata;
  /** What was set (a string) or deleted (null) here, over the metadata. */
  #changed: Map<string, string | null> | undefined;

  constructor(metadata: grpc.Metadata) {
    this.#metadata = metadata;
  }

  get(name: string): string | null {
    const key = name.toLowerCase();
    const changed = this.#changed?.get(key);
    if (changed !== undefined) return changed;
    const first = this.#metadata.get(key)[0];
    return typeof first === "string" ? first : null;
  }
  has(name: string): boolean {
    return this.get(name) !== null;
  }
  set(name: string, value: string): void {
    (this.#changed ??= new Map()).set(name.toLowerCase(), String(value));
  }
  append(name: string, value: string): void {
    const earlier = this.get(name);
    this.set(name, earlier === null ? String(value) : `${earlier}, ${value}`);
  }
  delete(name: string): void {
    (this.#changed ??= new Map()).set(name.toLowerCase(), null);
  }
  getSetCookie(): string[] {
    return [];
  }
  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }
  *entries(): Generator<[string, string]> {
    const all = new Map<string, string>();
    for (const [key, value] of Object.entries(this.#metadata.getMap())) if (typeof value === "string") all.set(key, value);
    for (const [key, value] of this.#changed ?? []) {
      if (value === null) all.delete(key);
      else all.set(key, value);
    }
    yield* [...all].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
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
