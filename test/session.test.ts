// The kata's session with its helper (issue 13): it works over an engine reached by TCP,
// it is opened again after the helper dies, and a kata made without the helper gets it.
import Docker from 'dockerode';
import { connect, createServer } from 'node:net';
import t from 'tap';
import { containerOf, inContainer, startRunner } from './helper.ts';
import { bashKata, runScript } from './run-helper.ts';

t.test('over an engine reached by TCP (DOCKER_HOST=tcp://…), a run answers as over the socket', async (t) => {
  // A TCP front for the engine's socket: nothing of the runner's may rely on sharing
  // the engine's file system.
  const proxy = createServer((client) => {
    const engine = connect('/var/run/docker.sock');
    client.pipe(engine).pipe(client);
    const close = () => (client.destroy(), engine.destroy());
    client.on('error', close).on('close', close);
    engine.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => proxy.close(resolve)));
  const port = (proxy.address() as { port: number }).port;
  const runner = await startRunner(t, {}, new Docker({ host: '127.0.0.1', port, protocol: 'http' }));
  const id = await bashKata(runner);
  const answer = await runScript(runner, id, 'echo over tcp; echo made > made.txt');
  t.match(answer.body.run, { status: 0, stdout: { content: 'over tcp\n' }, created: { 'made.txt': { content: 'made\n' } } });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

// The helper's processes in a kata, found from /proc by their name.
const helpers = (container: string) =>
  inContainer(container, 'for s in /proc/[0-9]*/status; do grep -q "^Name:.kata-helper" "$s" 2>/dev/null && echo "${s#/proc/}"; done | sed "s#/status##"');

t.test('a helper that dies is started again by the next request, and the kata keeps its files', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  t.equal((await runScript(runner, id, 'echo kept > kept.txt')).body.run.status, 0);
  const container = await containerOf(runner, id);
  const before = (await helpers(container)).split('\n').filter(Boolean);
  t.equal(before.length, 1, 'one helper serves the kata');
  await inContainer(container, `kill -9 ${before[0]}`);
  const after = await runScript(runner, id, 'cat kept.txt');
  t.match(after.body.run, { status: 0, stdout: { content: 'kept\n' }, resurrected: false }, 'the next run is served, by the same kata');
  const now = (await helpers(container)).split('\n').filter(Boolean);
  t.equal(now.length, 1);
  t.not(now[0], before[0], 'by a new helper');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('a kata container without the helper (made by another runner, or before an upgrade) gets it on its first request', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const container = await containerOf(runner, id);
  // As if an older runner had made the kata: its helper is not there.
  await inContainer(container, 'rm -rf /.cyber-dojo-runner');
  const other = await startRunner(t, { RUNNER_NAME: runner.config.runnerName });
  const answer = await runScript(other, id, 'echo served');
  t.match(answer.body.run, { status: 0, stdout: { content: 'served\n' } });
  t.match(await inContainer(container, 'ls -la /.cyber-dojo-runner'), /^d?.*\n.*kata-helper-[0-9a-f]{12}/s, 'the helper is back');
  t.equal(await inContainer(container, "stat -c '%a %U' /.cyber-dojo-runner /.cyber-dojo-runner/*"), '700 root\n700 root\n', 'root-only');
  t.equal((await other.post('kata_old', { kata_id: id })).status, 200);
});
