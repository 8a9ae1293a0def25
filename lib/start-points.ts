// The language start points: folders of deploy/start-points, each with its image
// recipe, starting files (start/) and manifest.json ({display_name, max_seconds}).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface StartPoint {
  display_name: string;
  image_name: string;
  starting_files: Record<string, string>;
  max_seconds: number;
}

function filesUnder(root: string, dir = root, files: Record<string, string> = {}): Record<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) filesUnder(root, path, files);
    else if (entry.isFile()) files[relative(root, path)] = readFileSync(path, 'utf8');
  }
  return files;
}

// A start point's starting files: its start/ folder, by path relative to it.
export const startingFiles = (dir: string, name: string) => filesUnder(join(dir, name, 'start'));

// Read on the first request for them, then kept.
export function loadStartPoints(dir: string, imagePrefix: string): StartPoint[] {
  return readdirSync(dir)
    .filter((name) => statSync(join(dir, name)).isDirectory())
    .sort()
    .map((name) => {
      const manifest = JSON.parse(readFileSync(join(dir, name, 'manifest.json'), 'utf8')) as Partial<StartPoint>;
      if (typeof manifest.display_name !== 'string' || !Number.isInteger(manifest.max_seconds)) {
        throw new Error(`${name}/manifest.json: needs display_name and an integer max_seconds`);
      }
      return {
        display_name: manifest.display_name,
        image_name: `${imagePrefix}${name}`,
        starting_files: startingFiles(dir, name),
        max_seconds: manifest.max_seconds!,
      };
    });
}
