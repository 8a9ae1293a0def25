// The host: health, docs, mounting, and the contract's errors for bad requests.
import Docker from 'dockerode';
import t from 'tap';
import { functions } from '../functions/index.ts';
import { error, startRunner } from './helper.ts';

// This runner's own API's functions (RUNNER_API=cyber-dojo mounts the others).
const ALL = functions.filter((f) => (f.api ?? 'runner') === 'runner').map((f) => f.name);

t.test('alive, ready and sha answer as the contract says', async (t) => {
  const runner = await startRunner(t);
  t.same(await runner.get('/alive'), { status: 200, body: { alive: true } });
  t.same(await runner.get('/ready'), { status: 200, body: { ready: true } });
  const sha = await runner.get('/sha');
  t.equal(sha.status, 200);
  t.match(sha.body.sha, /^[0-9a-f]{40}$/);
});

t.test('ready answers 503 engine:unavailable when the engine does not answer', async (t) => {
  const runner = await startRunner(t, {}, new Docker({ socketPath: '/nonexistent/docker.sock' }));
  t.same(await runner.get('/ready'), { status: 503, body: { exception: { function: 'ready', message: 'engine:unavailable' } } });
  const answer = await runner.post('kata_exists', { kata_id: 'ABCDEF0123' });
  t.same(answer, { status: 503, body: { exception: { function: 'kata_exists', message: 'engine:unavailable' } } });
  t.notMatch(JSON.stringify(answer.body), /sock|ENOENT/, 'no engine detail leaks');
});

t.test('the OpenAPI document is generated from the schemas of every mounted function', async (t) => {
  const runner = await startRunner(t);
  const docs = await runner.get('/docs/json');
  t.equal(docs.status, 200);
  t.match(docs.body.openapi, /^3\./);
  t.same(Object.keys(docs.body.paths).sort(), ALL.map((name) => `/${name}`).sort());
  t.match(docs.body.paths['/kata_new'].post.requestBody.content['application/json'].schema.properties.kata_id, { pattern: '^[0-9A-F]{10}$' });
  const ui = await fetch(`${runner.url}/docs/`);
  t.equal(ui.status, 200, 'the UI is served at /docs');
});

t.test('all functions are mounted by default, exactly the listed ones with RUNNER_FUNCTIONS', async (t) => {
  const all = await startRunner(t);
  for (const name of ALL) {
    const f = functions.find((f) => f.name === name)!;
    t.ok(all.app.hasRoute({ method: f.method, url: `/${name}` }), `${name} mounted`);
  }
  const some = await startRunner(t, { RUNNER_FUNCTIONS: 'kata_exists,alive' });
  t.same(await some.get('/alive'), { status: 200, body: { alive: true } });
  t.same((await some.post('kata_exists', { kata_id: 'ABCDEF0123' })).body, { kata_exists: false });
  t.same(await some.post('kata_new', { kata_id: 'ABCDEF0123', image_name: 'x' }), {
    status: 404,
    body: { exception: { function: 'kata_new', message: 'function:!exists' } },
  });
  t.equal((await some.get('/ready')).status, 404);
  // And /metrics, which every process answers about itself.
  t.same(Object.keys((await some.get('/docs/json')).body.paths).sort(), ['/alive', '/kata_exists', '/metrics']);
});

t.test('an unknown function name in RUNNER_FUNCTIONS stops the start', async (t) => {
  await t.rejects(startRunner(t, { RUNNER_FUNCTIONS: 'kata_new,nope' }), /RUNNER_FUNCTIONS: no function nope/);
});

t.test('bad requests get the contract errors', async (t) => {
  const runner = await startRunner(t);
  t.same(await runner.post('kata_exists', '{"kata_id": '), { status: 400, body: error('kata_exists', 'json:malformed') }, 'malformed JSON');
  t.same(await runner.post('kata_exists', ''), { status: 400, body: error('kata_exists', 'json:malformed') }, 'empty body');
  for (const body of ['[]', '"text"', '42', 'null', 'true']) {
    t.same(await runner.post('kata_exists', body), { status: 400, body: error('kata_exists', 'json:malformed') }, `body ${body}`);
  }
  t.same(await runner.post('nope', {}), { status: 404, body: error('nope', 'function:!exists') }, 'unknown path');
  t.same(await runner.get('/a/b'), { status: 404, body: error('a/b', 'function:!exists') }, 'unknown nested path');
  t.same(await runner.post('kata_exists', {}), { status: 400, body: error('kata_exists', 'kata_id:malformed') }, 'missing argument');
  t.same(await runner.post('kata_exists', { kata_id: 1234567890 }), { status: 400, body: error('kata_exists', 'kata_id:malformed') }, 'wrong type');
  t.same(await runner.post('kata_exists', { kata_id: 'abcdef0123' }), { status: 400, body: error('kata_exists', 'kata_id:malformed') }, 'wrong form');
  t.same((await runner.post('kata_exists', { kata_id: 'ABCDEF0123', extra: [1] })).body, { kata_exists: false }, 'unknown fields are ignored');
  const big = JSON.stringify({ kata_id: 'ABCDEF0123', padding: 'x'.repeat(8 * 1024 * 1024) });
  t.same(await runner.post('kata_exists', big), { status: 413, body: error('kata_exists', 'json:too_large') }, 'body over 8 MiB');
  const plain = await fetch(`${runner.url}/kata_exists`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"kata_id":"ABCDEF0123"}' });
  t.same(await plain.json(), { kata_exists: false }, 'a body without the JSON content type is still read as JSON');
});
