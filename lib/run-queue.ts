// This process's runs: each waits for its avatar's earlier runs, then for one of its
// kata's places (KATA_RUNS_AT_ONCE). A line too long is refused at once (429), a wait too
// long is given up (503), both with a Retry-After from the runs' recent durations.
import { errors } from './errors.ts';
import { KeyedLimiter } from './limiter.ts';
import type { Metrics } from './metrics.ts';

export interface RunQueueOptions {
  runsAtOnce: number; // per kata
  processLimit: number; // runs waiting in this process
  kataLimit: number; // runs waiting for one kata
  maxWaitMs: number; // a run's share of waiting
}

export class RunQueue {
  private readonly avatars = new KeyedLimiter(1);
  private readonly katas: KeyedLimiter;
  private readonly waitingByKata = new Map<string, number>();
  private waitingNow = 0;
  private inFlight = 0;
  private meanRunMs = 1000; // a moving mean of runs' durations

  constructor(
    private readonly options: RunQueueOptions,
    private readonly metrics: Metrics,
  ) {
    this.katas = new KeyedLimiter(options.runsAtOnce);
  }

  get full(): boolean {
    return this.waitingNow >= this.options.processLimit;
  }

  get waiting(): number {
    return this.waitingNow;
  }

  get running(): number {
    return this.inFlight;
  }

  // How long until `ahead` runs before this one have had their turn, in whole seconds.
  private retryAfter(ahead: number): number {
    return Math.max(1, Math.ceil((((ahead + 1) / this.options.runsAtOnce) * this.meanRunMs) / 1000));
  }

  private count(kataId: string, by: number): void {
    const now = (this.waitingByKata.get(kataId) ?? 0) + by;
    if (now) this.waitingByKata.set(kataId, now);
    else this.waitingByKata.delete(kataId);
    this.waitingNow += by;
    this.metrics.runsQueued.set(this.waitingNow);
  }

  async run<T>(kataId: string, avatar: string, work: () => Promise<T>): Promise<{ value: T; queueMs: number }> {
    const ahead = this.waitingByKata.get(kataId) ?? 0;
    if (this.waitingNow >= this.options.processLimit || ahead >= this.options.kataLimit) {
      throw errors.runBusy(429, this.retryAfter(ahead), `${this.waitingNow} runs waiting, ${ahead} of them for kata ${kataId}`);
    }
    this.count(kataId, 1);
    const queued = performance.now();
    const signal = AbortSignal.timeout(this.options.maxWaitMs);
    let admitted = false;
    try {
      return await this.avatars.run(
        `${kataId}/${avatar}`,
        () =>
          this.katas.run(
            kataId,
            async () => {
              admitted = true;
              this.count(kataId, -1);
              const queueMs = performance.now() - queued;
              this.metrics.queueSeconds.observe(queueMs / 1000);
              this.metrics.runsInFlight.set(++this.inFlight);
              const started = performance.now();
              try {
                return { value: await work(), queueMs };
              } finally {
                this.metrics.runsInFlight.set(--this.inFlight);
                this.meanRunMs = 0.9 * this.meanRunMs + 0.1 * (performance.now() - started);
              }
            },
            signal,
          ),
        signal,
      );
    } catch (e) {
      if (!admitted && signal.aborted) throw errors.runBusy(503, this.retryAfter(this.waitingByKata.get(kataId) ?? 0), `waited ${this.options.maxWaitMs} ms for a place`);
      throw e;
    } finally {
      if (!admitted) this.count(kataId, -1);
    }
  }
}
