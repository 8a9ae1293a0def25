// POST /run and the sandbox's files: what the caller's changed_files and
// deleted_filenames do, and which files the run itself created, changed or deleted.
import t from 'tap';
import { startRunner } from './helper.ts';
import { bashKata, runScript } from './run-helper.ts';

t.setTimeout(600_000);

const text = (content: string, truncated = false) => ({ content, truncated });

t.test('the text files the run created, changed and deleted are reported', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { 'keep.txt': 'keep\n', 'change.txt': 'old\n', 'delete.txt': 'bye\n', 'sub/gone.txt': 'bye\n' });
  const script = [
    'echo new >made.txt',
    'mkdir -p sub/dir && echo deep >sub/dir/deep.txt',
    "echo odd >\"it's a ü.txt\"",
    'echo more >>change.txt',
    'rm delete.txt sub/gone.txt',
    '',
  ].join('\n');
  const { run } = (await runScript(runner, id, script)).body;
  t.same(run.created, { 'made.txt': text('new\n'), 'sub/dir/deep.txt': text('deep\n'), "it's a ü.txt": text('odd\n') });
  t.same(run.changed, { 'change.txt': text('old\nmore\n') });
  t.same(run.deleted, ['delete.txt', 'sub/gone.txt']);
});

t.test('binary files, symlinks and FIFOs the run makes are not reported', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { 'was-text.txt': 'text\n' });
  const script = [
    "printf 'a\\0b' >binary.dat",
    "printf '\\0' >>was-text.txt",
    'ln -s /etc/passwd to-passwd',
    'ln -s binary.dat to-binary',
    'mkfifo pipe',
    'echo text >text.txt',
    '',
  ].join('\n');
  const { run } = (await runScript(runner, id, script)).body;
  t.same(run.created, { 'text.txt': text('text\n') }, 'only the text file among those created');
  t.same(run.changed, {}, 'a text file that became binary is not returned');
  t.same(run.deleted, []);
  t.equal((await runScript(runner, id, 'ls -A | sort\n')).body.run.stdout.content, 'binary.dat\ncyber-dojo.sh\npipe\ntext.txt\nto-binary\nto-passwd\nwas-text.txt\n');
});

t.test('a created file over 50 KiB comes back as its first 51200 bytes, truncated', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const script = "head -c 52224 /dev/zero | tr '\\0' y >big.txt\nhead -c 51200 /dev/zero | tr '\\0' z >exact.txt\n";
  const { run } = (await runScript(runner, id, script)).body;
  t.same(run.created, { 'big.txt': text('y'.repeat(51200), true), 'exact.txt': text('z'.repeat(51200)) });
});

t.test('of more than 16 created text files, the first 16 by name are reported', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner);
  const { run } = (await runScript(runner, id, 'for i in $(seq 1 20); do echo $i >file-$i.txt; done\n')).body;
  const names = Array.from({ length: 20 }, (_, i) => `file-${i + 1}.txt`).sort();
  t.same(Object.keys(run.created).sort(), names.slice(0, 16));
  t.same(run.created['file-10.txt'], text('10\n'));
});

t.test('a file rewritten with the same content is not changed', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { 'same.txt': 'same\n', 'touched.txt': 'touched\n' });
  const { run } = (await runScript(runner, id, 'echo same >same.txt\ntouch touched.txt\n')).body;
  t.same(run.changed, {});
  t.same(run.created, {});
});

t.test('changed_files write new and changed files, sub-folders too, and deleted_filenames delete', async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { 'a.txt': 'a\n', 'b.txt': 'b\n', 'sub/c.txt': 'c\n' });
  const list = 'find . -type f -printf "%P\\n" | sort | while read -r f; do echo "$f: $(cat "$f")"; done\n';
  const first = await runScript(runner, id, list, {
    changed: { 'a.txt': 'A\n', 'new/deep/d.txt': 'd\n', 'sub/e.txt': 'e\n' },
    deleted: ['b.txt', 'sub/c.txt'],
  });
  const expected = ['a.txt: A', 'cyber-dojo.sh: find . -type f -printf "%P\\n" | sort | while read -r f; do echo "$f: $(cat "$f")"; done', 'new/deep/d.txt: d', 'sub/e.txt: e', ''].join('\n');
  t.equal(first.body.run.stdout.content, expected, 'the run sees them');
  t.match(first.body.run, { created: {}, changed: {}, deleted: [] }, "the caller's own writes and deletes are not the run's");
  t.equal((await runScript(runner, id, list)).body.run.stdout.content, expected, 'and so does the next run');
});

t.test("a file the caller sent and the run then changed is the run's change", async (t) => {
  const runner = await startRunner(t);
  const id = await bashKata(runner, { 'log.txt': 'one\n' });
  const { run } = (await runScript(runner, id, 'echo three >>log.txt\n', { changed: { 'log.txt': 'two\n' } })).body;
  t.same(run.changed, { 'log.txt': text('two\nthree\n') });
});
