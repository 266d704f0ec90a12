interface Waiter {
  weight: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

// A weighted counting semaphore: bounds concurrent requests or buffered bytes. Urgent
// acquirers (a reader waiting for its bytes) go ahead of background ones (prefetch).
export class Semaphore {
  private used = 0;
  private readonly urgent: Waiter[] = [];
  private readonly background: Waiter[] = [];

  constructor(readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  get waiting(): number {
    return this.urgent.length + this.background.length;
  }

  // Takes `weight` units at once if free (never more than the capacity is asked).
  tryAcquire(weight = 1): boolean {
    const w = Math.min(weight, this.capacity);
    if (this.waiting === 0 && this.used + w <= this.capacity) {
      this.used += w;
      return true;
    }
    return false;
  }

  // Waits for `weight` units; rejects with the signal's reason if it aborts first.
  acquire(weight = 1, options: { urgent?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const w = Math.min(weight, this.capacity);
    if (this.tryAcquire(w)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (options.signal?.aborted) return reject(options.signal.reason);
      const waiter: Waiter = { weight: w, resolve, reject, signal: options.signal };
      const queue = options.urgent ? this.urgent : this.background;
      queue.push(waiter);
      if (options.signal) {
        waiter.onAbort = () => {
          const i = queue.indexOf(waiter);
          if (i >= 0) queue.splice(i, 1);
          reject(options.signal?.reason);
          this.pump();
        };
        options.signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
    });
  }

  release(weight = 1): void {
    this.used -= Math.min(weight, this.capacity);
    if (this.used < 0) this.used = 0;
    this.pump();
  }

  private pump(): void {
    for (;;) {
      const queue = this.urgent.length > 0 ? this.urgent : this.background;
      const next = queue[0];
      if (!next || this.used + next.weight > this.capacity) return;
      queue.shift();
      this.used += next.weight;
      if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
      next.resolve();
    }
  }

  // Runs `fn` holding `weight` units.
  async run<T>(
    fn: () => Promise<T>,
    weight = 1,
    options: { urgent?: boolean; signal?: AbortSignal } = {},
  ): Promise<T> {
    await this.acquire(weight, options);
    try {
      return await fn();
    } finally {
      this.release(weight);
    }
  }
}

// Serializes async sections (one file's writes, flushes and mode changes).
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((resolve) => {
      done = resolve;
    });
    try {
      await previous;
      return await fn();
    } finally {
      done();
    }
  }
}
