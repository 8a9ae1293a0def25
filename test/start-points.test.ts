// GET /start_points: the catalogue of deploy/start-points, each folder's manifest and
// starting files, and the image setup.sh built from it.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { COLOUR_RULES_LABEL } from '../lib/colour.ts';
import { docker, startRunner } from './helper.ts';

const START_POINTS = fileURLToPath(new URL('../deploy/start-points/', import.meta.url));

const filesUnder = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => {
        const path = join(entry.parentPath, entry.name);
        return [relative(dir, path), readFileSync(path, 'utf8')];
      }),
  );

t.test('GET /start_points lists every start point folder: name, image, starting files, time limit', async (t) => {
  const runner = await startRunner(t);
  const answer = await runner.get('/start_points');
  t.equal(answer.status, 200);
  const folders = readdirSync(START_POINTS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  t.ok(folders.length >= 8, 'python-pytest and at least seven more');
  const listed = answer.body.start_points as { display_name: string; image_name: string; starting_files: Record<string, string>; max_seconds: number }[];
  t.strictSame(listed.map((s) => s.image_name), folders.map((name) => `${runner.config.imagePrefix}${name}`), 'one per folder, in name order');
  for (const [index, startPoint] of listed.entries()) {
    const folder = join(START_POINTS, folders[index]!);
    const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8'));
    t.strictSame(Object.keys(startPoint).sort(), ['display_name', 'image_name', 'max_seconds', 'starting_files']);
    t.equal(startPoint.display_name, manifest.display_name);
    t.match(startPoint.display_name, /\S/);
    t.equal(startPoint.max_seconds, manifest.max_seconds);
    t.ok(Number.isInteger(startPoint.max_seconds) && startPoint.max_seconds >= 1 && startPoint.max_seconds <= 20, `${folders[index]}: max_seconds within 1..20`);
    t.strictSame(startPoint.starting_files, filesUnder(join(folder, 'start')), `${folders[index]}: the files of start/`);
    t.ok('cyber-dojo.sh' in startPoint.starting_files, `${folders[index]}: has cyber-dojo.sh`);
  }
});

t.test("each start point's image is built, carrying the folder's colour rules", async (t) => {
  const runner = await startRunner(t);
  for (const { image_name } of (await runner.get('/start_points')).body.start_points as { image_name: string }[]) {
    const folder = join(START_POINTS, image_name.slice(runner.config.imagePrefix.length));
    const labels = (await docker.getImage(image_name).inspect()).Config.Labels ?? {};
    t.equal(labels[COLOUR_RULES_LABEL], readFileSync(join(folder, 'colour-rules.json'), 'utf8').replace(/\n+$/, ''), image_name);
  }
});
