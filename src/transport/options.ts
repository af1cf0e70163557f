// What both ports are limited by and how they speak TLS: set once, applied to both.

export type Limits = {
  /** Largest request message accepted; larger ones fail RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  /** HTTP/2 streams one connection may have open at once. */
  maxConcurrentStreams: number;
  /** Largest header block accepted. */
  maxHeaderBytes: number;
  /** Product calls this process handles at once; more fail RESOURCE_EXHAUSTED. */
  maxCallsInFlight: number;
  /** Deadline of a call whose caller sets none, and cap on callers' deadlines. */
  maxDeadlineMs: number;
};

export const DEFAULT_LIMITS: Limits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 256,
  maxHeaderBytes: 16 * 1024,
  maxCallsInFlight: 1024,
  maxDeadlineMs: 30_000,
};

export type TlsOptions = {
  cert: Buffer;
  key: Buffer;
  /** CA of client certificates: when set, clients must present one (mutual TLS). */
  clientCa?: Buffer;
};
