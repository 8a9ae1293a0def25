// At most `limit` pieces of work per key at once; the rest wait their turn, first
// come first served. A kata's runs share its CPU quota: past a few at once they only
// slow each other down, until all of them time out together.
export class KeyedLimiter {
  private readonly keys = new Map<string, { running: number; waiting: (() => void)[] }>();

  constructor(private readonly limit: number) {}

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    let state = this.keys.get(key);
    if (!state) this.keys.set(key, (state = { running: 0, waiting: [] }));
    if (state.running < this.limit) state.running++;
    // A finishing holder hands its place straight to the first in line.
    else await new Promise<void>((resolve) => state.waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = state.waiting.shift();
      if (next) next();
      else if (--state.running === 0) this.keys.delete(key);
    }
  }
}
