// The runner deployed function by function (issue 15): `npm run deploy` builds the images
// and brings up deploy/compose.yml; everything here goes through its nginx, as a dojo's
// would, and the stack is taken down with `npm run undeploy`.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { kataIdOf } from '../lib/cyber-dojo.ts';
import { LABEL } from '../lib/katas.ts';
import { docker, error, kataId, PYTHON, removeContainers } from './helper.ts';
import { pythonStart } from './run-helper.ts';

t.setTimeout(1_500_000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const exec = promisify(execFile);

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const project = `cdr-test-${randomBytes(3).toString('hex')}`;
const runnerName = `test-${randomBytes(4).toString('hex')}`;
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const cyberDojoPort = await freePort();
const env = {
  ...process.env,
  COMPOSE_PROJECT_NAME: project,
  RUNNER_NAME: runnerName,
  NGINX_BIND: `127.0.0.1:${port}`,
  CYBER_DOJO_BIND: `127.0.0.1:${cyberDojoPort}`,
  REAP_SCHEDULE: '*/5 * * * * *',
};
const compose = (...args: string[]) => exec('docker-compose', ['-f', 'deploy/compose.yml', ...args], { cwd: ROOT, env, maxBuffer: 64 << 20 });

interface Answer {
  status: number;
  body: any;
  host: string | null; // the function host that answered (x-runner-host)
}
async function post(fn: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${url}/${fn}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: response.status, body: await response.json(), host: response.headers.get('x-runner-host') };
}
const runOf = (id: string, changed: Record<string, string>) =>
  post('run', { kata_id: id, avatar_name: 'lion', changed_files: changed, deleted_filenames: [], max_seconds: 10 });
// The containers of a service of the stack, by compose's labels.
const containersOf = (service?: string) =>
  docker.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${project}`, ...(service ? [`com.docker.compose.service=${service}`] : [])] } });
const logsOf = async (service: string) => (await compose('logs', '--no-color', service)).stdout;

t.teardown(async () => {
  await exec('npm', ['run', 'undeploy'], { cwd: ROOT, env }).catch(() => {});
  await removeContainers(runnerName);
});

t.test('npm run deploy builds what it needs and brings the stack up', async (t) => {
  const { stdout } = await exec('npm', ['run', 'deploy'], { cwd: ROOT, env, maxBuffer: 64 << 20 });
  t.match(stdout, new RegExp(`deployed: ${url}`));
  const sha = ((await (await fetch(`${url}/sha`)).json()) as { sha: string }).sha;
  t.match(sha, /^[0-9a-f]{40}$/);
  const image = await docker.getImage('cyber-dojo-runner/runner:latest').inspect();
  t.equal(image.Config.Labels['cyber-dojo-runner.sha'], sha, "/sha answers the runner image's label");
  t.equal(image.Config.User, 'runner', 'the runner runs as a user of its own');
  const ours = await docker.listImages({ filters: JSON.stringify({ label: ['cyber-dojo-runner.source_hash'] }) });
  const used = new Set((await docker.listContainers({ all: true })).map((c) => c.ImageID));
  const untagged = ours.filter((i) => !i.RepoTags?.some((tag) => tag !== '<none>:<none>') && !used.has(i.Id));
  t.equal(untagged.length, 0, 'the set-up leaves no untagged image of ours that no container uses');
  const shas = ours.flatMap((i) => i.RepoTags ?? []).filter((tag) => /^cyber-dojo-runner\/runner:[0-9a-f]{40}$/.test(tag));
  t.ok(shas.length >= 1 && shas.length <= 2, `runner:<sha> images kept: ${shas.length} (this one, and one to roll back to)`);
  t.strictSame(await containersOf().then((list) => list.filter((c) => c.Mounts.some((m) => m.Destination === '/var/run/docker.sock') && !c.Labels['com.docker.compose.service']!.endsWith('-engine'))), [], "no function service mounts the engine's socket");
});

t.test('a kata through nginx: kata_new, avatar_new, run red then green, kata_old; each function its own service', async (t) => {
  const id = kataId();
  const hosts: Record<string, string | null> = {};
  const made = await post('kata_new', { image_name: PYTHON, kata_id: id });
  t.equal(made.status, 200);
  hosts.kata_new = made.host;
  const entered = await post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: pythonStart() });
  t.strictSame(entered.body, { avatar_new: {} });
  hosts.avatar_new = entered.host;
  const red = await runOf(id, {});
  t.equal(red.body.run?.colour, 'red');
  const green = await runOf(id, { 'hiker.py': 'def answer():\n    return 6 * 7\n' });
  t.equal(green.body.run?.colour, 'green');
  hosts.run = green.host;
  for (const fn of ['kata_exists', 'avatar_exists']) {
    const answer = await post(fn, { kata_id: id, avatar_name: 'lion' });
    t.equal(answer.status, 200);
    hosts[fn] = answer.host;
  }
  for (const path of ['alive', 'ready', 'sha', 'start_points']) hosts[path] = (await fetch(`${url}/${path}`)).headers.get('x-runner-host');
  const old = await post('kata_old', { kata_id: id });
  t.strictSame(old.body, { kata_old: {} });
  hosts.kata_old = old.host;
  const functions = ['kata_new', 'avatar_new', 'run', 'kata_exists', 'avatar_exists', 'kata_old'];
  t.equal(new Set(functions.map((fn) => hosts[fn])).size, functions.length, `each function from a host of its own: ${JSON.stringify(hosts)}`);
  t.equal(new Set(['alive', 'ready', 'sha', 'start_points'].map((fn) => hosts[fn])).size, 1, 'the small GET ones from one');
  // The host is the service's container.
  const [run] = await containersOf('run');
  t.equal(run?.Id.slice(0, 12), hosts.run);
});

t.test("nginx's own answers are the contract's: a body over the limit, an unknown path", async (t) => {
  const big = await post('run', JSON.stringify({ kata_id: kataId(), changed_files: { a: 'x'.repeat(9 << 20) } }));
  t.strictSame([big.status, big.body], [413, error('run', 'json:too_large')]);
  const unknown = await post('nope', {});
  t.strictSame([unknown.status, unknown.body], [404, error('nope', 'function:!exists')]);
});

t.test('the run service stopped: kata_exists still answers, run answers 503 function:unavailable; started again, runs go on', async (t) => {
  const id = kataId();
  t.equal((await post('kata_new', { image_name: PYTHON, kata_id: id })).status, 200);
  t.equal((await post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: pythonStart() })).status, 200);
  t.equal((await runOf(id, { 'kept.txt': 'kept\n' })).status, 200);
  await compose('stop', 'run');
  t.strictSame((await post('kata_exists', { kata_id: id })).body, { kata_exists: true });
  const down = await runOf(id, {});
  t.strictSame([down.status, down.body], [503, error('run', 'function:unavailable')]);
  await compose('start', 'run');
  let back: Answer | undefined;
  for (let i = 0; i < 60 && back?.status !== 200; i++, await sleep(500)) back = await runOf(id, { 'cyber-dojo.sh': 'cat kept.txt' });
  t.match(back?.body.run, { stdout: { content: 'kept\n' }, resurrected: false }, "the kata's files are still there");
  t.equal((await post('kata_old', { kata_id: id })).status, 200);
});

t.test('nginx started while a service is down starts, answers 503 for it, and reaches it once it is back', async (t) => {
  await compose('stop', 'info');
  await compose('restart', 'nginx');
  let alive: Response | undefined;
  for (let i = 0; i < 40 && !alive; i++) alive = await fetch(`${url}/alive`).catch(() => sleep(250).then(() => undefined));
  t.equal(alive?.status, 503, 'nginx is up and says the function is unavailable');
  t.strictSame(await alive?.json(), error('alive', 'function:unavailable'));
  t.equal((await fetch(`${url}/`)).status, 503, 'the default route too');
  await compose('start', 'info');
  let back: Response | undefined;
  for (let i = 0; i < 60 && back?.status !== 200; i++, await sleep(500)) back = await fetch(`${url}/alive`);
  t.equal(back?.status, 200);
});

t.test('run scaled to 3: 30 runs of one kata through nginx all answer, spread over the replicas', async (t) => {
  await compose('up', '-d', '--no-recreate', '--scale', 'run=3', 'run');
  t.equal((await containersOf('run')).filter((c) => c.State === 'running').length, 3);
  const id = kataId();
  t.equal((await post('kata_new', { image_name: PYTHON, kata_id: id })).status, 200);
  t.equal((await post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: pythonStart() })).status, 200);
  await sleep(3000); // nginx sees the new replicas at its resolver's next look-up
  const answers: Answer[] = [];
  for (let i = 0; i < 30; i++) answers.push(await runOf(id, {}));
  t.strictSame([...new Set(answers.map((a) => `${a.status} ${a.body.run?.colour}`))], ['200 red']);
  t.equal(new Set(answers.map((a) => a.host)).size, 3, 'each replica served some');
  t.equal((await post('kata_old', { kata_id: id })).status, 200);
  await compose('up', '-d', '--no-recreate', '--scale', 'run=1', 'run');
});

t.test('the reap service reaps an expired kata', async (t) => {
  const id = kataId();
  t.equal((await post('kata_new', { image_name: PYTHON, kata_id: id, lifetime_seconds: 60 })).status, 200);
  const container = `${runnerName}-kata-${id}`;
  let gone = false;
  for (let i = 0; i < 120 && !gone; i++, await sleep(1000)) {
    gone = await docker.getContainer(container).inspect().then(() => false, (e: { statusCode?: number }) => e.statusCode === 404);
  }
  t.ok(gone, 'its container was removed past its deadline');
  t.match(await logsOf('reap'), new RegExp(`"kataId":"${id}".*"msg":"kata reaped"`));
  t.strictSame((await post('kata_exists', { kata_id: id })).body, { kata_exists: false });
});

t.test("each function's engine proxy refuses the calls that function does not need", async (t) => {
  const tryCall = async (service: string, method: string, path: string) => {
    const [container] = await containersOf(service);
    const script = `fetch(process.argv[1], { method: '${method}', headers: { 'content-type': 'application/json' }, body: ${method === 'GET' ? 'undefined' : "'{}'"} }).then((r) => console.log(r.status))`;
    const { stdout } = await exec('docker', ['exec', container!.Id, 'node', '-e', script, `http://${service}-engine:2375${path}`]);
    return Number(stdout.trim());
  };
  t.equal(await tryCall('run', 'POST', '/v1.41/containers/create'), 403, 'run may not create a container');
  t.equal(await tryCall('run', 'POST', '/v1.41/images/create?fromImage=x'), 403, 'nor pull');
  t.equal(await tryCall('run', 'GET', '/v1.41/_ping'), 200, 'but may reach the engine');
  const [kata] = await containersOf('nginx');
  t.equal(await tryCall('reap', 'POST', `/v1.41/containers/${kata!.Id}/exec`), 403, 'reap may not exec');
  t.equal(await tryCall('kata-exists', 'DELETE', `/v1.41/containers/${kata!.Id}`), 403, 'kata_exists may not remove');
  // A refused call the runner makes is its 500, with a log line that names it.
  const missing = await post('kata_new', { image_name: 'cyber-dojo-runner/not-here', kata_id: kataId() });
  t.strictSame([missing.status, missing.body], [500, error('kata_new', 'server:error')]);
  t.match(await logsOf('kata-new'), /"engine":"image\.pull".*"kind":"forbidden"/);
});

t.test("the runner service speaks today's cyber-dojo API, on a port of its own", async (t) => {
  const cyberDojo = `http://127.0.0.1:${cyberDojoPort}`;
  t.strictSame(await (await fetch(`${cyberDojo}/ready?`)).json(), { 'ready?': true });
  const image = 'cyber-dojo-runner/test-cyber-dojo-python';
  const files = { ...pythonStart(), 'cyber-dojo.sh': 'python3 -m pytest test_hiker.py' };
  const answer = await fetch(`${cyberDojo}/run_cyber_dojo_sh`, { method: 'POST', body: JSON.stringify({ id: 'Dep123', files, manifest: { image_name: image, max_seconds: 10 } }) });
  t.match(await answer.json(), { run_cyber_dojo_sh: { outcome: 'red', status: '1' } });
  // Its warm kata is the deployment's to remove, as any other.
  t.equal((await post('kata_old', { kata_id: kataIdOf('Dep123', `${image}:latest`) })).status, 200);
});

t.test('nginx runs as a user, read-only, with no [emerg] and no warning about `user`', async (t) => {
  const [nginx] = await containersOf('nginx');
  const info = await docker.getContainer(nginx!.Id).inspect();
  t.equal(info.HostConfig.ReadonlyRootfs, true);
  const { stdout } = await exec('docker', ['exec', nginx!.Id, 'sh', '-c', 'for s in /proc/[0-9]*/status; do grep "^Uid:" "$s"; done | sort -u']);
  t.notMatch(stdout, /^Uid:\s+0\s/m, 'no nginx process is root');
  const log = await logsOf('nginx');
  t.notMatch(log, /\[emerg\]/);
  t.notMatch(log, /\[warn\].*"user"/);
});

t.test('npm run undeploy takes the stack down and leaves no function container', async (t) => {
  await exec('npm', ['run', 'undeploy'], { cwd: ROOT, env });
  t.strictSame(await containersOf(), []);
  const katas = await docker.listContainers({ all: true, filters: { label: [`${LABEL.runner}=${runnerName}`] } });
  t.strictSame(katas, [], "and every kata this test made is gone (kata_old's and the reaper's)");
});
