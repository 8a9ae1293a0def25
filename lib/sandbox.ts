// Node's side of sandbox.sh: one exec per avatar command, files in as a tar on stdin,
// answers back as records on stdout.
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { pack } from 'tar-stream';
import type { AvatarName, Files } from './args.ts';
import type { Engine } from './engine.ts';
import { errors } from './errors.ts';

const SCRIPT = readFileSync(new URL('./sandbox.sh', import.meta.url), 'utf8');

// All a run can answer is bounded by sandbox.sh (two streams and 32 files of 50 KiB,
// plus names); more than this means something is wrong, and the exec is cut.
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const MAX_EXEC_MS = 150_000;

export const MAX_RETURNED_FILES = 16;
export const MAX_DELETED_NAMES = 1000;

export interface Reply {
  kind: string;
  name: string;
  nameIsUtf8: boolean; // a run may create files whose names are not UTF-8
  flag: string;
  content: Buffer;
}

export interface Target {
  containerId: string;
  avatar: AvatarName;
  uid: number;
}

// Parses `kind NUL name NUL flag NUL length NUL <length bytes>` records as they arrive.
export class RecordParser {
  private buffer: Buffer = Buffer.alloc(0);
  private total = 0;
  readonly records: Reply[] = [];

  constructor(private readonly onRecord: (record: Reply) => void = () => {}) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.total > MAX_ANSWER_BYTES) throw new Error(`sandbox answer over ${MAX_ANSWER_BYTES} bytes`);
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      const fields: Buffer[] = [];
      let at = 0;
      while (fields.length < 4) {
        const nul = this.buffer.indexOf(0, at);
        if (nul < 0) return;
        fields.push(this.buffer.subarray(at, nul));
        at = nul + 1;
      }
      const [kind, name, flag, size] = fields.map(String) as [string, string, string, string];
      const length = Number(size);
      if (!/^\d+$/.test(size) || !Number.isSafeInteger(length)) throw new Error(`bad record length ${size}`);
      if (this.buffer.length < at + length) return;
      const record = { kind, name, nameIsUtf8: isUtf8(fields[1]!), flag, content: this.buffer.subarray(at, at + length) };
      this.buffer = this.buffer.subarray(at + length);
      this.records.push(record);
      this.onRecord(record);
    }
  }
}

// A tar of the files, each parent folder as its own entry first: tar then replaces
// a symlink the avatar planted where a folder should be, instead of following it.
export async function filesTar(files: Files): Promise<Buffer> {
  const tar = pack();
  const chunks: Buffer[] = [];
  tar.on('data', (chunk) => chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve, reject) => tar.on('end', () => resolve()).on('error', reject));
  const mtime = new Date();
  const folders = new Set<string>();
  for (const name of Object.keys(files)) {
    const segments = name.split('/');
    for (let i = 1; i < segments.length; i++) folders.add(segments.slice(0, i).join('/'));
  }
  for (const folder of [...folders].sort()) tar.entry({ name: folder, type: 'directory', mode: 0o755, mtime });
  for (const [name, content] of Object.entries(files)) tar.entry({ name, mode: 0o644, mtime }, content);
  tar.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface CommandOptions {
  args?: string[];
  stdin?: Buffer;
  env?: string[];
  onRecord?: (record: Reply) => void;
  signal?: AbortSignal;
}

// Runs one sandbox.sh command as root in the kata container. Its answer must end
// with an `end` record: anything less is a runner fault, raised as such.
export async function command(engine: Engine, target: Target, name: string, options: CommandOptions = {}): Promise<Reply[]> {
  const parser = new RecordParser(options.onRecord);
  const signals = [AbortSignal.timeout(MAX_EXEC_MS), ...(options.signal ? [options.signal] : [])];
  const { exitCode, stderr } = await engine.exec(target.containerId, {
    cmd: ['bash', '-c', SCRIPT, 'cyber-dojo-sandbox', name, target.avatar, String(target.uid), ...(options.args ?? [])],
    user: '0:0',
    env: options.env,
    stdin: options.stdin,
    onStdout: (chunk) => parser.push(chunk),
    stderrLimit: 4096,
    signal: AbortSignal.any(signals),
  });
  const last = parser.records.at(-1);
  if (exitCode !== 0 || last?.kind !== 'end') {
    throw new SandboxFault(`${name} for ${target.avatar}: exit ${exitCode}, last record ${last?.kind}, stderr: ${stderr.toString('utf8')}`, parser.records);
  }
  return parser.records;
}

export class SandboxFault extends Error {
  constructor(message: string, readonly records: Reply[]) {
    super(message);
    this.name = 'SandboxFault';
  }
}

const failure = (records: Reply[]) => records.find((r) => r.kind === 'failed');
const failureText = (record: Reply) => `${record.name}: ${record.content.toString('utf8')}`;

export async function avatarNew(engine: Engine, target: Target, files: Files): Promise<void> {
  const records = await command(engine, target, 'avatar_new', { stdin: await filesInput(files, []) });
  if (records.some((r) => r.kind === 'exists')) throw errors.avatarExists();
  const failed = failure(records);
  if (failed) throw errors.server(`avatar_new: ${failureText(failed)}`);
}

export async function avatarOld(engine: Engine, target: Target): Promise<void> {
  const records = await command(engine, target, 'avatar_old');
  if (records.some((r) => r.kind === 'missing')) throw errors.avatarNotFound();
  const failed = failure(records);
  if (failed) throw errors.server(`avatar_old: ${failureText(failed)}`);
}

export async function avatarExists(engine: Engine, target: Target): Promise<boolean> {
  const records = await command(engine, target, 'avatar_exists');
  return records.some((r) => r.kind === 'yes');
}

export async function killAll(engine: Engine, target: Target): Promise<void> {
  await command(engine, target, 'kill_all');
}

// stdin of `avatar_new` and `run`: the names to delete, each NUL-terminated, an empty
// name, then the tar.
export async function filesInput(changed: Files, deleted: string[]): Promise<Buffer> {
  const names = Buffer.from(deleted.map((name) => `${name}\0`).join('') + '\0', 'utf8');
  return Buffer.concat([names, await filesTar(changed)]);
}

export interface Text {
  content: string;
  truncated: boolean;
}

export interface RunRequest {
  changed: Files;
  deleted: string[];
  maxSeconds: number;
  env: string[];
}

export interface RunOutcome {
  stdout: Text;
  stderr: Text;
  status: number;
  timedOut: boolean;
  oomKilled: boolean;
  created: { [name: string]: Text };
  changed: { [name: string]: Text };
  deleted: string[];
  durationMs: number;
  fault?: string; // a runner-side reason the run cannot be classified
}

// The host's own clock backs up the run's clock in the container (sandbox.sh's
// reaper): a run still going this long after its limit is killed from a second exec.
const WATCHDOG_GRACE_MS = 1000;
// And an exec that still has not come back this long after that is abandoned.
const ABANDON_AFTER_MS = 5000;

const decoder = new TextDecoder('utf-8', { fatal: false });
const text = (reply: Reply | undefined): Text => ({ content: decoder.decode(reply?.content ?? Buffer.alloc(0)), truncated: reply?.flag === '1' });

export async function runTests(
  engine: Engine,
  target: Target,
  request: RunRequest,
  log: { error: (obj: object, msg: string) => void },
): Promise<RunOutcome | 'avatar_missing'> {
  const abandon = new AbortController();
  const limitMs = request.maxSeconds * 1000;
  let watchdog: NodeJS.Timeout | undefined;
  let abandonTimer: NodeJS.Timeout | undefined;
  let watchdogFired = false;
  let startedAt = 0;
  let finishedAt = 0;
  const onRecord = (reply: Reply) => {
    if (reply.kind === 'started') {
      startedAt = performance.now();
      watchdog = setTimeout(() => {
        watchdogFired = true;
        killAll(engine, target).catch((e: unknown) => log.error({ err: e, avatar: target.avatar }, 'watchdog kill failed'));
        abandonTimer = setTimeout(() => abandon.abort(), ABANDON_AFTER_MS);
      }, limitMs + WATCHDOG_GRACE_MS);
    } else if (reply.kind === 'finished') {
      finishedAt = performance.now();
      clearTimeout(watchdog);
    }
  };

  let replies: Reply[];
  try {
    replies = await command(engine, target, 'run', {
      args: [String(request.maxSeconds), String(MAX_RETURNED_FILES), String(MAX_DELETED_NAMES)],
      stdin: await filesInput(request.changed, request.deleted),
      env: request.env,
      onRecord,
      signal: abandon.signal,
    });
  } catch (e) {
    if (!watchdogFired) throw e;
    log.error({ err: e, avatar: target.avatar }, 'run abandoned after its watchdog fired');
    replies = e instanceof SandboxFault ? e.records : [];
  } finally {
    clearTimeout(watchdog);
    clearTimeout(abandonTimer);
  }

  const find = (kind: string) => replies.find((r) => r.kind === kind);
  const named = (kind: string) => replies.filter((r) => r.kind === kind && r.nameIsUtf8);
  if (find('missing')) return 'avatar_missing';
  const finished = find('finished');
  const hostMs = finished ? finishedAt - startedAt : performance.now() - startedAt;
  const containerMs = finished ? Number(finished.name) : hostMs;
  const status = finished ? Number(finished.flag) : 137;
  const timedOut = watchdogFired || containerMs >= limitMs || hostMs >= limitMs;
  const failures = replies.filter((r) => r.kind === 'failed');
  const writeFailure = failures.find((r) => r.name === 'tar');
  return {
    // Files that could not be written are the run's answer: it did not run.
    stdout: text(find('stdout')),
    stderr: writeFailure ? text(writeFailure) : text(find('stderr')),
    status: writeFailure ? 1 : status,
    timedOut: !writeFailure && timedOut,
    // The kernel's OOM killer fired during the run, or the kata's memory guard chose it.
    oomKilled: !timedOut && status === 137 && (Number(find('oom_kills')?.name ?? 0) > 0 || find('memory_guard') !== undefined),
    created: Object.fromEntries(named('created').map((r) => [r.name, text(r)])),
    changed: Object.fromEntries(named('changed').map((r) => [r.name, text(r)])),
    deleted: named('deleted').map((r) => r.name),
    durationMs: Math.round(containerMs),
    fault: failures.length ? failures.map(failureText).join('; ') : !finished && !timedOut ? 'no result' : undefined,
  };
}
