// image_pulled and image_pull: what the engine has, what it cannot get (no registry
// answers from here), how long a pull may hang, and which names are malformed.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { error, kataId, PYTHON, startRunner } from './helper.ts';

const UNKNOWN = 'cyber-dojo-runner/no-such-image:never';

t.test('image_pulled: true for every start point image, false for an image the engine does not have', async (t) => {
  const runner = await startRunner(t);
  for (const { image_name } of (await runner.get('/start_points')).body.start_points as { image_name: string }[]) {
    t.strictSame(await runner.post('image_pulled', { image_name }), { status: 200, body: { image_pulled: true } }, image_name);
  }
  t.strictSame(await runner.post('image_pulled', { image_name: UNKNOWN }), { status: 200, body: { image_pulled: false } });
  t.strictSame(await runner.post('image_pulled', { image_name: `${PYTHON}:no-such-tag` }), { status: 200, body: { image_pulled: false } }, 'a tag it lacks');
});

t.test('image_pull: true for an image the engine has; image_name:!exists for one no registry gives', async (t) => {
  const runner = await startRunner(t);
  t.strictSame(await runner.post('image_pull', { image_name: PYTHON }), { status: 200, body: { image_pull: true } });
  // Docker Hub (no name server answers here) and a registry port nobody listens on.
  for (const image_name of [UNKNOWN, 'localhost:1/cdf/no-such-image:never']) {
    t.strictSame(await runner.post('image_pull', { image_name }), { status: 404, body: error('image_pull', 'image_name:!exists') }, image_name);
    t.strictSame(await runner.post('image_pulled', { image_name }), { status: 200, body: { image_pulled: false } }, `${image_name} is still not there`);
  }
});

t.test('image_pull gives up at IMAGE_PULL_TIMEOUT_SECONDS on a registry that never answers', async (t) => {
  // It answers the engine's ping, then holds the manifest request open for ever: the
  // engine itself would wait as long (measured: over 3 minutes, with no end).
  const held: IncomingMessage[] = [];
  const registry = createServer((request, response) => {
    if (request.url === '/v2/') response.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }).end('{}');
    else held.push(request);
  });
  await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    registry.closeAllConnections();
    registry.close();
  });
  const image_name = `localhost:${(registry.address() as AddressInfo).port}/cdf/held:latest`;
  const runner = await startRunner(t, { IMAGE_PULL_TIMEOUT_SECONDS: '2' });
  // The bound of this test, far beyond the runner's: a pull that never gives up fails it.
  const answer = await fetch(`${runner.url}/image_pull`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image_name }),
    signal: AbortSignal.timeout(60_000),
  });
  t.equal(answer.status, 404);
  t.strictSame(await answer.json(), error('image_pull', 'image_name:!exists'));
  t.match(held.map((request) => request.url), [/^\/v2\/cdf\/held\/manifests\/latest$/], 'the engine was waiting for the manifest');
});

t.test('image_name must be a Docker reference: malformed ones answer 400 and touch nothing', async (t) => {
  const runner = await startRunner(t);
  const digest = (hex: number) => `sha256:${'0'.repeat(hex)}`;
  const malformed: unknown[] = [
    '',
    'ALPHA/name', // a first component without '.' or ':' is a path, and paths are lower case
    'cdf/Gcc_assert',
    'gcc:.', // a tag cannot start with '.'
    'gcc:',
    ':latest',
    `gcc@${digest(31)}`, // a digest has at least 32 hex digits
    'gcc@sha256:',
    'a//b',
    'a/b/',
    '-gcc',
    'gcc_',
    'gcc:tag with space',
    `gcc:${'t'.repeat(129)}`,
    'localhost:port/gcc',
    42,
    null,
  ];
  for (const image_name of malformed) {
    for (const fn of ['image_pulled', 'image_pull']) {
      t.strictSame(await runner.post(fn, { image_name }), { status: 400, body: error(fn, 'image_name:malformed') }, `${fn} ${JSON.stringify(image_name)}`);
    }
  }
  t.strictSame(await runner.post('image_pull', {}), { status: 400, body: error('image_pull', 'image_name:malformed') }, 'no image_name');
  // The grammar's, but refused by the engine's own check of a digest.
  const refused = [`gcc@${digest(32)}`, `gcc:latest@sha512:${'0'.repeat(64)}`, `gcc@md5:${'0'.repeat(32)}`];
  for (const image_name of refused) {
    for (const [fn, body] of [['image_pulled', { image_name }], ['image_pull', { image_name }], ['kata_new', { image_name, kata_id: kataId() }]] as const) {
      t.strictSame(await runner.post(fn, body), { status: 400, body: error(fn, 'image_name:malformed') }, `${fn} ${image_name}`);
    }
  }
  t.strictSame(await runner.containers(), [], 'no kata was made');
  const wellFormed = [
    'localhost:80/cdf/gcc_assert:tag',
    'A.B.C:80/cdf/x:latest', // a host may be upper case
    'quay.io:8080/cdf/gcc_assert:12',
    'gcc',
    'cdf/gcc__assert',
    'a.b-c/x',
    `gcc:latest@${digest(64)}`,
    `gcc:${'t'.repeat(128)}`,
  ];
  for (const image_name of wellFormed) {
    t.strictSame(await runner.post('image_pulled', { image_name }), { status: 200, body: { image_pulled: false } }, image_name);
  }
});
