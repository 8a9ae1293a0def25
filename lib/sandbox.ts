// The avatar commands, as requests to the kata's helper (lib/session.ts), and what
// their answers mean. The helper's records: kind, name, flag, content.
import type { AvatarName, Files } from './args.ts';
import { errors } from './errors.ts';
import type { Field, Reply, Session } from './session.ts';

export const MAX_RETURNED_FILES = 16;
export const MAX_DELETED_NAMES = 1000;
// How long the runner waits for an answer to anything but a run.
const MAX_COMMAND_MS = 150_000;

// Whom a request is for: an avatar (its own uid and group, /sandboxes/<avatar>,
// /home/<avatar>), or the user of cyber-dojo's own images (sandbox, 41966:51966, /sandbox).
export interface Target {
  avatar: AvatarName | 'sandbox';
  uid: number;
  gid: number;
  sandbox: string;
  home: string;
  // How long a request waits in the kata for the avatar's lock, which another runner
  // process's request may hold; then it answers busy.
  lockSeconds: number;
  ports: [number, number]; // the TCP ports its runs may bind and connect to; [0, 0]: any
}

const who = (target: Target): Field[] => [target.avatar, target.uid, target.gid, target.lockSeconds, target.sandbox, target.home];
// The avatar's lock in the kata, held by another runner process's request past our wait.
const busy = (target: Target) => errors.runBusy(503, target.lockSeconds, `${target.avatar}'s lock in the kata stayed taken for ${target.lockSeconds} s`);

const filesFields = (files: Files): Field[] => {
  const entries = Object.entries(files);
  return [entries.length, ...entries.flatMap(([name, content]) => [name, Buffer.from(content, 'utf8')])];
};

const failure = (records: Reply[]) => records.find((r) => r.kind === 'failed');
const failureText = (record: Reply) => `${record.name}: ${record.content.toString('utf8')}`;

// A command's answer must end with an `end` record; `busy` is the avatar's lock, held
// too long by another request; `failed` is the kata's fault, not the caller's.
async function command(session: Session, type: 'avatar_new' | 'avatar_old' | 'avatar_exists' | 'kill', target: Target, more: Field[] = []): Promise<Reply[]> {
  const records = await session.request(type, [...who(target), ...more], { signal: AbortSignal.timeout(MAX_COMMAND_MS) });
  if (records.at(-1)?.kind !== 'end') throw errors.server(`${type} for ${target.avatar}: no end record`);
  if (records.some((r) => r.kind === 'busy')) throw busy(target);
  const failed = failure(records);
  if (failed) throw errors.server(`${type} for ${target.avatar}: ${failureText(failed)}`);
  return records;
}

export async function avatarNew(session: Session, target: Target, files: Files): Promise<void> {
  const records = await command(session, 'avatar_new', target, filesFields(files));
  if (records.some((r) => r.kind === 'exists')) throw errors.avatarExists();
}

export async function avatarOld(session: Session, target: Target): Promise<void> {
  const records = await command(session, 'avatar_old', target);
  if (records.some((r) => r.kind === 'missing')) throw errors.avatarNotFound();
}

// Each avatar's sandbox and home, made by the avatar itself where the engine could not
// mount them as its own (a Swarm kata).
export async function prepareAvatars(session: Session, targets: Target[]): Promise<void> {
  const records = await session.request('prepare', [targets.length, ...targets.flatMap((t) => [t.avatar, t.uid, t.sandbox, t.home])], { signal: AbortSignal.timeout(MAX_COMMAND_MS) });
  const failed = failure(records);
  if (failed || records.at(-1)?.kind !== 'end') throw errors.server(`prepare: ${failed ? failureText(failed) : 'no end record'}`);
}

export async function avatarExists(session: Session, target: Target): Promise<boolean> {
  const records = await command(session, 'avatar_exists', target);
  return records.some((r) => r.kind === 'yes');
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
  sync?: boolean; // the sandbox is to hold exactly `changed` (deleted is then ignored)
  cleanHome?: boolean; // its home and /tmp emptied first
  bashOnly?: boolean; // an image with no bash is a fault, not sh's to run
  umask?: number; // of the files written and of the script (default 0o077)
  writable?: string[]; // folders it may write in besides its sandbox and home
  homeFiles?: Files; // written into its home before the run
  limits: RunLimits;
}

// A run's processes' limits, set by the helper; those not given stay the kata's.
export interface RunLimits {
  nproc: number; // per uid
  nofile: number; // per process
  fsizeBytes: number;
  dataBytes?: number;
  stackBytes?: number;
  locks?: number;
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

// The host's own clock backs up the run's clock in the kata (the helper): a run still
// going this long after its limit is killed by a second request.
const WATCHDOG_GRACE_MS = 1000;
// And a run that still has not answered this long after that is given up on.
const ABANDON_AFTER_MS = 5000;

const decoder = new TextDecoder('utf-8', { fatal: false });
const text = (reply: Reply | undefined): Text => ({ content: decoder.decode(reply?.content ?? Buffer.alloc(0)), truncated: reply?.flag === '1' });

export async function runTests(
  session: Session,
  target: Target,
  request: RunRequest,
  log: { error: (obj: object, msg: string) => void },
): Promise<RunOutcome | 'avatar_missing'> {
  const abandon = new AbortController();
  let watchdog: NodeJS.Timeout | undefined;
  let abandonTimer: NodeJS.Timeout | undefined;
  let watchdogFired = false;
  const onStarted = () => {
    watchdog = setTimeout(() => {
      watchdogFired = true;
      command(session, 'kill', target).catch((e: unknown) => log.error({ err: e, avatar: target.avatar }, 'watchdog kill failed'));
      abandonTimer = setTimeout(() => abandon.abort(), ABANDON_AFTER_MS);
    }, request.maxSeconds * 1000 + WATCHDOG_GRACE_MS);
  };

  let replies: Reply[] = [];
  try {
    replies = await session.request(
      'run',
      [
        ...who(target),
        request.maxSeconds,
        MAX_RETURNED_FILES,
        MAX_DELETED_NAMES,
        ...target.ports,
        (request.sync ? 1 : 0) | (request.cleanHome ? 2 : 0) | (request.bashOnly ? 4 : 0),
        (request.umask ?? 0o077).toString(8),
        (request.writable ?? []).length,
        ...(request.writable ?? []),
        ...filesFields(request.homeFiles ?? {}),
        request.limits.nproc,
        request.limits.nofile,
        request.limits.fsizeBytes,
        request.limits.dataBytes ?? 0,
        request.limits.stackBytes ?? 0,
        request.limits.locks ?? 0,
        request.env.length,
        ...request.env,
        request.deleted.length,
        ...request.deleted,
        ...filesFields(request.changed),
      ],
      { onStarted, signal: abandon.signal },
    );
  } catch (e) {
    if (!watchdogFired) throw e;
    log.error({ err: e, avatar: target.avatar }, 'run abandoned after its watchdog fired');
  } finally {
    clearTimeout(watchdog);
    clearTimeout(abandonTimer);
  }

  const find = (kind: string) => replies.find((r) => r.kind === kind);
  const named = (kind: string) => replies.filter((r) => r.kind === kind && r.nameIsUtf8);
  if (find('missing')) return 'avatar_missing';
  if (find('busy')) throw busy(target);
  const finished = find('finished');
  const status = finished ? Number(finished.flag) : 137;
  // The clock that ended the run says so: the helper's, or the host's watchdog.
  const timedOut = watchdogFired || find('timed_out') !== undefined;
  const failures = replies.filter((r) => r.kind === 'failed');
  const writeFailure = failures.find((r) => r.name === 'write');
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
    durationMs: finished ? Number(finished.name) : request.maxSeconds * 1000,
    fault: failures.length ? failures.map(failureText).join('; ') : !finished && !timedOut ? 'no result' : undefined,
  };
}
