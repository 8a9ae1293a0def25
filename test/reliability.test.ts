// Right answers under load and under hostile requests (issue 12): the clock's verdict
// on a busy host, uid slots claimed atomically by several runner processes, requests
// whose checks must be cheap, files that are not text, names that look like JavaScript's
// own, and the races and limits that used to answer 500.
import { spawn, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { AVATARS, MAX_NAME_SEGMENTS } from '../lib/args.ts';
import { loadConfig } from '../lib/config.ts';
import { LABEL } from '../lib/katas.ts';
import { asHostRoot, BASE, claimsOf, containerOf, docker, error, inContainer, kataId, kataWithAvatar, spawnRunner, startRunner } from './helper.ts';
import { bashKata, run, runScript } from './run-helper.ts';

t.setTimeout(1_500_000);

// Two busy loops on the host, outside any kata, for as long as `work` lasts.
async function withHostLoad<T>(work: () => Promise<T>): Promise<T> {
  const hogs: ChildProcess[] = [0, 1].map(() => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  try {
    return await work();
  } finally {
    for (const hog of hogs) hog.kill('SIGKILL');
  }
}

t.test('the clock that ends a run is its verdict, on a busy host', async (t) => {
  const runner = await startRunner(t);
  const avatars = ['lion', 'salmon', 'tiger', 'zebra'];
  const id = await bashKata(runner);
  for (const avatar of avatars.slice(1)) t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: {} })).status, 200);
  // 52 runs of each script, four avatars at a time (one kata's places), max_seconds 1.
  const fifty = async (script: string) => {
    const each = async (avatar: string) => {
      const answers = [];
      for (let i = 0; i < 13; i++) answers.push((await runScript(runner, id, script, { avatar, maxSeconds: 1 })).body.run);
      return answers;
    };
    return (await Promise.all(avatars.map(each))).flat();
  };
  await withHostLoad(async () => {
    for (const script of ['exec sleep 10\n', 'while :; do :; done\n']) {
      const runs = await fifty(script);
      const verdicts = runs.map((r) => `${r.colour}/${r.timed_out}`);
      t.strictSame(verdicts, Array(runs.length).fill('timed_out/true'), `${JSON.stringify(script)}: all ${runs.length} timed out`);
      t.ok(runs.length >= 50, `${runs.length} runs`);
    }
    const runs = await fifty('sleep 0.8\n');
    t.strictSame(runs.map((r) => r.timed_out), Array(runs.length).fill(false), `sleep 0.8 at max_seconds 1: none of ${runs.length} timed out`);
    t.strictSame([...new Set(runs.map((r) => r.status))], [0]);
  });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('3 runner processes × 20 concurrent kata_new, 5 times: every kata its own uid slot', async (t) => {
  const runners = await Promise.all([0, 1, 2].map(() => spawnRunner(t)));
  const slotOf = async (name: string, id: string) =>
    Number((await docker.getContainer(`${name}-kata-${id}`).inspect()).Config.Labels[LABEL.slot]);
  for (let round = 0; round < 5; round++) {
    const made = runners.flatMap((runner) => Array.from({ length: 20 }, () => ({ runner, id: kataId() })));
    const answers = await Promise.all(made.map(({ runner, id }) => runner.post('kata_new', { image_name: BASE, kata_id: id })));
    t.strictSame([...new Set(answers.map((a) => a.status))], [200], `round ${round}: 60 katas made`);
    const slots = await Promise.all(made.map(({ runner, id }) => slotOf(runner.name, id)));
    t.equal(new Set(slots).size, made.length, `round ${round}: 60 distinct slots`);
    // From inside: lion's uid in each of a few katas is its slot's.
    for (const { runner, id } of made.filter((_, i) => i % 10 === round % 10)) {
      t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: { 'cyber-dojo.sh': 'id -u' } })).status, 200);
      const uid = (await runner.post('run', { kata_id: id, avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 5 })).body.run.stdout.content;
      t.equal(uid, `${2_000_000 + 64 * (await slotOf(runner.name, id)) + AVATARS.indexOf('lion')}\n`, `lion's uid in ${id} is its slot's`);
    }
    const removed = await Promise.all(made.map(({ runner, id }) => runner.post('kata_old', { kata_id: id })));
    t.strictSame([...new Set(removed.map((a) => a.status))], [200]);
  }
  for (const runner of runners) {
    const claims = await docker.listContainers({ all: true, filters: { label: [`${LABEL.claimRunner}=${runner.name}`] } });
    t.strictSame(claims, [], 'kata_old releases every claim');
  }
});

t.test("a slot claim outlives no kata: kata_old and the sweep release it", async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const [claim] = await claimsOf(runner);
  const slot = (await docker.getContainer(await containerOf(runner, id)).inspect()).Config.Labels[LABEL.slot];
  t.equal(claim?.Labels[LABEL.claim], slot, "the claim is the kata's slot's");
  t.equal(claim?.State, 'created', 'never started');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await claimsOf(runner), [], 'kata_old released it');
  // An expired kata's claim goes with it when the sweep reaps it.
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id, lifetime_seconds: 60 })).status, 200);
  await docker.getContainer(await containerOf(runner, id)).kill();
  t.strictSame((await runner.post('reap', {})).body, { reap: { removed: [id] } });
  t.strictSame(await claimsOf(runner), [], 'the sweep released it');
});

t.test('requests whose checks would be costly are refused at once, before any work', async (t) => {
  const runner = await startRunner(t);
  const missing = kataId();
  const deep = (n: number) => `${'a/'.repeat(n)}f`;
  // 3000 deep names within 8 MiB: refused by the depth of one name, for a kata that does not exist.
  const heavy = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`${'a/'.repeat(509)}${i}`, '']));
  t.strictSame(await run(runner, missing, { changed: heavy }), { status: 400, body: error('run', 'changed_files:malformed') }, '3000 names 510 deep');
  t.strictSame(
    await runner.post('avatar_new', { kata_id: missing, avatar_name: 'lion', starting_files: heavy }),
    { status: 400, body: error('avatar_new', 'starting_files:malformed') },
  );
  t.strictSame(await run(runner, missing, { changed: { [deep(MAX_NAME_SEGMENTS)]: '' } }), { status: 400, body: error('run', 'changed_files:malformed') }, `${MAX_NAME_SEGMENTS + 1} segments`);
  const files = runner.config.limits.sandboxFiles;
  const many = Object.fromEntries(Array.from({ length: files + 1 }, (_, i) => [`f${i}`, '']));
  t.strictSame(await run(runner, missing, { changed: many }), { status: 400, body: error('run', 'changed_files:malformed') }, `${files + 1} files: more than a sandbox holds`);
  t.strictSame(await run(runner, missing, { deleted: Object.keys(many) }), { status: 400, body: error('run', 'deleted_filenames:malformed') });
  t.strictSame(
    await run(runner, missing, { changed: { a: '' }, extra: { image_name: BASE, unchanged_files: many } }),
    { status: 400, body: error('run', 'unchanged_files:malformed') },
  );
  // The deepest legal names, as many as a sandbox holds, are served.
  const id = await bashKata(runner);
  const deepest = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`${deep(MAX_NAME_SEGMENTS - 2)}/${i}`, `${i}`]));
  const answer = await runScript(runner, id, 'find . -type f | wc -l', { changed: deepest });
  t.equal(answer.body.run?.stdout.content, '101\n', `100 files ${MAX_NAME_SEGMENTS} segments deep, written`);
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('a created file is returned only when it is text: valid UTF-8, no NUL', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const answer = await runScript(runner, id, [
    "printf 'caf\\351\\n' > latin1.txt", // é in Latin-1: not UTF-8
    "printf 'a\\000b' > nul.txt",
    "printf '\\355\\240\\200' > surrogate.txt", // an encoded surrogate
    "printf 'caf\\303\\251\\n' > utf8.txt",
    ': > empty.txt',
  ].join('\n'));
  t.strictSame(answer.body.run.created, { 'empty.txt': { content: '', truncated: false }, 'utf8.txt': { content: 'café\n', truncated: false } });
  // A text file cut at 50 KiB in the middle of a character is still text, cut before it.
  const cut = await runScript(runner, id, "{ printf x; head -c 60000 /dev/zero | tr '\\0' '\\n' | sed 's/^/é/' | tr -d '\\n'; } > cut.txt");
  t.strictSame(cut.body.run.created, { 'cut.txt': { content: `x${'é'.repeat(25599)}`, truncated: true } });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('__proto__ and constructor are filenames like any other, and pollute nothing', async (t) => {
  const runner = await startRunner(t);
  const id = await kataWithAvatar(runner, JSON.parse('{"cyber-dojo.sh": "cat __proto__ constructor", "__proto__": "p", "constructor": "c"}'));
  const first = await run(runner, id, { changed: JSON.parse('{"__proto__": "P", "constructor": "C", "toString": "T"}') });
  t.equal(first.status, 200);
  t.equal(first.body.run.stdout.content, 'PC');
  const made = await runScript(runner, id, 'echo made > hasOwnProperty; echo new > __proto__', { changed: {} });
  t.strictSame(Object.keys(made.body.run.created), ['hasOwnProperty']);
  t.strictSame(made.body.run.changed, JSON.parse('{"__proto__": {"content": "new\\n", "truncated": false}}'));
  // What came back goes back: resurrection from unchanged_files holding those names.
  await docker.getContainer(await containerOf(runner, id)).remove({ force: true });
  const back = await run(runner, id, {
    changed: { 'cyber-dojo.sh': 'cat __proto__ hasOwnProperty' },
    extra: { image_name: BASE, unchanged_files: JSON.parse('{"__proto__": "new\\n", "hasOwnProperty": "made\\n"}') },
  });
  t.match(back.body.run, { resurrected: true, stdout: { content: 'new\nmade\n' } });
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  t.equal(Object.getPrototypeOf({}), Object.prototype, "the runner's prototypes are untouched");
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('kata_old racing a kata_new under way never answers 500', async (t) => {
  const runner = await startRunner(t);
  const statuses = new Set<string>();
  for (let round = 0; round < 12; round++) {
    const id = kataId();
    const made = runner.post('kata_new', { image_name: BASE, kata_id: id });
    await sleep(round * 15);
    const old = await runner.post('kata_old', { kata_id: id });
    const created = await made;
    statuses.add(`${created.status}/${old.status}`);
    t.ok([200, 404].includes(old.status), `round ${round}: kata_old ${old.status}`);
    t.equal(created.status, 200, `round ${round}: kata_new 200`);
    await runner.post('kata_old', { kata_id: id });
  }
  t.comment(`kata_new/kata_old: ${[...statuses]}`);
  t.strictSame(await runner.containers(), []);
  t.strictSame(await claimsOf(runner), []);
});

t.test('avatar_old that cannot remove its files says so, and the avatar stays', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const container = await containerOf(runner, id);
  // Something no avatar can remove: root's folder, with a file, in lion's sandbox.
  await asHostRoot(container, 'mkdir /sandboxes/lion/roots && touch /sandboxes/lion/roots/f');
  t.strictSame(await runner.post('avatar_old', { kata_id: id, avatar_name: 'lion' }), { status: 500, body: error('avatar_old', 'server:error') });
  t.strictSame((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: true });
  await asHostRoot(container, 'rm -rf /sandboxes/lion/roots');
  t.strictSame(await runner.post('avatar_old', { kata_id: id, avatar_name: 'lion' }), { status: 200, body: { avatar_old: {} } });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test("a run that waits too long for its avatar's lock answers 503 run:busy with Retry-After", async (t) => {
  const runner = await startRunner(t, { AVATAR_LOCK_SECONDS: '1' });
  const id = await bashKata(runner);
  const container = await containerOf(runner, id);
  // Another runner process's request, holding lion's lock for 4 s.
  void inContainer(container, 'exec flock /run/cyber-dojo/lion.lock sleep 4');
  await sleep(500);
  const response = await fetch(`${runner.url}/run`, {
    method: 'POST',
    body: JSON.stringify({ kata_id: id, avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 2 }),
  });
  t.equal(response.status, 503);
  t.strictSame(await response.json(), error('run', 'run:busy'));
  t.match(response.headers.get('retry-after'), /^\d+$/);
  await sleep(4000);
  t.equal((await run(runner, id)).body.run?.status, 0, 'once the lock is free, the run runs');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('no set of avatars can leave the kata unable to start the runner’s processes', async (t) => {
  t.throws(() => loadConfig({ ...process.env, AVATAR_NPROC: '64', KATA_PIDS: '4096' }), /KATA_PIDS=4096: expected at least/);
  // Every avatar at its process limit at once, and the kata still serves requests.
  const runner = await startRunner(t, { AVATAR_NPROC: '16', KATA_PIDS: String(64 * 16 + 256), KATA_RUNS_AT_ONCE: '64' });
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  // 14 sleeps and the script: 15 of each avatar's 16 processes.
  const hold = 'for i in $(seq 14); do sleep 4 & done; wait';
  const entered = await Promise.all(AVATARS.map((avatar) => runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: { 'cyber-dojo.sh': hold } })));
  t.strictSame([...new Set(entered.map((a) => a.status))], [200]);
  const runs = Promise.all(AVATARS.map((avatar) => run(runner, id, { avatar, maxSeconds: 6 })));
  await sleep(2500);
  t.strictSame(await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' }), { status: 200, body: { avatar_exists: true } }, 'a request during it is served');
  const answers = await runs;
  t.strictSame([...new Set(answers.map((a) => `${a.status} ${a.body.run?.timed_out} ${a.body.run?.status}`))], ['200 false 0'], 'all 64 runs ran and ended');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});
