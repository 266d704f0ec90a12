import { throwIfAborted } from "../errors.js";

// Runs `fn` on every item with at most `concurrency` calls in flight: N workers pull from
// one shared iterator, so memory stays bounded however many items there are. The first
// failure stops the workers from taking new items and is thrown once they are idle.
export async function forEachBounded<T>(
  items: Iterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure) {
      const next = iterator.next();
      if (next.done) return;
      try {
        throwIfAborted(signal, "Bounded operation");
        await fn(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (failure) throw failure.error;
}
