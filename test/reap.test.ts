// The reap cron function and kata lifetimes, against the real engine.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { LABEL } from '../lib/katas.ts';
import { BASE, docker, endKata, kataId, kataWithAvatar, startRunner, type Runner } from './helper.ts';

const SCRIPT = { 'cyber-dojo.sh': 'cat note.txt', 'note.txt': 'first' };

async function exitedKata(runner: Runner): Promise<string> {
  const id = await kataWithAvatar(runner, SCRIPT);
  await endKata(runner, id);
  return id;
}

const exists = async (runner: Runner, id: string) => (await runner.post('kata_exists', { kata_id: id })).body.kata_exists;
const gone = async (runner: Runner, id: string) =>
  docker.getContainer(`${runner.config.runnerName}-kata-${id}`).inspect().then(() => false, () => true);

t.test('katas expire at their deadline: runs racing it never fail, a sweep reaps once, a run resurrects', async (t) => {
  const runner = await startRunner(t);
  // Two katas of the shortest lifetime, made together so that the test waits once.
  const [racer, reaped] = [kataId(), kataId()];
  const created = await Promise.all([racer, reaped].map((id) => runner.post('kata_new', { image_name: BASE, kata_id: id, lifetime_seconds: 60 })));
  t.same(created.map((c) => c.status), [200, 200]);
  const deadline = Math.max(...created.map((c) => new Date(c.body.kata_new.deadline).getTime()));
  t.ok(Math.abs(deadline - (Date.now() + 60_000)) < 10_000, 'the deadline is the lifetime from now');
  for (const id of [racer, reaped]) {
    t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: SCRIPT })).status, 200);
    t.equal(await exists(runner, id), true);
  }

  // Runs started just before the deadline: the container dies under them.
  await sleep(Math.max(0, deadline - Date.now() - 2000));
  const racing = { 'cyber-dojo.sh': 'sleep 5; cat note.txt' };
  const [resurrecting, plain] = await Promise.all([
    runner.post('run', { kata_id: racer, avatar_name: 'lion', changed_files: racing, deleted_filenames: [], max_seconds: 10, image_name: BASE, unchanged_files: { 'note.txt': 'kept' } }),
    runner.post('run', { kata_id: reaped, avatar_name: 'lion', changed_files: racing, deleted_filenames: [], max_seconds: 10 }),
  ]);
  t.equal(resurrecting.status, 200, 'a run racing the deadline with its files answers');
  t.equal(resurrecting.body.run.resurrected, true, 'from a resurrected kata');
  t.equal(resurrecting.body.run.stdout.content, 'kept');
  t.same(plain, { status: 404, body: { exception: { function: 'run', message: 'kata_id:!exists' } } }, 'one without them answers kata_id:!exists');

  await sleep(Math.max(0, deadline - Date.now() + 1000));
  t.equal(await exists(runner, reaped), false, 'kata_exists is false after the deadline');
  const first = await runner.post('reap', {});
  t.equal(first.status, 200);
  t.same(first.body.reap.removed, [reaped], 'the sweep reports the expired kata, and not the resurrected one');
  t.ok(await gone(runner, reaped), 'and its container is gone');
  t.same((await runner.post('reap', {})).body.reap.removed, [], 'a second sweep reports nothing');

  const run = await runner.post('run', {
    kata_id: reaped, avatar_name: 'lion', changed_files: { 'note.txt': 'back' }, deleted_filenames: [], max_seconds: 5,
    image_name: BASE, unchanged_files: SCRIPT,
  });
  t.equal(run.status, 200);
  t.equal(run.body.run.resurrected, true, 'the next run that carries its files brings it back');
  t.equal(run.body.run.stdout.content, 'back');
  t.equal(await exists(runner, reaped), true);
});

t.test('two concurrent sweeps remove each container once, without error', async (t) => {
  const a = await startRunner(t);
  const twin = await startRunner(t, { RUNNER_NAME: a.config.runnerName });
  const ids = await Promise.all([1, 2, 3, 4].map(() => exitedKata(a)));
  const live = await kataWithAvatar(a, SCRIPT);
  const [one, two] = await Promise.all([a.post('reap', {}), twin.post('reap', {})]);
  t.equal(one.status, 200);
  t.equal(two.status, 200);
  const removed = [...one.body.reap.removed, ...two.body.reap.removed];
  t.same(removed.sort(), [...ids].sort(), 'each exited kata is reported by exactly one sweep');
  for (const id of ids) t.ok(await gone(a, id));
  t.equal(await exists(a, live), true, 'a live kata is left alone');
});

t.test('a sweep touches nothing the runner did not create', async (t) => {
  const runner = await startRunner(t);
  const other = await startRunner(t);
  const theirs = await exitedKata(other);
  const stranger = await docker.createContainer({ Image: BASE, Cmd: ['true'], Labels: { [LABEL.deadline]: '2000-01-01T00:00:00Z' } });
  t.teardown(() => stranger.remove({ force: true }).catch(() => {}));
  await stranger.start();
  await stranger.wait();
  const mine = await exitedKata(runner);
  t.same((await runner.post('reap', {})).body.reap.removed, [mine]);
  t.notOk(await gone(other, theirs), "another runner's exited kata survives");
  t.equal((await stranger.inspect()).State.Status, 'exited', 'a container without our labels survives');
});

t.test('the cron function sweeps on its schedule, once at start, and not at all when off', async (t) => {
  const runner = await startRunner(t);
  const atStart = await exitedKata(runner);
  const onSchedule = await startRunner(t, { RUNNER_NAME: runner.config.runnerName, REAP_SCHEDULE: '0 0 1 1 *' });
  for (let i = 0; i < 50 && !(await gone(runner, atStart)); i++) await sleep(100);
  t.ok(await gone(runner, atStart), 'a runner sweeps once when it starts');

  const ticking = await startRunner(t, { REAP_SCHEDULE: '* * * * * *' });
  await sleep(1500);
  const later = await exitedKata(ticking);
  for (let i = 0; i < 50 && !(await gone(ticking, later)); i++) await sleep(100);
  t.ok(await gone(ticking, later), 'an every-second schedule reaps a kata that exits later');

  const off = await startRunner(t, { REAP_SCHEDULE: 'off' });
  const kept = await exitedKata(off);
  await sleep(1500);
  t.notOk(await gone(off, kept), 'REAP_SCHEDULE=off never sweeps by itself');
  t.ok(onSchedule.app.server.listening);
});

t.test('a runner deployed as the reaper alone mounts only the sweep', async (t) => {
  const runner = await startRunner(t);
  const reaper = await startRunner(t, { RUNNER_NAME: runner.config.runnerName, RUNNER_FUNCTIONS: 'reap' });
  const id = await exitedKata(runner);
  t.same((await reaper.post('reap', {})).body, { reap: { removed: [id] } });
  t.equal((await reaper.post('kata_new', { image_name: BASE, kata_id: kataId() })).status, 404);
  t.equal((await reaper.get('/alive')).status, 404);
});

t.test('a bad schedule stops the start', async (t) => {
  await t.rejects(startRunner(t, { REAP_SCHEDULE: 'every minute' }), /not a cron expression/);
});
