// At most `limit` pieces of work per key at once; the rest wait their turn, first
// come first served. A kata's runs share its CPU quota: past a few at once they only
// slow each other down, until all of them time out together.
export class KeyedLimiter {
  private readonly keys = new Map<string, { running: number; waiting: (() => void)[] }>();
  private waitingNow = 0;

  constructor(private readonly limit: number) {}

  // Work waiting for a place, for one key or all of them.
  waiting(key?: string): number {
    return key === undefined ? this.waitingNow : (this.keys.get(key)?.waiting.length ?? 0);
  }

  // Waits for a place (signal: until it aborts, then rejects with its reason), runs work.
  async run<T>(key: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let state = this.keys.get(key);
    if (!state) this.keys.set(key, (state = { running: 0, waiting: [] }));
    if (state.running < this.limit) state.running++;
    // A finishing holder hands its place straight to the first in line.
    else await this.wait(state, signal);
    try {
      return await work();
    } finally {
      const next = state.waiting.shift();
      if (next) next();
      else if (--state.running === 0) this.keys.delete(key);
    }
  }

  private wait(state: { running: number; waiting: (() => void)[] }, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.waitingNow++;
    return new Promise<void>((resolve, reject) => {
      const take = () => {
        signal?.removeEventListener('abort', giveUp);
        this.waitingNow--;
        resolve();
      };
      const giveUp = () => {
        state.waiting.splice(state.waiting.indexOf(take), 1);
        this.waitingNow--;
        reject(signal!.reason);
      };
      state.waiting.push(take);
      signal?.addEventListener('abort', giveUp, { once: true });
    });
  }
}
