// Co-tenant attacks through the HTTP API: in one kata, lion runs a hostile
// cyber-dojo.sh while salmon runs its tests. Each attack is checked the same way:
// the hostile run's answer and bound, no process of lion left, lion's next normal
// run green, salmon's run green, and kata_old removing the container in time.
import type { Test } from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { docker, kataWithAvatar, PYTHON, processesOf, type Runner } from './helper.ts';
import { avatarOf, run, startFiles } from './run-helper.ts';

const C = 'cyber-dojo-runner/c-assert';
// An image with busybox as its whole userland: no bash, perl, util-linux or coreutils.
export const BUSYBOX = 'cyber-dojo-runner/busybox-sh';

export type Language = 'python' | 'c' | 'sh';

const LANGUAGES = {
  python: { image: PYTHON, start: startFiles('python-pytest'), green: { 'hiker.py': 'def answer():\n    return 6 * 7\n' } },
  c: { image: C, start: startFiles('c-assert'), green: { 'hiker.c': '#include "hiker.h"\n\nint answer(void)\n{\n    return 6 * 7;\n}\n' } },
  sh: { image: BUSYBOX, start: startFiles('busybox-sh'), green: { 'hiker.sh': 'answer() {\n  echo $((6 * 7))\n}\n' } },
};

// The start point's own cyber-dojo.sh with the green answer: a normal run.
export const normalFiles = (language: Language): Record<string, string> => ({
  'cyber-dojo.sh': LANGUAGES[language].start['cyber-dojo.sh']!,
  ...LANGUAGES[language].green,
});

// The victim first starts 50 processes at once and fails (amber) unless all ran:
// whatever the attack, the other avatar can still fork; then its tests, green.
// Plain sh, for every image.
const FORKS = [
  'pids=',
  'for i in $(seq 50); do (exit 7) & pids="$pids $!"; done',
  'forked=0',
  'for pid in $pids; do wait "$pid"; [ $? = 7 ] && forked=$((forked + 1)); done',
  '[ "$forked" = 50 ] || { echo "forked $forked of 50" >&2; exit 99; }',
  '',
].join('\n');

export const victimFiles = (language: Language): Record<string, string> => {
  const files = normalFiles(language);
  return { ...files, 'cyber-dojo.sh': FORKS + files['cyber-dojo.sh'] };
};

export interface Attack {
  name: string;
  language?: Language;
  files: Record<string, string>; // lion's hostile run: its cyber-dojo.sh and whatever else
  maxSeconds?: number;
  expect: { colour: string; timed_out: boolean; oom_killed: boolean; [field: string]: unknown }; // matched against its answer
  victim?: Record<string, string>; // salmon's files, when not victimFiles(language)
  before?: (kata: Kata) => Promise<void>; // once both avatars are in, before any run
  after?: (kata: Kata & { hostile: any }) => Promise<void>; // once both runs are answered, before lion's next
  victimLeads?: boolean; // salmon's run starts first: the attack needs a process of salmon to aim at
  countPeak?: boolean; // count lion's processes every 100 ms while the hostile run lasts
  nextDeleted?: string[]; // what lion's next run deletes besides writing the normal files
}

export interface Kata {
  runner: Runner;
  id: string;
  containerId: string;
  lionUid: number;
  salmonUid: number;
}

export interface Outcome extends Kata {
  hostile: any; // lion's hostile run's answer
  victim: any; // salmon's
  next: any; // lion's next normal run's
  elapsedMs: number;
  peak: number; // the most processes of lion's counted at once, when counted
  row: unknown[]; // what was measured, for the closing table
}

// The attack may hold salmon back until lion's limit: salmon's own limit is generous.
const VICTIM_MAX_SECONDS = 20;
const VICTIM_DELAY_MS = 500;
const KATA_OLD_MS = 5000;

// A kata of the language with lion and salmon in it, both at the start point.
export async function twoAvatarKata(runner: Runner, language: Language): Promise<Kata> {
  const { image, start } = LANGUAGES[language];
  const id = await kataWithAvatar(runner, start, { image });
  const entered = await runner.post('avatar_new', { kata_id: id, avatar_name: 'salmon', starting_files: start });
  if (entered.status !== 200) throw new Error(`avatar_new: ${JSON.stringify(entered)}`);
  const lion = await avatarOf(runner, id, 'lion');
  const salmon = await avatarOf(runner, id, 'salmon');
  return { runner, id, containerId: lion.containerId, lionUid: lion.uid, salmonUid: salmon.uid };
}

// A uid's processes, counted from the host's /proc: an exec into a kata whose CPU a
// fork bomb is eating may start only once the bomb is over. Avatar uids are unique on
// the engine's host, and these tests run on it.
export async function hostCount(uid: number): Promise<number> {
  const owners = await Promise.all(
    (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map((pid) => readFile(`/proc/${pid}/status`, 'utf8').then((status) => /^Uid:\s+(\d+)/m.exec(status)?.[1], () => undefined)),
  );
  return owners.filter((owner) => owner === String(uid)).length;
}

const timed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now();
  const result = await work();
  return [result, Math.round(performance.now() - started)];
};

// The attack and the checks every attack gets but the last (see `end`); answers
// what the test needs for its own checks.
export async function attack(t: Test, runner: Runner, spec: Attack): Promise<Outcome> {
  const language = spec.language ?? 'python';
  const maxSeconds = spec.maxSeconds ?? 2;
  const kata = await twoAvatarKata(runner, language);
  const { id, containerId, lionUid } = kata;
  await spec.before?.(kata);
  const hostileRun = () => timed(() => run(runner, id, { changed: spec.files, maxSeconds }));
  const victimRun = () => timed(() => run(runner, id, { avatar: 'salmon', changed: spec.victim ?? victimFiles(language), maxSeconds: VICTIM_MAX_SECONDS }));

  let hostile: Promise<[any, number]>;
  let victim: Promise<[any, number]>;
  if (spec.victimLeads) {
    victim = victimRun();
    await sleep(VICTIM_DELAY_MS);
    hostile = hostileRun();
  } else {
    hostile = hostileRun();
    await sleep(VICTIM_DELAY_MS);
    victim = victimRun();
  }
  let peak = 0;
  let answered = false;
  const counting = (async () => {
    while (spec.countPeak && !answered) {
      const count = await hostCount(lionUid);
      peak = Math.max(peak, count);
      await sleep(100);
    }
  })();
  const [[hostileAnswer, elapsedMs], [victimAnswer, victimMs]] = await Promise.all([hostile.finally(() => (answered = true)), victim, counting]);

  t.equal(hostileAnswer.status, 200, 'the hostile run is answered');
  const lion = hostileAnswer.body.run;
  t.match(lion, spec.expect, `the hostile run is ${spec.expect.colour}`);
  if (!t.passing()) t.comment(`lion: ${JSON.stringify(lion)}`);
  t.ok(elapsedMs < (maxSeconds + 1) * 1000, `the hostile run answered in ${elapsedMs} ms, within max_seconds + 1 s`);
  const left = await processesOf(containerId, lionUid);
  t.equal(left, 0, 'no process of lion is left');
  await spec.after?.({ ...kata, hostile: lion });

  t.equal(victimAnswer.status, 200, "salmon's run is answered");
  const salmon = victimAnswer.body.run;
  t.equal(salmon?.colour, 'green', `salmon's run, during the attack, is green (${victimMs} ms)`);
  if (salmon?.colour !== 'green') t.comment(`salmon: ${JSON.stringify(salmon)}`);

  const next = await run(runner, id, { changed: normalFiles(language), deleted: spec.nextDeleted ?? [], maxSeconds: 10 });
  t.equal(next.body.run?.colour, 'green', "lion's next normal run is green");
  if (next.body.run?.colour !== 'green') t.comment(`lion next: ${JSON.stringify(next.body)}`);

  const row = [spec.name, elapsedMs, lion?.status, lion?.colour, lion?.timed_out, lion?.oom_killed, salmon?.colour, victimMs, left, spec.countPeak ? peak : '-'];
  return { ...kata, hostile: lion, victim: salmon, next: next.body.run, elapsedMs, peak, row };
}

// kata_old removes the attacked kata's container within 5 s.
export async function end(t: Test, kata: Outcome): Promise<void> {
  const [answer, ms] = await timed(() => kata.runner.post('kata_old', { kata_id: kata.id }));
  t.same(answer, { status: 200, body: { kata_old: {} } }, 'kata_old answers');
  t.ok(ms < KATA_OLD_MS, `kata_old took ${ms} ms`);
  const status = await docker.getContainer(kata.containerId).inspect().then(() => 200, (e: { statusCode?: number }) => e.statusCode);
  t.equal(status, 404, 'the container is gone');
  t.comment(`| ${[...kata.row, ms].join(' | ')} |`);
}

// Attack, then the kata's end: for attacks whose own checks need no container.
export async function attackAndEnd(t: Test, runner: Runner, spec: Attack): Promise<Outcome> {
  const outcome = await attack(t, runner, spec);
  await end(t, outcome);
  return outcome;
}
