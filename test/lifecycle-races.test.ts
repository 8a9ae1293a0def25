// The kata and avatar lifecycle (issue 3) when runners restart and requests race:
// all state is in the engine, and concurrent requests for one name have one winner.
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { LABEL } from '../lib/katas.ts';
import { BASE, containerOf, docker, endKata, error, inContainer, kataId, kataWithAvatar, startRunner, type Runner } from './helper.ts';
import { run, runScript } from './run-helper.ts';

const N = 5;

// Racing requests for one name: one 200, every other the 409 `exists` answer. Answers
// the winner's index.
function oneWins(t: Test, answers: { status: number; body: unknown }[], fn: string, exists: string, label = 'one 200, the others 409'): number {
  t.strictSame(answers.map((a) => a.status).sort(), [200, ...Array(answers.length - 1).fill(409)], label);
  for (const answer of answers.filter((a) => a.status !== 200)) t.strictSame(answer.body, error(fn, exists));
  return answers.findIndex((a) => a.status === 200);
}

const slotOf = async (runner: Runner, id: string) =>
  Number((await docker.getContainer(await containerOf(runner, id)).inspect()).Config.Labels[LABEL.slot]);

t.test('a restarted runner finds its katas, avatars and their files', { timeout: 180_000 }, async (t) => {
  // Both runners share the name; their teardowns run after the test, when all is done.
  const name = `test-${randomBytes(4).toString('hex')}`;
  const first = await startRunner(t, { RUNNER_NAME: name });
  const id = await kataWithAvatar(first, { 'cyber-dojo.sh': 'true' });
  const before = await runScript(first, id, 'echo made before the restart > kept.txt; id -u');
  t.strictSame(before.body.run.created, { 'kept.txt': { content: 'made before the restart\n', truncated: false } });
  await first.app.close();
  await t.rejects(fetch(`${first.url}/alive`), 'the first runner is gone');

  const second = await startRunner(t, { RUNNER_NAME: name });
  t.strictSame((await second.post('kata_exists', { kata_id: id })).body, { kata_exists: true });
  t.strictSame((await second.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: true });
  t.strictSame((await second.post('avatar_exists', { kata_id: id, avatar_name: 'salmon' })).body, { avatar_exists: false });
  const after = await runScript(second, id, 'cat kept.txt; id -u');
  t.equal(after.body.run.stdout.content, `made before the restart\n${before.body.run.stdout.content}`, "the earlier run's file, and the same uid");
  t.strictSame(await second.post('kata_new', { image_name: BASE, kata_id: id }), { status: 409, body: error('kata_new', 'kata_id:exists') });
  t.equal((await second.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await second.containers(), []);
});

t.test(`${N} concurrent kata_new of one kata: one 200, the others kata_id:exists, one container`, { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  const answers = await Promise.all(Array.from({ length: N }, () => runner.post('kata_new', { image_name: BASE, kata_id: id })));
  oneWins(t, answers, 'kata_new', 'kata_id:exists');
  const list = await runner.containers();
  t.equal(list.length, 1, 'one container');
  t.equal(list[0]?.State, 'running');
  t.equal(list[0]?.Labels[LABEL.kataId], id);
  t.strictSame((await runner.post('kata_exists', { kata_id: id })).body, { kata_exists: true });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('kata_new of one kata arriving while another is creating it: one 200, the others kata_id:exists', { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  // Spread over the time one kata_new takes, some requests find the first one's
  // container created but not yet started: it is not theirs to replace.
  for (let round = 0; round < 3; round++) {
    const id = kataId();
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => new Promise((resolve) => setTimeout(resolve, i * 12)).then(() => runner.post('kata_new', { image_name: BASE, kata_id: id }))),
    );
    const winner = oneWins(t, answers, 'kata_new', 'kata_id:exists', `round ${round}: one 200, the others 409`);
    const list = await runner.containers();
    t.equal(list.length, 1, 'one container');
    t.equal(list[0]?.Labels[LABEL.deadline], answers[winner]?.body.kata_new.deadline, "it is the one whose deadline was answered");
    t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  }
  t.strictSame(await runner.containers(), []);
});

t.test(`${N} concurrent kata_new of an exited kata: one replaces it, the others kata_id:exists`, { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const old = await endKata(runner, id);
  const answers = await Promise.all(Array.from({ length: N }, () => runner.post('kata_new', { image_name: BASE, kata_id: id })));
  oneWins(t, answers, 'kata_new', 'kata_id:exists');
  const list = await runner.containers();
  t.equal(list.length, 1, 'one container');
  t.not(list[0]?.Id, old);
  t.equal(list[0]?.State, 'running');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test(`${N} concurrent avatar_new of one avatar: one 200, the others avatar_name:exists, one user`, { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) => runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: { 'cyber-dojo.sh': 'cat *.txt', [`${i}.txt`]: `${i}\n` } })),
  );
  const winner = oneWins(t, answers, 'avatar_new', 'avatar_name:exists');
  const container = await containerOf(runner, id);
  t.equal(await inContainer(container, 'grep -c "^lion:" /etc/passwd; grep -c "^lion:" /etc/group'), '1\n1\n', 'one passwd and one group entry');
  // Only the winner's starting files were written.
  t.equal((await run(runner, id)).body.run.stdout.content, `${winner}\n`);
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('avatars entering and leaving one kata at once each get, and then lose, exactly their own user', { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const container = await containerOf(runner, id);
  const accounts = () => inContainer(container, 'cat /etc/passwd /etc/group');
  const before = await accounts();
  const avatars = ['lion', 'salmon', 'tiger', 'zebra', 'alligator', 'owl', 'ray', 'bee'];
  const entered = await Promise.all(avatars.map((avatar) => runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: {} })));
  t.strictSame(entered.map((a) => a.status), avatars.map(() => 200));
  const during = await accounts();
  for (const avatar of avatars) t.equal(during.split('\n').filter((line) => line.startsWith(`${avatar}:`)).length, 2, `${avatar}: one user, one group`);
  // Edits of /etc/passwd and /etc/group are serialised: leaving, no avatar takes another's line with it.
  const left = await Promise.all(avatars.map((avatar) => runner.post('avatar_old', { kata_id: id, avatar_name: avatar })));
  t.strictSame(left.map((a) => a.status), avatars.map(() => 200));
  t.equal(await accounts(), before, "the image's own users and groups are as they were");
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('concurrent kata_new of different katas, from two runners, get distinct uid slots', { timeout: 180_000 }, async (t) => {
  const runners = [await startRunner(t), await startRunner(t)];
  const made = runners.flatMap((runner) => Array.from({ length: 3 }, () => ({ runner, id: kataId() })));
  const answers = await Promise.all(made.map(({ runner, id }) => runner.post('kata_new', { image_name: BASE, kata_id: id })));
  t.strictSame(answers.map((a) => a.status), made.map(() => 200));
  const slots = await Promise.all(made.map(({ runner, id }) => slotOf(runner, id)));
  t.equal(new Set(slots).size, made.length, `distinct slots ${slots}`);
  // And so distinct uids: lion in each kata is someone else to the kernel.
  const uids = new Set<string>();
  for (const { runner, id } of made) {
    t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: {} })).status, 200);
    uids.add((await runScript(runner, id, 'id -u')).body.run.stdout.content);
  }
  t.equal(uids.size, made.length, 'distinct lion uids');
  for (const { runner, id } of made) t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  for (const runner of runners) t.strictSame(await runner.containers(), []);
});
