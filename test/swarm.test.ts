// Katas on a Docker Swarm (issue 19): four dockerd nodes made on this machine by
// deploy/swarm/up.sh (one manager, three workers), a runner with RUNNER_ENGINE=swarm
// talking to the manager, and the katas spread over the workers.
import Docker from 'dockerode';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { kataId, PYTHON, startRunner, type Runner } from './helper.ts';
import { pythonStart, run } from './run-helper.ts';

t.setTimeout(1_200_000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const exec = promisify(execFile);
const RUN = '/run/cdr-swarm';

const up = await exec(`${ROOT}deploy/swarm/up.sh`, [], { maxBuffer: 16 << 20 }).catch((e: { stderr?: string }) => {
  throw new Error(`deploy/swarm/up.sh failed: ${e.stderr}`);
});
t.teardown(() => exec(`${ROOT}deploy/swarm/down.sh`));
const managerSocket = up.stdout.trim().replace(/^unix:\/\//, '');
const manager = new Docker({ socketPath: managerSocket });

const swarmRunner = (t: Parameters<typeof startRunner>[0], env: Record<string, string> = {}) =>
  startRunner(t, { RUNNER_ENGINE: 'swarm', ...env }, new Docker({ socketPath: managerSocket }));

// The node a kata's task runs on, by its hostname (node-<i>'s engine socket), and the task's container.
async function whereIs(runner: Runner, id: string): Promise<{ node: string; containerId: string }> {
  const service = await manager.getService(`${runner.config.runnerName}-kata-${id}`).inspect();
  const tasks = await manager.listTasks({ filters: { service: [service.ID], 'desired-state': ['running'] } });
  const task = tasks.find((t: any) => t.Status.State === 'running');
  const node = await manager.getNode(task.NodeID).inspect();
  return { node: node.Spec.Labels['cyber-dojo-runner.engine'], containerId: task.Status.ContainerStatus.ContainerID };
}
const nodeOf = (socketUrl: string) => Number(/node-(\d+)\.sock$/.exec(socketUrl)?.[1]);
async function inTask(runner: Runner, id: string, script: string): Promise<string> {
  const { node, containerId } = await whereIs(runner, id);
  const { stdout } = await exec('docker', ['-H', node, 'exec', containerId, 'sh', '-c', script]);
  return stdout;
}

const GREEN = { 'hiker.py': 'def answer():\n    return 6 * 7\n' };
const newKata = async (runner: Runner, lifetime?: number) => {
  const id = kataId();
  const made = await runner.post('kata_new', { image_name: PYTHON, kata_id: id, ...(lifetime ? { lifetime_seconds: lifetime } : {}) });
  if (made.status !== 200) throw new Error(`kata_new: ${JSON.stringify(made.body)}`);
  const entered = await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: pythonStart() });
  if (entered.status !== 200) throw new Error(`avatar_new: ${JSON.stringify(entered.body)}`);
  return id;
};

t.test('six katas spread over the workers, none on the manager; each runs, is contained and limited', async (t) => {
  const runner = await swarmRunner(t);
  const ids = await Promise.all(Array.from({ length: 6 }, () => newKata(runner)));
  const nodes = await Promise.all(ids.map(async (id) => nodeOf((await whereIs(runner, id)).node)));
  t.ok(nodes.every((n) => n >= 2), `on workers only: nodes ${nodes}`);
  t.ok(new Set(nodes).size >= 2, 'on more than one of them');
  for (const id of ids) {
    t.equal((await run(runner, id)).body.run?.colour, 'red', `kata ${id}: red`);
    t.equal((await run(runner, id, { changed: GREEN })).body.run?.colour, 'green', `kata ${id}: green`);
  }
  // The time limit and the kill of every process hold on every node.
  for (const id of ids.slice(0, 3)) {
    const answer = (await run(runner, id, { changed: { 'cyber-dojo.sh': 'sleep 100 & while :; do :; done' }, maxSeconds: 2 })).body.run;
    t.match(answer, { colour: 'timed_out', timed_out: true });
    t.equal(await inTask(runner, id, 'for s in /proc/[0-9]*/status; do grep -q "^Uid:.2[0-9]\\{6\\}" $s && echo $s; done | wc -l'), '0\n', 'no process of the avatar left');
  }
  // Inside: PID 1 the init, only lo; and the limits, in the service's spec.
  const id = ids[0]!;
  t.match(await inTask(runner, id, 'cat /proc/1/cmdline | tr "\\0" " "'), /init/);
  t.equal(await inTask(runner, id, 'ls /sys/class/net'), 'lo\n', 'only lo');
  const spec = (await manager.getService(`${runner.config.runnerName}-kata-${id}`).inspect()).Spec;
  t.match(spec.TaskTemplate.Resources.Limits, { MemoryBytes: runner.config.limits.memoryBytes, NanoCPUs: runner.config.limits.nanoCpus, Pids: runner.config.limits.pids });
  t.match(spec.TaskTemplate.ContainerSpec, { Init: true, CapabilityDrop: ['ALL'] });
  t.match(spec.TaskTemplate.RestartPolicy, { Condition: 'on-failure' });
  t.strictSame(spec.TaskTemplate.Placement.Constraints, ['node.labels.katas == true']);
  // A restarted runner finds every kata on every node.
  const again = await swarmRunner(t, { RUNNER_NAME: runner.config.runnerName });
  for (const id of ids) t.strictSame((await again.post('kata_exists', { kata_id: id })).body, { kata_exists: true });
  t.equal((await run(again, ids[5]!)).body.run?.colour, 'green', 'and runs in them');
  for (const id of ids) t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('a worker lost: its katas come back on other nodes, and the next run resurrects its avatar', async (t) => {
  const runner = await swarmRunner(t);
  const ids = await Promise.all(Array.from({ length: 4 }, () => newKata(runner)));
  const first = await whereIs(runner, ids[0]!);
  const lost = nodeOf(first.node);
  const onLost = [];
  for (const id of ids) if (nodeOf((await whereIs(runner, id)).node) === lost) onLost.push(id);
  // The node's PID namespace: its dockerd, containerd and containers all go.
  const unshare = readFileSync(`${RUN}/node-${lost}.unshare`, 'utf8').trim();
  for (const child of execFileSync('ps', ['-o', 'pid=', '--ppid', unshare]).toString().trim().split(/\s+/)) process.kill(Number(child), 'SIGKILL');
  t.comment(`node ${lost} lost, with katas ${onLost}`);
  for (const id of onLost) {
    let where = lost;
    for (let i = 0; i < 120 && where === lost; i++, await sleep(1000)) where = await whereIs(runner, id).then((w) => nodeOf(w.node), () => lost);
    t.not(where, lost, `kata ${id} is back, on node ${where}`);
    const answer = await run(runner, id, { changed: GREEN, extra: { image_name: PYTHON, unchanged_files: pythonStart() } });
    t.match(answer.body.run, { colour: 'green', resurrected: true }, 'its next run brings the avatar back');
  }
  for (const id of ids) await runner.post('kata_old', { kata_id: id });
});

t.test('a kata past its deadline is not restarted; one reap through the manager removes expired katas on two nodes', async (t) => {
  const runner = await swarmRunner(t);
  const ids = await Promise.all(Array.from({ length: 4 }, () => newKata(runner, 60)));
  const nodes = new Set(await Promise.all(ids.map(async (id) => nodeOf((await whereIs(runner, id)).node))));
  t.ok(nodes.size >= 2, `on ${nodes.size} nodes`);
  await sleep(65_000);
  for (const id of ids) {
    const service = await manager.getService(`${runner.config.runnerName}-kata-${id}`).inspect();
    const running = (await manager.listTasks({ filters: { service: [service.ID] } })).filter((task: any) => task.Status.State === 'running');
    t.equal(running.length, 0, `kata ${id}: no task running past its deadline`);
  }
  t.strictSame((await runner.post('reap', {})).body.reap.removed.sort(), [...ids].sort());
  t.strictSame(await manager.listServices({ filters: { label: [`cyber-dojo-runner.runner=${runner.config.runnerName}`] } }), []);
});

