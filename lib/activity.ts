// What the dashboard shows that the engine does not know, kept in this process's memory
// and bounded: the avatars seen in each kata, their last runs, the runs of the last
// minutes by colour, the last reaps. A restarted runner starts it afresh.
const MAX_KATAS = 2000;
const RUNS_PER_AVATAR = 3;
const OUTPUT_BYTES = 1024; // of each run's stdout and stderr kept
const MINUTES = 10;
const MAX_REAPS = 20;

export interface RunRecord {
  at: string; // ISO time it was answered
  colour: string;
  durationMs: number;
  stdout: string;
  stderr: string;
}

interface KataActivity {
  avatars: Map<string, RunRecord[]>; // newest first; an avatar with none has entered only
  runs: number;
}

export class Activity {
  private readonly katas = new Map<string, KataActivity>(); // in order of last activity
  private readonly perMinute = new Map<number, Record<string, number>>(); // minute -> colour -> runs
  private readonly reaps: { at: string; kataIds: string[] }[] = [];

  private kata(kataId: string): KataActivity {
    let kata = this.katas.get(kataId);
    if (kata) this.katas.delete(kataId);
    else kata = { avatars: new Map(), runs: 0 };
    this.katas.set(kataId, kata);
    if (this.katas.size > MAX_KATAS) this.katas.delete(this.katas.keys().next().value!);
    return kata;
  }

  entered(kataId: string, avatar: string): void {
    const kata = this.kata(kataId);
    if (!kata.avatars.has(avatar)) kata.avatars.set(avatar, []);
  }

  left(kataId: string, avatar: string): void {
    this.katas.get(kataId)?.avatars.delete(avatar);
  }

  ran(kataId: string, avatar: string, run: { colour: string; durationMs: number; stdout: string; stderr: string }): void {
    const kata = this.kata(kataId);
    kata.runs++;
    const record = { at: new Date().toISOString(), colour: run.colour, durationMs: run.durationMs, stdout: run.stdout.slice(0, OUTPUT_BYTES), stderr: run.stderr.slice(0, OUTPUT_BYTES) };
    kata.avatars.set(avatar, [record, ...(kata.avatars.get(avatar) ?? [])].slice(0, RUNS_PER_AVATAR));
    const minute = Math.floor(Date.now() / 60_000);
    const counts = this.perMinute.get(minute) ?? {};
    counts[run.colour] = (counts[run.colour] ?? 0) + 1;
    this.perMinute.set(minute, counts);
    for (const old of this.perMinute.keys()) if (old <= minute - MINUTES) this.perMinute.delete(old);
  }

  gone(kataIds: string[], reaped: boolean): void {
    for (const kataId of kataIds) this.katas.delete(kataId);
    if (reaped && kataIds.length) {
      this.reaps.unshift({ at: new Date().toISOString(), kataIds });
      this.reaps.length = Math.min(this.reaps.length, MAX_REAPS);
    }
  }

  of(kataId: string) {
    const kata = this.katas.get(kataId);
    return {
      runs: kata?.runs ?? 0,
      avatars: Object.fromEntries([...(kata?.avatars ?? [])].map(([avatar, runs]) => [avatar, runs])),
    };
  }

  // The runs of each of the last minutes, oldest first, by colour.
  runsPerMinute(): { minute: string; colours: Record<string, number> }[] {
    const now = Math.floor(Date.now() / 60_000);
    return Array.from({ length: MINUTES }, (_, i) => now - MINUTES + 1 + i).map((m) => ({ minute: new Date(m * 60_000).toISOString(), colours: this.perMinute.get(m) ?? {} }));
  }

  lastReaps() {
    return this.reaps;
  }
}
