// A kata's runs beyond KATA_RUNS_AT_ONCE queue, and their time limit starts when they
// do: a crowded kata gives every avatar its full max_seconds.
import t from 'tap';
import { kataWithAvatar, startRunner } from './helper.ts';
import { runScript } from './run-helper.ts';

// Each run says when it began and ended, by the kata's clock (the host's).
const NOTE = 'echo "begin $(date +%s%N)"; sleep 1; echo "end $(date +%s%N)"';

t.test('past the per-kata limit, runs wait their turn, and the wait is not counted against max_seconds', async (t) => {
  const runner = await startRunner(t, { KATA_RUNS_AT_ONCE: '1' });
  const avatars = ['lion', 'salmon', 'tiger'];
  const id = await kataWithAvatar(runner, { 'cyber-dojo.sh': 'true' });
  for (const avatar of avatars.slice(1)) {
    t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: {} })).status, 200);
  }
  // Three runs of about 1 s each, a limit of 2 s: at once, they would all fit; queued, each still does.
  const answers = await Promise.all(avatars.map((avatar) => runScript(runner, id, NOTE, { avatar, maxSeconds: 2 })));
  for (const answer of answers) {
    t.equal(answer.status, 200);
    t.equal(answer.body.run.timed_out, false, 'no run loses its time to the queue');
  }
  const spans = answers.flatMap((a) => [...(a.body.run.stdout.content as string).matchAll(/^begin (\d+)\nend (\d+)$/gm)]).map((m) => [BigInt(m[1]!), BigInt(m[2]!)] as const);
  t.equal(spans.length, 3, 'each run said when it ran');
  spans.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  for (let i = 1; i < spans.length; i++) t.ok(spans[i]![0] >= spans[i - 1]![1], 'one run at a time in the kata');
});
