/**
 * Coalesces concurrent reads into one query. Keys that arrive in the same turn
 * of the event loop (the requests read from the sockets in one go) go out
 * together at the end of that turn, when fewer than `maxInFlight` batches run;
 * keys arriving while the batches are busy wait for the next one, up to
 * `maxBatch` keys each. Nothing is cached: every answer comes from a query
 * that started after its caller asked.
 *
 * Batching by turn, not by a free batch, keeps a burst of requests in one
 * batch instead of splitting it into a batch of one and a batch of the rest
 * (docs/performance.md).
 *
 * With `identity`, keys of one batch that have the same identity are asked
 * once and share the answer (many callers checking one popular code at once
 * cost the database, the driver and the row parser one row).
 */
export function createBatcher<K, V>(
  load: (keys: readonly K[]) => Promise<readonly V[]>,
  options: { maxBatch: number; maxInFlight: number; identity?: (key: K) => string },
): (key: K) => Promise<V> {
  type Waiter = { key: K; resolve: (value: V) => void; reject: (error: unknown) => void };
  let queue: Waiter[] = [];
  let inFlight = 0;
  let scheduled = false;

  /** The batch's keys to ask for, and where each waiter's answer is among them (null: in its own place). */
  const distinct = (batch: readonly Waiter[]): { keys: K[]; slots: number[] | null } => {
    const identity = options.identity;
    if (identity === undefined) return { keys: batch.map((waiter) => waiter.key), slots: null };
    const keys: K[] = [];
    const seen = new Map<string, number>();
    const slots = batch.map(({ key }) => {
      const id = identity(key);
      let slot = seen.get(id);
      if (slot === undefined) seen.set(id, (slot = keys.push(key) - 1));
      return slot;
    });
    return { keys, slots };
  };

  const dispatch = () => {
    scheduled = false;
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const batch = queue.length <= options.maxBatch ? queue : queue.slice(0, options.maxBatch);
      queue = batch === queue ? [] : queue.slice(batch.length);
      inFlight++;
      const { keys, slots } = distinct(batch);
      load(keys)
        .then(
          (values) => batch.forEach((waiter, i) => waiter.resolve(values[slots === null ? i : slots[i]!] as V)),
          (error: unknown) => batch.forEach((waiter) => waiter.reject(error)),
        )
        .finally(() => {
          inFlight--;
          dispatch();
        });
    }
  };

  return (key) =>
    new Promise<V>((resolve, reject) => {
      queue.push({ key, resolve, reject });
      if (!scheduled && inFlight < options.maxInFlight) {
        scheduled = true;
        setImmediate(dispatch);
      }
    });
}
