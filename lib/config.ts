// The runner's whole configuration: defaults, the environment variables that override
// them, and their validation. A bad value stops the runner at start, never mid-kata.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface KataLimits {
  memoryBytes: number; // the whole kata container; no swap beyond it
  nanoCpus: number; // CPU share of the whole kata container
  pids: number; // processes and threads of the whole kata container
  nproc: number; // processes and threads per avatar (the kernel counts them per uid)
  nofile: number; // open files per process
  fsizeBytes: number; // largest file a process may write
  sandboxBytes: number; // each avatar's /sandboxes/<avatar> tmpfs
  sandboxFiles: number; // its files, folders and links (inodes)
  homeBytes: number; // each avatar's /home/<avatar> tmpfs (caches, TMPDIR)
  tmpBytes: number; // the kata's shared /tmp and /var/tmp
  shmBytes: number; // the kata's shared /dev/shm
}

export interface Config {
  host: string;
  port: number;
  functions: string[] | 'all';
  api: 'runner' | 'cyber-dojo'; // which API's functions this host mounts
  engine: 'docker' | 'swarm'; // katas as containers of one engine, or services of a swarm
  cyberDojoKataSeconds: number; // how long the kata of a cyber-dojo API id is kept warm
  cyberDojoCleanHome: boolean; // each of its runs starts from an empty home and /tmp
  runnerName: string;
  bodyLimitBytes: number;
  reapSchedule: string | null; // null: another process reaps
  uidBase: number;
  runsAtOnce: number; // per kata, per runner process; the rest queue
  avatarLockSeconds: number; // a request waits this long for its avatar's lock in the kata
  runQueueLimit: number; // runs waiting in this process, past which a run is 429
  kataQueueLimit: number; // runs waiting for one kata, likewise
  runQueueWaitMs: number; // a run waiting longer than this for its place is 503
  tokens: string[]; // none: open; else every function but /alive and /ready needs one
  maxEventLoopDelayMs: number; // past either, /ready answers 503 runner:busy
  maxHeapBytes: number;
  imagePullTimeoutMs: number;
  startPointsDir: string;
  imagePrefix: string; // start point <name> is image <imagePrefix><name>
  sha: string;
  helperFile: string; // the kata helper binary the set-up built
  pagesDir: string; // the pages' scripts the set-up bundled
  // Where run makes a kata it resurrects, when it may not create containers itself
  // (a deployment's run service): another runner's POST /kata_new. null: here.
  kataNewUrl: string | null;
  limits: KataLimits;
}

const projectRoot = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));

const SIZE = /^(\d+)([kmg]?)$/i;
// Processes of a kata that no avatar can take: the helper's workers, the kata's init.
const PIDS_RESERVE = 256;
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function size(env: NodeJS.ProcessEnv, name: string, fallback: string, min: number, max: number): number {
  const text = env[name] ?? fallback;
  const match = SIZE.exec(text);
  const bytes = match ? Number(match[1]) * UNITS[match[2]!.toLowerCase()]! : NaN;
  if (!(bytes >= min && bytes <= max)) throw new Error(`${name}=${text}: expected a size between ${min} and ${max} bytes, e.g. 64m`);
  return bytes;
}

function number(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number, integer = true): number {
  const text = env[name];
  const value = text === undefined || text === '' ? fallback : Number(text);
  if (!(value >= min && value <= max) || (integer && !Number.isInteger(value))) {
    throw new Error(`${name}=${text}: expected ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
  }
  return value;
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[], fallback: T): T {
  const text = env[name] || fallback;
  if (!values.includes(text as T)) throw new Error(`${name}=${text}: expected one of ${values.join(', ')}`);
  return text as T;
}

// RUNNER_TOKEN: tokens, comma-separated (several while one is rotated out); or
// RUNNER_TOKEN_FILE: a file of them, one a line. Each at least 16 characters.
function tokens(env: NodeJS.ProcessEnv): string[] {
  let text = env.RUNNER_TOKEN ?? '';
  if (env.RUNNER_TOKEN_FILE) {
    try {
      text = readFileSync(env.RUNNER_TOKEN_FILE, 'utf8');
    } catch (e) {
      throw new Error(`RUNNER_TOKEN_FILE=${env.RUNNER_TOKEN_FILE}: ${(e as Error).message}`);
    }
  }
  const list = text.split(/[,\n]/).map((t) => t.trim()).filter(Boolean);
  if (list.some((t) => t.length < 16 || !/^[\x21-\x7e]+$/.test(t))) throw new Error('RUNNER_TOKEN: each token needs at least 16 printable characters, no spaces');
  return list;
}

function url(env: NodeJS.ProcessEnv, name: string): string | null {
  const text = env[name];
  if (!text) return null;
  if (!URL.canParse(text) || !/^https?:$/.test(new URL(text).protocol)) throw new Error(`${name}=${text}: expected an http(s) URL`);
  return text;
}

function gitSha(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const functions = (env.RUNNER_FUNCTIONS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const runnerName = env.RUNNER_NAME ?? 'cyber-dojo-runner';
  if (!/^[a-z0-9][a-z0-9_.-]{0,39}$/.test(runnerName)) {
    throw new Error(`RUNNER_NAME=${runnerName}: expected 1-40 of a-z 0-9 _ . - (it names containers)`);
  }
  const sha = env.RUNNER_SHA ?? gitSha() ?? '';
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new Error(`RUNNER_SHA=${sha}: expected the 40-hex commit (no git checkout to read it from)`);
  const reap = env.REAP_SCHEDULE ?? '* * * * *';
  const memoryBytes = size(env, 'KATA_MEMORY', '2g', 256 * 1024 ** 2, 64 * 1024 ** 3);
  const limits: KataLimits = {
    memoryBytes,
    nanoCpus: Math.round(number(env, 'KATA_CPUS', 1.5, 0.1, 64, false) * 1e9),
    pids: number(env, 'KATA_PIDS', 64 * 64 + PIDS_RESERVE, 64, 65536),
    nproc: number(env, 'AVATAR_NPROC', 64, 16, 1024),
    nofile: number(env, 'KATA_NOFILE', 1024, 64, 65536),
    fsizeBytes: size(env, 'KATA_FSIZE', '64m', 1024 ** 2, 16 * 1024 ** 3),
    sandboxBytes: size(env, 'SANDBOX_SIZE', '64m', 1024 ** 2, memoryBytes),
    sandboxFiles: number(env, 'SANDBOX_FILES', 1024, 64, 1_000_000),
    homeBytes: size(env, 'HOME_SIZE', '64m', 1024 ** 2, memoryBytes),
    tmpBytes: size(env, 'KATA_TMP_SIZE', '64m', 1024 ** 2, memoryBytes),
    shmBytes: size(env, 'KATA_SHM_SIZE', '16m', 1024 ** 2, memoryBytes),
  };
  // All 64 avatars at their process limit leave the runner's helper room to fork.
  if (limits.pids < 64 * limits.nproc + PIDS_RESERVE) {
    throw new Error(`KATA_PIDS=${limits.pids}: expected at least 64 × AVATAR_NPROC (${limits.nproc}) + ${PIDS_RESERVE}, so that no avatars can leave the kata unable to start the runner's processes`);
  }
  return {
    host: env.HOST ?? '127.0.0.1',
    port: number(env, 'PORT', 4597, 0, 65535),
    functions: functions.length ? functions : 'all',
    api: oneOf(env, 'RUNNER_API', ['runner', 'cyber-dojo'] as const, 'runner'),
    engine: oneOf(env, 'RUNNER_ENGINE', ['docker', 'swarm'] as const, 'docker'),
    cyberDojoKataSeconds: number(env, 'CYBER_DOJO_KATA_SECONDS', 7200, 60, 604800),
    cyberDojoCleanHome: oneOf(env, 'CYBER_DOJO_CLEAN_HOME', ['false', 'true'] as const, 'false') === 'true',
    runnerName,
    bodyLimitBytes: size(env, 'BODY_LIMIT', '8m', 1024, 1024 ** 3),
    reapSchedule: reap === 'off' ? null : reap,
    uidBase: number(env, 'AVATAR_UID_BASE', 2_000_000, 100_000, 2 ** 30),
    runsAtOnce: number(env, 'KATA_RUNS_AT_ONCE', 4, 1, 64),
    avatarLockSeconds: number(env, 'AVATAR_LOCK_SECONDS', 60, 1, 600),
    // A full kata (64 avatars, 4 running) never sees these.
    runQueueLimit: number(env, 'RUN_QUEUE_LIMIT', 512, 1, 100_000),
    kataQueueLimit: number(env, 'KATA_QUEUE_LIMIT', 64, 1, 10_000),
    runQueueWaitMs: number(env, 'RUN_QUEUE_SECONDS', 120, 1, 3600) * 1000,
    tokens: tokens(env),
    maxEventLoopDelayMs: number(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, 10, 60_000),
    maxHeapBytes: size(env, 'MAX_HEAP', '1g', 1024 ** 2, 64 * 1024 ** 3),
    imagePullTimeoutMs: number(env, 'IMAGE_PULL_TIMEOUT_SECONDS', 120, 1, 3600) * 1000,
    startPointsDir: env.START_POINTS_DIR ?? `${projectRoot}deploy/start-points`,
    imagePrefix: env.RUNNER_IMAGE_PREFIX ?? 'cyber-dojo-runner/',
    sha,
    helperFile: env.KATA_HELPER ?? `${projectRoot}dist/kata-helper`,
    pagesDir: env.PAGES_DIR ?? `${projectRoot}dist/pages`,
    kataNewUrl: url(env, 'KATA_NEW_URL'),
    limits,
  };
}
