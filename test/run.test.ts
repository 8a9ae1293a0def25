// POST /run against the real engine: colours, state between runs, the environment,
// the status, resurrection, concurrency and bad input. Files: run-files.test.ts;
// time, output and memory limits: run-limits.test.ts.
import t from 'tap';
import { BASE, docker, kataWithAvatar, PYTHON, startRunner } from './helper.ts';
import { avatarOf, bashKata, pythonStart, run, runScript } from './run-helper.ts';

t.setTimeout(600_000);

t.test('red, amber, green in one avatar, its files kept between runs', async (t) => {
  const runner = await startRunner(t);
  const id = await kataWithAvatar(runner, pythonStart(), { image: PYTHON });

  const red = await run(runner, id);
  t.equal(red.status, 200);
  t.match(red.body.run, { colour: 'red', status: 1, timed_out: false, oom_killed: false, resurrected: false });
  t.match(red.body.run.stdout.content, /assert 54 == 42/);

  const amber = await run(runner, id, { changed: { 'hiker.py': 'def answer()\n    return 6 * 7\n' } });
  t.match(amber.body.run, { colour: 'amber', timed_out: false });
  t.match(amber.body.run.stdout.content, /SyntaxError/);

  const green = await run(runner, id, { changed: { 'hiker.py': 'def answer():\n    return 6 * 7\n' } });
  t.match(green.body.run, { colour: 'green', status: 0 });
  t.match(green.body.run.stdout.content, /1 passed/);

  const again = await run(runner, id);
  t.match(again.body.run, { colour: 'green', status: 0 }, 'a run that sends nothing still sees the green hiker.py');
});

t.test('cyber-dojo.sh runs as the avatar, in its sandbox, with the contract environment', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const names = ['CYBER_DOJO_KATA_ID', 'CYBER_DOJO_AVATAR_NAME', 'CYBER_DOJO_IMAGE_NAME', 'CYBER_DOJO_SANDBOX', 'CYBER_DOJO_RUNNER', 'HOME'];
  const script = `${names.map((name) => `echo "${name}=$${name}"`).join('\n')}\necho "user=$(whoami)"\necho "cwd=$(pwd)"\n`;
  const answer = await runScript(runner, id, script);
  t.equal(answer.status, 200);
  t.equal(
    answer.body.run.stdout.content,
    [
      `CYBER_DOJO_KATA_ID=${id}`,
      'CYBER_DOJO_AVATAR_NAME=lion',
      `CYBER_DOJO_IMAGE_NAME=${BASE}`,
      'CYBER_DOJO_SANDBOX=/sandboxes/lion',
      `CYBER_DOJO_RUNNER=${runner.config.runnerName}`,
      'HOME=/home/lion',
      'user=lion',
      'cwd=/sandboxes/lion',
      '',
    ].join('\n'),
  );
});

t.test('status is the integer cyber-dojo.sh exits with', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const answer = await runScript(runner, id, 'echo out; echo err >&2; exit 3\n');
  t.match(answer.body.run, {
    status: 3,
    stdout: { content: 'out\n', truncated: false },
    stderr: { content: 'err\n', truncated: false },
    timed_out: false,
    oom_killed: false,
    colour: 'faulty', // the base image has no colour rules
  });
  t.ok(Number.isInteger(answer.body.run.duration_ms));
});

t.test('a kata that is gone is resurrected from image_name and unchanged_files, or answers kata_id:!exists', async (t) => {
  const runner = await startRunner(t);
  const start = pythonStart();
  const { 'hiker.py': _, ...unchanged } = start;
  const green = { 'hiker.py': 'def answer():\n    return 6 * 7\n' };

  const removed = await kataWithAvatar(runner, start, { image: PYTHON });
  const before = (await avatarOf(runner, removed)).containerId;
  t.same((await runner.post('kata_old', { kata_id: removed })).body, { kata_old: {} });
  t.same(await run(runner, removed, { changed: green }), { status: 404, body: { exception: { function: 'run', message: 'kata_id:!exists' } } }, 'without them');
  t.same(
    (await run(runner, removed, { changed: green, extra: { image_name: PYTHON } })).body,
    { exception: { function: 'run', message: 'kata_id:!exists' } },
    'image_name alone is not enough',
  );
  const back = await run(runner, removed, { changed: green, extra: { image_name: PYTHON, unchanged_files: unchanged } });
  t.equal(back.status, 200);
  t.match(back.body.run, { resurrected: true, colour: 'green', status: 0 }, 'the run sees unchanged_files and changed_files');
  t.same(back.body.run.created, {}, 'the files it was resurrected with are not reported as created');
  t.not((await avatarOf(runner, removed)).containerId, before, 'in a new container');
  const next = await run(runner, removed);
  t.match(next.body.run, { resurrected: false, colour: 'green' }, 'and the kata lives on');

  // Removed behind the runner's back, as an engine restart or an operator would.
  const killed = await bashKata(runner);
  await docker.getContainer((await avatarOf(runner, killed)).containerId).remove({ force: true });
  t.same((await runScript(runner, killed, 'cat a b\n')).body, { exception: { function: 'run', message: 'kata_id:!exists' } });
  const revived = await runScript(runner, killed, 'cat a b\n', { changed: { b: 'B\n' }, extra: { image_name: BASE, unchanged_files: { a: 'A\n' } } });
  t.match(revived.body.run, { resurrected: true, status: 0, stdout: { content: 'A\nB\n' } });
});

t.test('an avatar that left is resurrected from image_name and unchanged_files, or answers avatar_name:!exists', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { a: 'A\n' });
  t.same((await runner.post('avatar_old', { kata_id: id, avatar_name: 'lion' })).body, { avatar_old: {} });
  t.same(await runScript(runner, id, 'cat a\n'), { status: 404, body: { exception: { function: 'run', message: 'avatar_name:!exists' } } });
  const back = await runScript(runner, id, 'whoami; cat a b\n', {
    changed: { b: 'B\n' },
    extra: { image_name: BASE, unchanged_files: { a: 'a again\n' } },
  });
  t.match(back.body.run, { resurrected: true, status: 0, stdout: { content: 'lion\na again\nB\n' } });
  t.same((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: true });
  t.match((await runScript(runner, id, 'cat a b\n')).body.run, { resurrected: false, stdout: { content: 'a again\nB\n' } });
});

t.test('two avatars resurrecting one gone kata at once both run, in one new container', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'salmon', starting_files: {} })).status, 200);
  t.same((await runner.post('kata_old', { kata_id: id })).body, { kata_old: {} });
  const resurrect = { image_name: BASE, unchanged_files: {} };
  const answers = await Promise.all(['lion', 'salmon'].map((avatar) => runScript(runner, id, 'whoami\n', { avatar, extra: resurrect })));
  t.same(answers.map((a) => a.status), [200, 200], JSON.stringify(answers.map((a) => a.body)));
  t.same(answers.map((a) => a.body.run?.stdout.content), ['lion\n', 'salmon\n']);
  t.same(answers.map((a) => a.body.run?.resurrected), [true, true]);
  t.equal((await runner.containers()).length, 1);
});

t.test('two avatars of one kata run at the same time, each with its own output', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'salmon', starting_files: {} })).status, 200);
  // Each waits in /dev/shm, the one folder avatars share, for the other: both finish
  // only if both ran at once.
  const script = [
    'touch "/dev/shm/$CYBER_DOJO_AVATAR_NAME.here"',
    'until [ "$(ls /dev/shm/*.here | wc -l)" = 2 ]; do sleep 0.1; done',
    'sleep 1',
    'echo "$CYBER_DOJO_AVATAR_NAME $(whoami)"',
    '',
  ].join('\n');
  const [lion, salmon] = await Promise.all(['lion', 'salmon'].map((avatar) => runScript(runner, id, script, { avatar, maxSeconds: 15 })));
  t.match(lion!.body.run, { status: 0, timed_out: false, stdout: { content: 'lion lion\n' } });
  t.match(salmon!.body.run, { status: 0, timed_out: false, stdout: { content: 'salmon salmon\n' } });
});

t.test("runs of one avatar wait for each other: neither is killed by the other's clean-up", async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  // Unserialised, both would append before either counted, and one start would kill the other's sleep.
  const script = 'echo run >>log.txt\nsleep 1\nwc -l <log.txt\n';
  const answers = await Promise.all([1, 2].map(() => runScript(runner, id, script)));
  t.same(answers.map((a) => a.body.run.status), [0, 0]);
  t.same(answers.map((a) => a.body.run.timed_out), [false, false]);
  t.same(answers.map((a) => a.body.run.stdout.content).sort(), ['1\n', '2\n']);
  t.equal((await runScript(runner, id, 'cat log.txt\n')).body.run.stdout.content, 'run\nrun\n', 'both appends are there');
});

t.test('bad arguments answer <arg>:malformed and run nothing', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const malformed = (message: string) => ({ status: 400, body: { exception: { function: 'run', message } } });
  for (const maxSeconds of [0, 21, 2.5, '5', null]) {
    t.same(await run(runner, id, { extra: { max_seconds: maxSeconds } }), malformed('max_seconds:malformed'), `max_seconds ${JSON.stringify(maxSeconds)}`);
  }
  for (const changed of ['x', [], ['a'], null, { a: 1 }, { '../a': 'x' }]) {
    t.same(await run(runner, id, { extra: { changed_files: changed } }), malformed('changed_files:malformed'), `changed_files ${JSON.stringify(changed)}`);
  }
  for (const deleted of ['a', {}, [1], [null], ['/a']]) {
    t.same(await run(runner, id, { extra: { deleted_filenames: deleted } }), malformed('deleted_filenames:malformed'), `deleted_filenames ${JSON.stringify(deleted)}`);
  }
  t.same(await run(runner, id, { changed: { a: 'x' }, deleted: ['a'] }), malformed('deleted_filenames:malformed'), 'a file both changed and deleted');
  t.equal((await runScript(runner, id, 'ls -A\n')).body.run.stdout.content, 'cyber-dojo.sh\n', 'and none of them wrote anything');
});
