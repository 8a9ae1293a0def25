// Operations (issue 16): Prometheus metrics, token auth, bounded waiting with
// Retry-After, one log line per run, request ids.
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { functions } from '../functions/index.ts';
import { loadConfig } from '../lib/config.ts';
import { BASE, error, kataWithAvatar, PYTHON, spawnRunner, startRunner, type Runner } from './helper.ts';
import { bashKata, pythonStart, run, runScript } from './run-helper.ts';

t.setTimeout(600_000);

interface Sample {
  family: string; // as its # TYPE line names it
  name: string; // the sample's own: a histogram's are <family>_bucket, _sum, _count
  labels: Record<string, string>;
  value: number;
}
// Prometheus's own parser of its text format (Debian's python3-prometheus-client).
const PARSE = [
  'import json, sys',
  'from prometheus_client.parser import text_string_to_metric_families',
  'samples = [{"family": f.name, "name": s.name, "labels": s.labels, "value": repr(s.value)} for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]',
  'print(json.dumps(samples))',
].join('\n');
const scrape = async (runner: Runner): Promise<Sample[]> => {
  const response = await fetch(`${runner.url}/metrics`);
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const samples = JSON.parse(execFileSync('/usr/bin/python3', ['-c', PARSE], { input: await response.text() }).toString()) as (Sample & { value: string })[];
  return samples.map((s) => ({ ...s, value: Number(s.value) })); // NaN stays NaN
};
// A sample's value by its name and labels; 0 when it has none yet.
const sample = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ?? 0;

t.test('/metrics is Prometheus text; red, green and timed-out runs count exactly', async (t) => {
  const runner = await startRunner(t);
  const id = await kataWithAvatar(runner, pythonStart(), { image: PYTHON });
  const image = PYTHON;
  const before = await scrape(runner);
  const python = (answer: string) => ({ 'hiker.py': `def answer():\n    return ${answer}\n` });
  t.equal((await run(runner, id, { changed: python('6 * 9') })).body.run.colour, 'red');
  t.equal((await run(runner, id, { changed: python('6 * 9') })).body.run.colour, 'red');
  t.equal((await run(runner, id, { changed: python('6 * 7') })).body.run.colour, 'green');
  t.equal((await runScript(runner, id, 'sleep 5', { maxSeconds: 1 })).body.run.colour, 'timed_out');
  const after = await scrape(runner);
  const grew = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
  t.equal(grew('runner_runs_total', { image, colour: 'red' }), 2);
  t.equal(grew('runner_runs_total', { image, colour: 'green' }), 1);
  t.equal(grew('runner_runs_total', { image, colour: 'timed_out' }), 1);
  t.equal(grew('runner_run_duration_seconds_count', { image, colour: 'red' }), 2, 'the duration histogram counts the same runs');
  t.equal(grew('runner_run_duration_seconds_bucket', { image, colour: 'red', le: '+Inf' }), 2);
  t.equal(grew('runner_run_script_seconds_count', { image }), 4);
  t.equal(grew('runner_run_queue_seconds_count'), 4);
  t.equal(grew('runner_timeouts_total'), 1);
  t.ok(sample(after, 'runner_katas_live') >= 1, 'the live katas, from the engine');
  t.ok(sample(after, 'runner_engine_call_seconds_count', { op: 'container.inspect' }) > 0, 'engine calls, by operation');
  t.ok(after.some((s) => s.family === 'process_cpu_seconds'), "Node's process metrics");
  t.ok(after.every((s) => !Object.values(s.labels).includes(id) && !Object.values(s.labels).includes('lion')), 'no label carries a kata id or an avatar');
  t.equal((await runner.post('run', { kata_id: 'ABCDEF0123', avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 5 })).status, 404);
  t.equal(sample(await scrape(runner), 'runner_http_errors_total', { function: 'run', message: 'kata_id:!exists' }) - sample(after, 'runner_http_errors_total', { function: 'run', message: 'kata_id:!exists' }), 1);
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});

t.test('with RUNNER_TOKEN, every function but /alive and /ready needs it; tokens rotate', async (t) => {
  const tokens = ['a-first-token-of-32-characters!!', 'the-next-one-of-the-same-length!'];
  const runner = await startRunner(t, { RUNNER_TOKEN: tokens.join(',') });
  const call = (path: string, token?: string, body?: unknown) =>
    fetch(`${runner.url}${path}`, { method: body ? 'POST' : 'GET', headers: token ? { authorization: `Bearer ${token}` } : {}, body: body ? JSON.stringify(body) : undefined }).then(async (r) => ({ status: r.status, body: (await r.json().catch(() => null)) as any }));
  for (const f of functions.filter((f) => !f.open)) {
    const path = `/${f.name}`;
    t.strictSame(await call(path, undefined, f.method === 'POST' ? {} : undefined), { status: 401, body: error(f.name, 'token:!valid') }, `${path} without a token`);
  }
  t.equal((await call('/alive')).status, 200);
  t.equal((await call('/ready')).status, 200);
  const wrong = 'a-first-token-of-32-characters!?'; // the right length, one character off
  t.strictSame(await call('/kata_exists', wrong, { kata_id: 'ABCDEF0123' }), { status: 401, body: error('kata_exists', 'token:!valid') });
  for (const token of tokens) t.strictSame(await call('/kata_exists', token, { kata_id: 'ABCDEF0123' }), { status: 200, body: { kata_exists: false } });
  t.equal((await call('/metrics', tokens[1])).status, 200);
  const docs = (await call('/docs/json', tokens[0])).body;
  t.match(docs.components.securitySchemes.token, { type: 'http', scheme: 'bearer' }, 'the OpenAPI document declares the scheme');
  t.strictSame(docs.paths['/run'].post.security, [{ token: [] }]);
  t.throws(() => loadConfig({ ...process.env, RUNNER_TOKEN: 'short' }), /at least 16/);
});

t.test('past the queue limits a run is 429 run:busy with Retry-After; the admitted ones finish with their colours', async (t) => {
  const runner = await startRunner(t, { KATA_RUNS_AT_ONCE: '1', KATA_QUEUE_LIMIT: '2' });
  const id = await bashKata(runner);
  const avatars = ['salmon', 'tiger', 'zebra', 'owl', 'bee'];
  for (const avatar of avatars) t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: { 'cyber-dojo.sh': 'sleep 1' } })).status, 200);
  // Lion runs, two wait, and the rest are refused at once.
  const post = (avatar: string) =>
    fetch(`${runner.url}/run`, { method: 'POST', body: JSON.stringify({ kata_id: id, avatar_name: avatar, changed_files: { 'cyber-dojo.sh': 'sleep 1' }, deleted_filenames: [], max_seconds: 5 }) })
      .then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as any }));
  const first = post('lion');
  await sleep(300);
  const waiting = [post('salmon'), post('tiger')];
  await sleep(300);
  const refused = await Promise.all(['zebra', 'owl'].map(post));
  for (const answer of refused) {
    t.strictSame([answer.status, answer.body], [429, error('run', 'run:busy')]);
    t.ok(Number(answer.retryAfter) >= 1, `Retry-After ${answer.retryAfter}`);
  }
  const admitted = await Promise.all([first, ...waiting]);
  t.strictSame(admitted.map((a) => [a.status, a.body.run?.colour, a.body.run?.timed_out]), Array(3).fill([200, 'faulty', false]), 'all three ran (no colour rules on the base image)');
  t.equal((await post('bee')).status, 200, 'the line is free again');
});

t.test('a run that waits longer than its share answers 503 run:busy with Retry-After', async (t) => {
  const runner = await startRunner(t, { KATA_RUNS_AT_ONCE: '1', RUN_QUEUE_SECONDS: '1' });
  const id = await bashKata(runner);
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'salmon', starting_files: {} })).status, 200);
  const long = runScript(runner, id, 'sleep 3', { maxSeconds: 5 });
  await sleep(300);
  const response = await fetch(`${runner.url}/run`, { method: 'POST', body: JSON.stringify({ kata_id: id, avatar_name: 'salmon', changed_files: {}, deleted_filenames: [], max_seconds: 5 }) });
  t.equal(response.status, 503);
  t.strictSame(await response.json(), error('run', 'run:busy'));
  t.match(response.headers.get('retry-after'), /^\d+$/);
  t.equal((await long).body.run.timed_out, false, 'the run that held the place finishes');
});

t.test('/ready is 503 runner:busy while the process is over its limits; the rest goes on', async (t) => {
  const runner = await startRunner(t, { MAX_HEAP: '1m' });
  await sleep(1500); // its next sample of the heap
  t.strictSame(await runner.get('/ready'), { status: 503, body: error('ready', 'runner:busy') });
  t.strictSame(await runner.get('/alive'), { status: 200, body: { alive: true } });
  t.strictSame((await runner.post('kata_exists', { kata_id: 'ABCDEF0123' })).body, { kata_exists: false });
});

t.test('one info line per run, with its request id; engine calls at debug', async (t) => {
  const runner = await spawnRunner(t);
  const id = 'ABCDEF9876';
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: { 'cyber-dojo.sh': 'exit 3' } })).status, 200);
  const response = await fetch(`${runner.url}/run`, {
    method: 'POST',
    headers: { 'x-request-id': 'dojo-request-42' },
    body: JSON.stringify({ kata_id: id, avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 5 }),
  });
  t.equal(response.headers.get('x-request-id'), 'dojo-request-42', 'the request id is answered');
  t.equal(response.status, 200);
  await sleep(200);
  const lines = runner.log().filter((line) => line.msg === 'run');
  t.equal(lines.length, 1, 'one line for the run');
  t.match(lines[0], {
    level: 30, reqId: 'dojo-request-42', function: 'run', kata_id: id, avatar: 'lion', image: BASE, colour: 'faulty', status: 3,
    timed_out: false, oom_killed: false, queue_ms: Number, script_ms: Number, total_ms: Number,
  });
  t.notOk(runner.log().some((line) => line.msg === 'engine call' && line.level >= 30), 'engine calls that went well are not at info');
  const made = await fetch(`${runner.url}/alive`);
  t.match(made.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, 'one is made when the caller sends none');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
});
