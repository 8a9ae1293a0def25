// Every start point GET /start_points lists, as a dojo uses it: a kata on its image,
// one avatar with its starting files, then red (as given), amber (a syntax error) and
// green (the fix), each run in that same avatar; then the outputs that could fool
// its colour rules.
import { mkdirSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { inContainer, kataWithAvatar, startRunner } from './helper.ts';
import { avatarOf } from './run-helper.ts';

// Every start point's exercise has exactly one file whose answer is 6 * 9.
const ANSWER = '6 * 9';
const EDITS = { amber: '6 * 9 )', green: '6 * 7' } as const;

// What a start point's own build leaves in the sandbox besides the starting files
// (binaries, so a run never reports them).
const BUILT: Record<string, string[]> = { 'c-assert': ['tests.out'], 'cpp-gtest': ['tests.out'] };

// Outputs that look like another colour's. Each is the starting files with one
// replacement made in one of them, and the colour that must still come out.
interface Trap {
  name: string;
  colour: 'red' | 'amber' | 'green';
  file: string;
  replace: [string, string];
}
const TRAPS: Record<string, Trap[]> = {
  'bash-bats': [{ name: 'bats-syntax', colour: 'amber', file: 'hiker.bats', replace: ['-eq 42 ]', '-eq 42 ]\n  if then'] }],
  'c-assert': [{ name: 'warning', colour: 'amber', file: 'hiker.c', replace: ['return', 'int unused;\n    return'] }],
  'go-testing': [
    { name: 'vet', colour: 'amber', file: 'hiker_test.go', replace: ['= %d', '= %s'] },
    { name: 'panic', colour: 'red', file: 'hiker_test.go', replace: ['if got', 'var m map[int]int\n\tm[0] = 1\n\tif got'] },
  ],
  'javascript-node': [
    { name: 'logs-error', colour: 'red', file: 'hiker.test.js', replace: ['assert.equal', "console.log('Error: a test may print this');\n  assert.equal"] },
    { name: 'throws-on-load', colour: 'amber', file: 'hiker.js', replace: ['function', "throw new TypeError('on load');\n\nfunction"] },
  ],
  'python-pytest': [{ name: 'import-error', colour: 'amber', file: 'test_hiker.py', replace: ['import answer', 'import answr'] }],
  'ruby-minitest': [{ name: 'error-in-test', colour: 'red', file: 'test_hiker.rb', replace: ['42, answer', '42, answr'] }],
};

// COLOUR_FIXTURES=write saves each run's output (unless it timed out) for colour-rules.test.ts.
const FIXTURES = new URL('fixtures/colour/', import.meta.url);
const saveFixture = (startPoint: string, name: string, run: { stdout: { content: string }; stderr: { content: string }; status: number }) => {
  const dir = new URL(`${startPoint}/`, FIXTURES);
  mkdirSync(dir, { recursive: true });
  const fixture = { stdout: run.stdout.content, stderr: run.stderr.content, status: run.status };
  writeFileSync(new URL(`${name}.json`, dir), `${JSON.stringify(fixture, null, 2)}\n`);
};

const replaced = (text: string, [from, to]: [string, string]) => {
  if (!text.includes(from)) throw new Error(`no ${JSON.stringify(from)} to replace`);
  return text.replace(from, to);
};

t.test('every start point goes red, then amber, then green in one avatar', { timeout: 900_000 }, async (t) => {
  const runner = await startRunner(t);
  const catalogue = await runner.get('/start_points');
  t.equal(catalogue.status, 200);
  const startPoints = catalogue.body.start_points as { image_name: string; starting_files: Record<string, string>; max_seconds: number }[];
  const names = startPoints.map((startPoint) => startPoint.image_name.slice(runner.config.imagePrefix.length));
  t.strictSame(Object.keys(TRAPS).filter((name) => !names.includes(name)), [], 'every trap is for a listed start point');
  for (const [index, startPoint] of startPoints.entries()) {
    const name = names[index]!;
    await t.test(name, async (t) => {
      const files = startPoint.starting_files;
      const sources = Object.keys(files).filter((file) => files[file]!.includes(ANSWER));
      t.equal(sources.length, 1, `one starting file answers ${ANSWER}`);
      const source = sources[0]!;
      const id = await kataWithAvatar(runner, files, { image: startPoint.image_name });
      const run = async (colour: string, changed: Record<string, string>, fixture: string = colour) => {
        const answer = await runner.post('run', {
          kata_id: id,
          avatar_name: 'lion',
          changed_files: changed,
          deleted_filenames: [],
          max_seconds: startPoint.max_seconds,
        });
        t.equal(answer.status, 200, `${fixture} run answered`);
        const result = answer.body.run;
        t.equal(result.colour, colour, fixture, { status: result.status, stdout: result.stdout.content, stderr: result.stderr.content });
        t.strictSame([result.created, result.changed, result.deleted], [{}, {}, []], `${fixture}: the run created, changed and deleted no text file`);
        t.comment(`${name} ${fixture} ${result.duration_ms} ms`);
        if (process.env.COLOUR_FIXTURES === 'write' && !result.timed_out) saveFixture(name, fixture, result);
      };

      await run('red', {});
      // Not only text: nothing at all (no cache, no bytecode, no class files) but what the build makes.
      const { containerId, uid } = await avatarOf(runner, id);
      // Plain find: an image may have no GNU findutils.
      const listing = await inContainer(containerId, 'cd /sandboxes/lion && find . -mindepth 1', `${uid}:${uid}`);
      const expected = [...Object.keys(files), ...(BUILT[name] ?? [])].sort();
      t.strictSame(listing.split('\n').filter(Boolean).map((path) => path.slice(2)).sort(), expected, 'the sandbox holds the starting files and build products only');

      await run('amber', { [source]: files[source]!.replace(ANSWER, EDITS.amber) });
      await run('green', { [source]: files[source]!.replace(ANSWER, EDITS.green) });
      for (const trap of TRAPS[name] ?? []) {
        await run(trap.colour, { ...files, [trap.file]: replaced(files[trap.file]!, trap.replace) }, `${trap.colour}-${trap.name}`);
      }
      t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
    });
  }
});
