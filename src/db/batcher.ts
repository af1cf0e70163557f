/**
 * Coalesces concurrent reads into one query. A key arriving while fewer than
 * `maxInFlight` batches run goes out at once (no added latency when idle);
 * keys arriving while the batches are busy wait for the next one, up to
 * `maxBatch` keys each. Nothing is cached: every answer comes from a query
 * that started after its caller asked.
 */
export function createBatcher<K, V>(
  load: (keys: readonly K[]) => Promise<readonly V[]>,
  options: { maxBatch: number; maxInFlight: number },
): (key: K) => Promise<V> {
  type Waiter = { key: K; resolve: (value: V) => void; reject: (error: unknown) => void };
  let queue: Waiter[] = [];
  let inFlight = 0;

  const dispatch = () => {
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const batch = queue.slice(0, options.maxBatch);
      queue = queue.slice(batch.length);
      inFlight++;
      load(batch.map((waiter) => waiter.key))
        .then(
          (values) => batch.forEach((waiter, i) => waiter.resolve(values[i] as V)),
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
      dispatch();
    });
}
