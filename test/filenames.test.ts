// Filenames (issue 3): every name the contract allows round-trips exactly through
// starting_files, changed_files, deleted_filenames and the run's answer; every name
// it forbids is refused before anything is written.
import t from 'tap';
import { AVATARS } from '../lib/args.ts';
import { BASE, error, kataId, kataWithAvatar, startRunner } from './helper.ts';
import { run } from './run-helper.ts';

// Appends a line to every file but itself, so that the run's `changed` names them all.
const APPEND = `find . -type f ! -path ./cyber-dojo.sh -exec sh -c 'for f; do echo more >> "$f"; done' _ {} +\n`;

// The limits, in UTF-8 bytes: 4 segments of 200, one of 220 and 4 slashes make 1024;
// 127 two-byte characters and one more make a 255-byte segment.
const NAME_1024 = `${['d', 'e', 'f', 'g'].map((c) => c.repeat(200)).join('/')}/${'h'.repeat(220)}`;
const SEGMENT_255 = `${'é'.repeat(127)}x`;

const LEGAL = [
  "it's.txt",
  'say "hi".txt',
  'with space.txt',
  ' leading space',
  'trailing space ',
  'new\nline.txt',
  'ends with a newline\n',
  'tab\there',
  'carriage\rreturn',
  'line\u2028separator',
  '\u0001control',
  '-rf',
  '--help',
  '-',
  'a&b;c|d>e<f.txt',
  '$(touch pwned).txt',
  '`touch pwned`.txt',
  '${HOME}',
  '*',
  '?',
  '@',
  '[',
  ']',
  'a[$(touch pwned)]',
  'back\\slash.txt',
  '~',
  '#hash',
  '%s%n',
  '.hidden',
  '..two-dots-first',
  '...',
  'ünïcödé ✓.py',
  '🐍 snake.py',
  'x'.repeat(255),
  SEGMENT_255,
  'deep/er/and/deeper/still/deepest.txt',
  'sub dir/-rf/it\'s "here"',
  NAME_1024,
];

const ILLEGAL = [
  '',
  '.',
  '..',
  '../x',
  'a/../../x',
  'a/..',
  './x',
  'a/./b',
  'a/.',
  'a//b',
  'a/',
  '/etc/x',
  '/',
  'x\0y',
  'x'.repeat(256),
  `${SEGMENT_255}x`,
  `${NAME_1024}x`,
  '\ud800',
  'a\udc00b.txt',
  '\udc00\ud800',
];

const texts = (files: Record<string, string>) => Object.fromEntries(Object.entries(files).map(([name, content]) => [name, { content, truncated: false }]));

t.test('every legal name round-trips exactly: starting files, changed files, the run, deletion', { timeout: 300_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  // A run answers at most 16 changed files: each avatar holds 13 of the names.
  for (let at = 0, index = 0; at < LEGAL.length; at += 13, index++) {
    const names = LEGAL.slice(at, at + 13);
    const avatar = AVATARS[index]!;
    const starting = Object.fromEntries(names.map((name, i) => [name, `file ${at + i}: ${JSON.stringify(name)}\n`]));
    const entered = await runner.post('avatar_new', { kata_id: id, avatar_name: avatar, starting_files: { 'cyber-dojo.sh': APPEND, ...starting } });
    t.equal(entered.status, 200, `${avatar} entered`);

    const first = (await run(runner, id, { avatar })).body.run;
    t.equal(first.stderr.content, '');
    t.strictSame(first.changed, texts(Object.fromEntries(names.map((name) => [name, `${starting[name]}more\n`]))), 'each starting file, by its exact name');
    t.strictSame(first.created, {}, 'no name was taken for a command');
    t.strictSame(first.deleted, []);

    const changed = Object.fromEntries(names.map((name, i) => [name, `changed ${at + i} ✓`]));
    const second = (await run(runner, id, { avatar, changed })).body.run;
    t.strictSame(second.changed, texts(Object.fromEntries(names.map((name) => [name, `${changed[name]}more\n`]))), 'each changed file, by its exact name');
    t.strictSame(second.created, {});

    // Deleting each by its exact name leaves only cyber-dojo.sh (and the folders).
    const third = (await run(runner, id, { avatar, changed: { 'cyber-dojo.sh': 'find . -type f' }, deleted: names })).body.run;
    t.equal(third.stdout.content, './cyber-dojo.sh\n', 'each deleted by its exact name');
    t.strictSame(third.changed, {});
  }
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('names the run itself makes come back exactly too', { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = await kataWithAvatar(runner, { 'cyber-dojo.sh': 'true' });
  // The names go in as data, one base64 line each, never as shell text; the x keeps
  // a trailing newline from being cut by $(...).
  const made = LEGAL.filter((name) => !name.includes('/')).slice(-16);
  const names = made.map((name) => Buffer.from(name).toString('base64')).join('\n');
  const script = 'while read -r b64; do name=$(echo "$b64" | base64 -d; echo x); name=${name%x}; printf \'made %s\' "$name" > "./$name"; done < names.b64\n';
  const answer = (await run(runner, id, { changed: { 'cyber-dojo.sh': script, 'names.b64': `${names}\n` } })).body.run;
  t.equal(answer.stderr.content, '');
  t.strictSame(answer.created, texts(Object.fromEntries(made.map((name) => [name, `made ${name}`]))));
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('an illegal name is refused as <arg>:malformed, and nothing of the request is written', { timeout: 180_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const both = { a: '', 'a/b': '' }; // a name that is both a file and a folder
  for (const name of ILLEGAL) {
    t.strictSame(
      await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: { 'ok.txt': 'ok', [name]: 'x' } }),
      { status: 400, body: error('avatar_new', 'starting_files:malformed') },
      `starting_files ${JSON.stringify(name)}`,
    );
  }
  t.strictSame(await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: both }), { status: 400, body: error('avatar_new', 'starting_files:malformed') }, 'a file and a folder');
  t.strictSame((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: false }, 'the avatar did not enter');

  const starting = { 'cyber-dojo.sh': 'find . -type f | sort; cat keep.txt', 'keep.txt': 'kept' };
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: starting })).status, 200);
  for (const name of ILLEGAL) {
    t.strictSame(await run(runner, id, { changed: { 'keep.txt': 'changed', [name]: 'x' } }), { status: 400, body: error('run', 'changed_files:malformed') }, `changed_files ${JSON.stringify(name)}`);
    t.strictSame(await run(runner, id, { deleted: ['keep.txt', name] }), { status: 400, body: error('run', 'deleted_filenames:malformed') }, `deleted_filenames ${JSON.stringify(name)}`);
  }
  t.strictSame(await run(runner, id, { changed: { 'keep.txt': 'changed', ...both } }), { status: 400, body: error('run', 'changed_files:malformed') }, 'a file and a folder');
  const after = (await run(runner, id)).body.run;
  t.equal(after.stdout.content, './cyber-dojo.sh\n./keep.txt\nkept', 'the sandbox is as avatar_new left it');
  t.strictSame(after.changed, {});
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});
