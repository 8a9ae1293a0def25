// The server entry stops gracefully: on SIGTERM a run under way still answers, and
// the process exits once it has; a closed host's cron no longer sweeps.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { containerOf, docker, kataWithAvatar, removeContainers, startRunner } from './helper.ts';

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

t.test('SIGTERM lets a run under way finish, then the runner exits 0', async (t) => {
  const port = await freePort();
  const name = `test-main-${port}`;
  t.teardown(() => removeContainers(name));
  const main = spawn(process.execPath, ['--import', 'tsx', 'lib/main.ts'], {
    env: { ...process.env, PORT: String(port), RUNNER_NAME: name, REAP_SCHEDULE: 'off', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  t.teardown(() => main.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/alive`).then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  const post = (fn: string, body: unknown) =>
    fetch(`${url}/${fn}`, { method: 'POST', body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
  const kata = 'ABCDEF' + String(port % 10000).padStart(4, '0');
  t.equal((await post('kata_new', { image_name: 'cyber-dojo-runner/base:bookworm', kata_id: kata })).status, 200);
  t.equal((await post('avatar_new', { kata_id: kata, avatar_name: 'lion', starting_files: { 'cyber-dojo.sh': 'sleep 2; echo done' } })).status, 200);

  const running = post('run', { kata_id: kata, avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 10 });
  await sleep(700);
  const exited = once(main, 'exit');
  main.kill('SIGTERM');
  const answer = await running;
  t.equal(answer.status, 200, 'the run under way answers');
  t.equal(answer.body.run.stdout.content, 'done\n');
  // Not held open by the answer's kept-alive connection (Fastify keeps one 72 s).
  const code = await Promise.race([exited.then(([c]) => c), sleep(30_000).then(() => 'still running 30 s after answering')]);
  t.equal(code, 0, 'and then the runner exits 0');
  t.equal(await fetch(`${url}/alive`).then(() => 'answered', () => 'refused'), 'refused', 'it no longer listens');
});

t.test('a closed host runs no more cron sweeps', async (t) => {
  const owner = await startRunner(t);
  const ticking = await startRunner(t, { RUNNER_NAME: owner.config.runnerName, REAP_SCHEDULE: '* * * * * *' });
  await ticking.app.close();
  const id = await kataWithAvatar(owner, { 'cyber-dojo.sh': 'true' });
  const container = docker.getContainer(await containerOf(owner, id));
  await container.kill();
  await sleep(2500);
  t.equal((await container.inspect()).State.Status, 'exited', 'an exited kata is still there after two scheduled seconds');
});
