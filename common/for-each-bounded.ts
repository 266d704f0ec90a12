// Runs `fn` on every item with at most `concurrency` calls in flight: N workers pull from
// one shared iterator, so memory stays bounded however many items there are (STYLE.md,
// rule 7: the project's one bounded-concurrency loop). The first failure stops the workers
// from taking new items and is thrown once the running calls have settled. An aborted
// `signal` stops them the same way, with `abortError()` (default: the signal's reason).
export async function forEachBounded<T>(
  items: Iterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<void>,
  options: { signal?: AbortSignal; abortError?: () => unknown } = {},
): Promise<void> {
  const { signal } = options;
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure) {
      if (signal?.aborted) {
        failure = { error: options.abortError ? options.abortError() : signal.reason };
        return;
      }
      const next = iterator.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failure) throw failure.error;
}
