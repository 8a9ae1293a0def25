// POST /run against scripts that do not stop, flood their output or eat memory: each
// is cut off as the contract says, leaves no process of the avatar behind, and the
// avatar's next run is a normal one.
import t, { type Test } from 'tap';
import { processesOf, startRunner, type Runner } from './helper.ts';
import { avatarOf, bashKata, runScript } from './run-helper.ts';

t.setTimeout(600_000);

const MAX_SECONDS = 2;

// A normal run after a hostile one: the kata and the avatar still work.
async function stillWorks(t: Test, runner: Runner, id: string) {
  const next = await runScript(runner, id, 'echo fine\n');
  t.match(next.body.run, { status: 0, timed_out: false, oom_killed: false, stdout: { content: 'fine\n', truncated: false } }, 'the next run is normal');
}

const runaways: { name: string; script: string; timesOut: boolean; stderr?: RegExp }[] = [
  { name: 'an infinite loop', script: 'while :; do :; done\n', timesOut: true },
  { name: 'a background sleeper, the script exiting at once', script: 'sleep 1000 &\nexit 0\n', timesOut: false },
  {
    name: 'a daemon that left the session and closed its output',
    script: `( setsid bash -c "trap '' TERM HUP; exec sleep 1000" >/dev/null 2>&1 & )\necho bye\n`,
    timesOut: false,
  },
  { name: 'a setsid daemon and a loop', script: "setsid bash -c 'while :; do :; done' &\nwhile :; do :; done\n", timesOut: true },
  { name: 'a loop that ignores TERM', script: "trap '' TERM\nwhile :; do :; done\n", timesOut: true },
  // Its parent is the root-owned timeout, out of the avatar's reach.
  { name: 'a script that kills its parent', script: 'kill -9 $PPID\nwhile :; do :; done\n', timesOut: true, stderr: /Operation not permitted/ },
];

t.test('runaway scripts answer within max_seconds + 1 s and leave no process', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const { containerId, uid } = await avatarOf(runner, id);
  for (const { name, script, timesOut, stderr } of runaways) {
    await t.test(name, async (t) => {
      const started = performance.now();
      const answer = await runScript(runner, id, script, { maxSeconds: MAX_SECONDS });
      const elapsed = Math.round(performance.now() - started);
      const { run } = answer.body;
      t.comment(`${name}: ${elapsed} ms, status ${run?.status}, colour ${run?.colour}, duration_ms ${run?.duration_ms}`);
      t.equal(answer.status, 200);
      t.equal(run.timed_out, timesOut, timesOut ? 'timed out' : 'not timed out');
      if (timesOut) t.equal(run.colour, 'timed_out');
      else t.equal(run.status, 0);
      if (stderr) t.match(run.stderr.content, stderr);
      t.ok(elapsed < (MAX_SECONDS + 1) * 1000, `answered in ${elapsed} ms`);
      t.equal(await processesOf(containerId, uid), 0, 'no process of the avatar is left');
      await stillWorks(t, runner, id);
    });
  }
});

t.test('100 MB of output comes back as its first 51200 bytes, truncated', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const flood = "head -c 100000000 /dev/zero | tr '\\0' x";
  const out = (await runScript(runner, id, `${flood}\n`)).body.run;
  t.match(out, { status: 0, timed_out: false, stdout: { truncated: true }, stderr: { content: '', truncated: false } });
  t.equal(out.stdout.content, 'x'.repeat(51200));
  const err = (await runScript(runner, id, `${flood} >&2\n`)).body.run;
  t.match(err, { status: 0, timed_out: false, stdout: { content: '', truncated: false }, stderr: { truncated: true } });
  t.equal(err.stderr.content, 'x'.repeat(51200));
  const exact = (await runScript(runner, id, "head -c 51200 /dev/zero | tr '\\0' y\n")).body.run;
  t.same(exact.stdout, { content: 'y'.repeat(51200), truncated: false }, '51200 bytes exactly are not truncated');
});

t.test('output that is not UTF-8 is answered with U+FFFD in its place', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const answer = await runScript(runner, id, "printf 'a\\377\\376b'\nprintf 'c\\300d' >&2\n");
  t.equal(answer.status, 200);
  t.same(answer.body.run.stdout, { content: 'a\uFFFD\uFFFDb', truncated: false });
  t.same(answer.body.run.stderr, { content: 'c\uFFFDd', truncated: false });
  // The cut at 51200 bytes falls in the middle of a two-byte é.
  const cut = (await runScript(runner, id, "printf x\nhead -c 60000 /dev/zero | tr '\\0' '\\n' | sed 's/^/é/' | tr -d '\\n'\n")).body.run;
  t.equal(cut.stdout.truncated, true);
  t.equal(cut.stdout.content, `x${'é'.repeat(25599)}\uFFFD`);
});

t.test('a memory bomb is oom_killed, not timed out, and the kata lives on', async (t) => {
  // A small kata fills up quickly.
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  const id = await bashKata(runner);
  const { containerId, uid } = await avatarOf(runner, id);
  // tail keeps everything after the last newline, and /dev/zero has none.
  const bomb = await runScript(runner, id, 'head -c 5000000000 /dev/zero | tail\n', { maxSeconds: 20 });
  t.comment(`memory bomb: status ${bomb.body.run?.status}, colour ${bomb.body.run?.colour}, duration_ms ${bomb.body.run?.duration_ms}`);
  t.match(bomb.body.run, { status: 137, oom_killed: true, timed_out: false });
  t.not(bomb.body.run.colour, 'timed_out');
  t.equal(await processesOf(containerId, uid), 0);
  await stillWorks(t, runner, id);
  const plain = await runScript(runner, id, 'exit 137\n');
  t.match(plain.body.run, { status: 137, oom_killed: false, timed_out: false }, 'exit 137 alone is not out of memory');
});
