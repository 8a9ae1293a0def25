// Shared by the run tests: a kata ready to run, one POST /run, and the avatar's uid.
import { fileURLToPath } from 'node:url';
import { LABEL } from '../lib/katas.ts';
import { AVATARS } from '../lib/args.ts';
import { startingFiles } from '../lib/start-points.ts';
import { containerOf, docker, kataWithAvatar, uidOf, type Runner } from './helper.ts';

// A start point's starting files, as a caller would send them.
export const startFiles = (folder: string) => startingFiles(fileURLToPath(new URL('../deploy/start-points', import.meta.url)), folder);

export const pythonStart = () => startFiles('python-pytest');

export interface RunArgs {
  avatar?: string;
  changed?: Record<string, string>;
  deleted?: string[];
  maxSeconds?: number;
  extra?: Record<string, unknown>;
}

export function run(runner: Runner, kataId: string, args: RunArgs = {}) {
  return runner.post('run', {
    kata_id: kataId,
    avatar_name: args.avatar ?? 'lion',
    changed_files: args.changed ?? {},
    deleted_filenames: args.deleted ?? [],
    max_seconds: args.maxSeconds ?? 10,
    ...args.extra,
  });
}

// A run whose cyber-dojo.sh is the given bash script.
export const runScript = (runner: Runner, kataId: string, script: string, args: RunArgs = {}) =>
  run(runner, kataId, { ...args, changed: { ...args.changed, 'cyber-dojo.sh': script } });

// A base-image kata with lion in it, holding only a cyber-dojo.sh that does nothing.
export const bashKata = (runner: Runner, files: Record<string, string> = {}) =>
  kataWithAvatar(runner, { 'cyber-dojo.sh': 'true\n', ...files });

// The kata's container and the uid of an avatar in it, to count its processes.
export async function avatarOf(runner: Runner, kataId: string, avatar = 'lion') {
  const containerId = await containerOf(runner, kataId);
  const labels = (await docker.getContainer(containerId).inspect()).Config.Labels;
  return { containerId, uid: uidOf(runner, Number(labels[LABEL.slot]), AVATARS.indexOf(avatar as (typeof AVATARS)[number])) };
}
