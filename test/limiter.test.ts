// The per-kata admission of runs: a unit test of pure logic (the queue), no engine.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedLimiter } from '../lib/limiter.ts';

t.test('at most limit pieces of work per key at once, the rest in arrival order', async (t) => {
  const limiter = new KeyedLimiter(2);
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const work = (i: number) => async () => {
    started.push(i);
    running++;
    most = Math.max(most, running);
    await sleep(20);
    running--;
    return i;
  };
  const results = await Promise.all([0, 1, 2, 3, 4].map((i) => limiter.run('kata', work(i))));
  t.same(results, [0, 1, 2, 3, 4]);
  t.equal(most, 2, 'never more than the limit at once');
  t.same(started, [0, 1, 2, 3, 4], 'first come, first served');
});

t.test('keys do not wait for each other, and a failure frees its place', async (t) => {
  const limiter = new KeyedLimiter(1);
  let release!: () => void;
  const blocked = limiter.run('a', () => new Promise<void>((resolve) => (release = resolve)));
  t.equal(await limiter.run('b', async () => 'b'), 'b', 'another key runs while a is held');
  await t.rejects(limiter.run('c', async () => Promise.reject(new Error('boom'))), /boom/);
  t.equal(await limiter.run('c', async () => 'again'), 'again', 'after a failure the key is free');
  release();
  await blocked;
  t.equal(await limiter.run('a', async () => 'a'), 'a');
});

t.test('a wait that is given up leaves the line, and the others keep their order', async (t) => {
  const limiter = new KeyedLimiter(1);
  let release!: () => void;
  const held = limiter.run('k', () => new Promise<void>((resolve) => (release = resolve)));
  const impatient = new AbortController();
  const order: string[] = [];
  const first = limiter.run('k', async () => void order.push('first'), impatient.signal);
  const second = limiter.run('k', async () => void order.push('second'));
  t.equal(limiter.waiting('k'), 2);
  t.equal(limiter.waiting(), 2);
  impatient.abort(new Error('waited too long'));
  await t.rejects(first, /waited too long/);
  t.equal(limiter.waiting(), 1, 'it left the line');
  release();
  await Promise.all([held, second]);
  t.same(order, ['second']);
  t.equal(limiter.waiting(), 0);
});
