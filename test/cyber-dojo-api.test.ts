// Today's cyber-dojo runner API (issue 17), spoken by a host with RUNNER_API=cyber-dojo,
// on an image with cyber-dojo's conventions (test/images/cyber-dojo, for python).
import { request as httpRequest } from 'node:http';
import t from 'tap';
import { docker, startRunner, type Runner } from './helper.ts';
import { pythonStart } from './run-helper.ts';

t.setTimeout(600_000);

const IMAGE = 'cyber-dojo-runner/test-cyber-dojo-python';
const START: Record<string, string> = { ...pythonStart(), 'cyber-dojo.sh': 'trap "cyber_dojo_delete_dirs .pytest_cache __pycache__" EXIT\npython3 -m pytest test_hiker.py\n' };
const manifest = (extra: Record<string, unknown> = {}) => ({ image_name: IMAGE, max_seconds: 10, ...extra });

// Any method, with a body: web sends run_cyber_dojo_sh as a GET with one.
function call(runner: Runner, method: string, path: string, body?: string): Promise<{ status: number; body: any }> {
  const { port } = new URL(runner.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
const run = (runner: Runner, id: string, files: Record<string, string>, extra: Record<string, unknown> = {}) =>
  call(runner, 'GET', '/run_cyber_dojo_sh', JSON.stringify({ id, files, manifest: manifest(extra) })).then((a) => a.body.run_cyber_dojo_sh);

t.test("probes answer as today's runner does, on any method, with or without a trailing ?", async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  t.strictSame((await call(runner, 'GET', '/alive')).body, { 'alive?': true });
  t.strictSame((await call(runner, 'POST', '/ready?', '')).body, { 'ready?': true });
  t.strictSame((await call(runner, 'GET', '/ready?')).body, { 'ready?': true });
  t.strictSame((await call(runner, 'PUT', '/sha', '{}')).body, { sha: runner.config.sha });
});

t.test('red, amber, green, from the whole file set each call; the sandbox holds exactly what was sent', async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const id = 'a1B2c3';
  const red = await run(runner, id, START);
  t.match(red, { outcome: 'red', status: '1', created: {}, changed: {}, log: {} });
  t.match(red.stdout.content, /=== FAILURES ===/);
  const amber = await run(runner, id, { ...START, 'hiker.py': 'def answer(:\n' });
  t.match(amber, { outcome: 'amber', status: '2' });
  const made = await run(runner, id, { ...START, 'hiker.py': 'def answer():\n    return 6 * 7\n', 'cyber-dojo.sh': `${START['cyber-dojo.sh']}echo report > report.txt; echo more >> hiker.py` });
  t.match(made, { outcome: 'green', status: '0' });
  t.strictSame(made.created, { 'report.txt': { content: 'report\n', truncated: false } }, 'created, against the files sent');
  t.strictSame(made.changed, { 'hiker.py': { content: 'def answer():\n    return 6 * 7\nmore\n', truncated: false } }, 'changed, against the files sent');
  // The next call does not send report.txt back, and drops readme.txt: neither is there.
  const files: Record<string, string> = { ...START, 'cyber-dojo.sh': 'ls -A; cat hiker.py' };
  delete files['readme.txt'];
  const listed = await run(runner, id, files);
  t.equal(listed.stdout.content, `${Object.keys(files).sort().join('\n')}\n${START['hiker.py']}`, 'exactly the files sent, as sent');
  const kataContainers = await docker.listContainers({ all: true, filters: { label: [`cyber-dojo-runner.runner=${runner.config.runnerName}`] } });
  t.equal(kataContainers.length, 1, 'one warm container served every call of the id');
});

t.test("the run's environment, user, files and limits are cyber-dojo's", async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const id = 'EnvId9';
  const script = [
    'echo "$CYBER_DOJO_IMAGE_NAME $CYBER_DOJO_ID $CYBER_DOJO_SANDBOX $HOME $(pwd)"',
    'id -u; id -g; id -un; id -gn',
    "stat -c '%A %U %G' hiker.py",
    "type cyber_dojo_delete_dirs | head -1",
    'head -c 100 /dev/urandom > binary.bin',
    'for i in $(seq 20); do echo $i > made-$(printf %02d $i).txt; done',
  ].join('\n');
  const answer = await run(runner, id, { 'cyber-dojo.sh': script, 'hiker.py': 'x' });
  t.equal(
    answer.stdout.content,
    `${IMAGE}:latest ${id} /sandbox /home/sandbox /sandbox\n41966\n51966\nsandbox\nsandbox\n-rw-r--r-- sandbox sandbox\ncyber_dojo_delete_dirs is a function\n`,
  );
  t.strictSame(Object.keys(answer.created), Array.from({ length: 16 }, (_, i) => `made-${String(i + 1).padStart(2, '0')}.txt`), 'at most 16 created files, in name order, no binary one');
});

t.test('timed out, pulling, and max_seconds capped at 15', async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const started = performance.now();
  const slow = await run(runner, 'Slow01', { 'cyber-dojo.sh': 'sleep 30' }, { max_seconds: 20 });
  const ms = performance.now() - started;
  t.match(slow, { outcome: 'timed_out', status: '142', stdout: { content: '' }, created: {}, changed: {} });
  t.ok(ms >= 15_000 && ms < 20_000, `cut at 15 s, not 20 (${Math.round(ms)} ms)`);
  const missing = await run(runner, 'Pull01', { 'cyber-dojo.sh': 'true' }, { image_name: 'cyber-dojo-runner/not-here' });
  t.match(missing, { outcome: 'pulling', status: '141' });
  t.strictSame((await call(runner, 'POST', '/pull_image', JSON.stringify({ id: 'x', image_name: IMAGE }))).body, { pull_image: 'pulled' });
  t.strictSame((await call(runner, 'POST', '/pull_image', JSON.stringify({ id: 'x', image_name: 'cyber-dojo-runner/not-here' }))).body, { pull_image: 'pulling' });
});

t.test("a manifest's rag_lambda gives the colour, evaluated by Ruby apart; anything but a colour is faulty", async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const files = { 'cyber-dojo.sh': 'echo hello; exit 3' };
  const colour = async (lambda: string) => run(runner, 'Rag001', files, { rag_lambda: lambda });
  t.match(await colour('lambda { |stdout, stderr, status| stdout.include?("hello") && status == 3 ? :green : :red }'), { outcome: 'green', status: '3' });
  t.match(await colour('lambda { |o, e, s| "amber" }'), { outcome: 'amber' });
  t.match(await colour('lambda { |o, e, s| :purple }'), { outcome: 'faulty', log: { message: /illegal colour/ } });
  t.match(await colour('lambda { |o, e, s| raise "boom" }'), { outcome: 'faulty', log: { message: /RuntimeError: boom/ } });
  t.match(await colour('lambda { |o, e, s| loop {} }'), { outcome: 'faulty', log: { message: /no colour within/ } }, 'bounded in time');
  t.match(await colour('lambda { |o, e, s| File.write("/tmp/x", "y"); :red }'), { outcome: 'faulty' }, 'on a read-only file system');
  t.match(await colour('not ruby ('), { outcome: 'faulty', log: { message: /SyntaxError/ } });
});

t.test('an image with no bash is faulty, with why in the log', async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const answer = await run(runner, 'NoBash', { 'cyber-dojo.sh': 'echo hi' }, { image_name: 'cyber-dojo-runner/busybox-sh' });
  t.match(answer, { outcome: 'faulty', status: '143' });
  t.match(JSON.stringify(answer.log), /bash/);
});

t.test("a run has their runner's ulimits; clang's images no data limit", async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const repo = 'ghcr.io/cyber-dojo-languages/clang_limits_test';
  const clang = `${repo}:1`;
  await docker.getImage(IMAGE).tag({ repo, tag: '1' });
  t.teardown(() => docker.getImage(clang).remove());
  const script = { 'cyber-dojo.sh': 'for o in c d f n x u s; do printf "%s=%s " $o $(ulimit -$o); done' };
  const blocks = (limit: string) => `c=0 d=${limit} f=${256 * 1024} n=1024 x=1024 u=1024 s=${16 * 1024} `;
  t.equal((await run(runner, 'Limits', script)).stdout.content, blocks(String(4 * 1024 * 1024)), '1 KiB blocks');
  t.equal((await run(runner, 'Limits', script, { image_name: clang })).stdout.content, blocks('unlimited'));
});

t.test('CYBER_DOJO_CLEAN_HOME=true: each call starts from an empty home; by default the home is kept', async (t) => {
  const script = 'cat "$HOME/cache" 2>/dev/null || echo none; echo cached > "$HOME/cache"';
  for (const [clean, second] of [['false', 'cached\n'], ['true', 'none\n']] as const) {
    const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo', CYBER_DOJO_CLEAN_HOME: clean });
    t.equal((await run(runner, 'Home01', { 'cyber-dojo.sh': script })).stdout.content, 'none\n');
    t.equal((await run(runner, 'Home01', { 'cyber-dojo.sh': script })).stdout.content, second, `clean home ${clean}`);
  }
});

t.test("bad calls answer 400 with today's exception body", async (t) => {
  const runner = await startRunner(t, { RUNNER_API: 'cyber-dojo' });
  const exception = (path: string, body: string, message: string) => ({ exception: { path, body, class: 'Runner', message, backtrace: [] } });
  t.strictSame(await call(runner, 'POST', '/run_cyber_dojo_sh', '{}'), { status: 400, body: exception('/run_cyber_dojo_sh', '{}', 'missing arguments: :id, :files, :manifest') });
  t.strictSame(await call(runner, 'POST', '/run_cyber_dojo_sh', 'not json'), { status: 400, body: exception('/run_cyber_dojo_sh', 'not json', 'body is not JSON') });
  t.strictSame(await call(runner, 'POST', '/run_cyber_dojo_sh', '[1]'), { status: 400, body: exception('/run_cyber_dojo_sh', '[1]', 'body is not JSON Hash') });
  t.strictSame(await call(runner, 'POST', '/nope', ''), { status: 400, body: exception('/nope', '', 'unknown path') });
  const extra = JSON.stringify({ id: 'x', files: {}, manifest: manifest(), other: 1 });
  t.strictSame(await call(runner, 'POST', '/run_cyber_dojo_sh', extra), { status: 400, body: exception('/run_cyber_dojo_sh', extra, 'unknown argument: :other') });
  const bad = JSON.stringify({ id: 'x', files: { '../x': 'y' }, manifest: manifest() });
  t.match(await call(runner, 'POST', '/run_cyber_dojo_sh', bad), { status: 400, body: { exception: { message: /^files: / } } });
});
