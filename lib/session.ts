// One long-lived kata-helper per kata and runner process (lib/helper/kata-helper.c):
// started once through the engine's exec API, it takes framed requests on its stdin
// and answers on its stdout, so a [test] costs no exec of its own. A session that ends
// (the kata removed or expired, the engine or the helper restarted) is opened again by
// the next request for that kata.
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { pack } from 'tar-stream';
import type { Engine, ExecSession } from './engine.ts';
import { errors } from './errors.ts';
import type { Kata, Katas } from './katas.ts';

// Where the runner puts the helper in every kata: a folder only root can enter.
const HELPER_DIR = '.cyber-dojo-runner';
const HELLO_MS = 10_000;
// All an answer can hold is bounded by the helper (two streams and 32 files of 50 KiB,
// 1000 deleted names); more than this means something is wrong, and the session goes.
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

// The helper binary, as built by the set-up, and the tar that carries it into a kata.
export class Helper {
  readonly path: string; // inside a kata
  private tarred?: Promise<Buffer>;

  constructor(private readonly binary: Buffer) {
    const hash = createHash('sha256').update(binary).digest('hex').slice(0, 12);
    this.path = `/${HELPER_DIR}/kata-helper-${hash}`;
  }

  static load(file: string): Helper {
    try {
      return new Helper(readFileSync(file));
    } catch (e) {
      throw new Error(`${file}: the kata helper is not built (deploy/setup.sh builds it): ${(e as Error).message}`);
    }
  }

  tar(): Promise<Buffer> {
    this.tarred ??= new Promise((resolve, reject) => {
      const tar = pack();
      const chunks: Buffer[] = [];
      tar.on('data', (chunk) => chunks.push(chunk as Buffer)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
      const owner = { uid: 0, gid: 0, mtime: new Date(0) };
      tar.entry({ name: HELPER_DIR, type: 'directory', mode: 0o700, ...owner });
      tar.entry({ name: this.path.slice(1), mode: 0o700, ...owner }, this.binary);
      tar.finalize();
    });
    return this.tarred;
  }
}

export interface Reply {
  kind: string;
  name: string;
  nameIsUtf8: boolean;
  flag: string;
  content: Buffer;
}

// The session ended before this request was answered.
export class SessionLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionLost';
  }
}

export type RequestType = 'run' | 'avatar_new' | 'avatar_old' | 'avatar_exists' | 'kill' | 'prepare';
const TYPES: Record<RequestType, string> = { run: 'r', avatar_new: 'n', avatar_old: 'o', avatar_exists: 'e', kill: 'k', prepare: 'p' };

// A request's fields: text, numbers or bytes; lists are a count field, then their items.
export type Field = string | number | Buffer;

function encode(id: number, type: RequestType, fields: Field[]): Buffer {
  const parts = fields.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(String(f), 'utf8')));
  const length = 5 + parts.reduce((sum, p) => sum + 4 + p.length, 0);
  const frame = Buffer.allocUnsafe(4 + length);
  frame.writeUInt32BE(length, 0);
  frame.writeUInt32BE(id, 4);
  frame.write(TYPES[type], 8, 'latin1');
  let at = 9;
  for (const part of parts) {
    frame.writeUInt32BE(part.length, at);
    part.copy(frame, at + 4);
    at += 4 + part.length;
  }
  return frame;
}

function fields(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    if (at + 4 > body.length) throw new Error('truncated field');
    const length = body.readUInt32BE(at);
    if (at + 4 + length > body.length) throw new Error('truncated field');
    out.push(body.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
}

function replies(body: Buffer): Reply[] {
  const f = fields(body);
  if (f.length % 4) throw new Error('records of four fields expected');
  const out: Reply[] = [];
  for (let i = 0; i < f.length; i += 4) {
    out.push({ kind: f[i]!.toString('latin1'), name: f[i + 1]!.toString('utf8'), nameIsUtf8: isUtf8(f[i + 1]!), flag: f[i + 2]!.toString('latin1'), content: f[i + 3]! });
  }
  return out;
}

// Cuts the helper's stdout into frames as it arrives, copying each chunk once.
class FrameReader {
  private head = Buffer.alloc(4);
  private headBytes = 0;
  private frame: Buffer | null = null;
  private frameBytes = 0;

  constructor(private readonly onFrame: (id: number, type: string, body: Buffer) => void) {}

  push(chunk: Buffer): void {
    for (let at = 0; at < chunk.length; ) {
      if (!this.frame) {
        const n = Math.min(4 - this.headBytes, chunk.length - at);
        chunk.copy(this.head, this.headBytes, at, at + n);
        this.headBytes += n;
        at += n;
        if (this.headBytes < 4) return;
        const length = this.head.readUInt32BE(0);
        if (length < 5 || length > MAX_ANSWER_BYTES) throw new Error(`helper frame of ${length} bytes`);
        this.frame = Buffer.allocUnsafe(length);
        this.frameBytes = 0;
        this.headBytes = 0;
      }
      const n = Math.min(this.frame.length - this.frameBytes, chunk.length - at);
      chunk.copy(this.frame, this.frameBytes, at, at + n);
      this.frameBytes += n;
      at += n;
      if (this.frameBytes === this.frame.length) {
        const frame = this.frame;
        this.frame = null;
        this.onFrame(frame.readUInt32BE(0), String.fromCharCode(frame[4]!), frame.subarray(5));
      }
    }
  }
}

interface Pending {
  resolve: (replies: Reply[]) => void;
  reject: (e: Error) => void;
  onStarted?: () => void;
}

export interface RequestOptions {
  onStarted?: () => void; // a run's script began
  signal?: AbortSignal; // gives up waiting (the helper's worker goes on)
}

export class Session {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exec?: ExecSession;
  private ended?: Error;
  private hello?: (error?: Error) => void;
  shell = ''; // what runs cyber-dojo.sh in this kata
  landlock = 0; // the kernel's Landlock ABI, 0 when it has none

  private constructor(
    readonly kata: Kata,
    private readonly log: FastifyBaseLogger,
    private readonly onEnd: (session: Session) => void,
  ) {}

  get closed(): boolean {
    return this.ended !== undefined;
  }

  static async open(engine: Engine, kata: Kata, helper: Helper, log: FastifyBaseLogger, onEnd: (s: Session) => void): Promise<Session> {
    const session = new Session(kata, log, onEnd);
    const reader = new FrameReader((id, type, body) => session.onFrame(id, type, body));
    const helloed = new Promise<void>((resolve, reject) => {
      session.hello = (error) => (error ? reject(error) : resolve());
    });
    session.exec = await engine.openSession(kata.containerId, {
      cmd: [helper.path, 'serve'],
      user: '0:0',
      onStdout: (chunk) => reader.push(chunk),
      onStderr: (chunk) => log.warn({ kataId: kata.kataId, containerId: kata.containerId, helper: chunk.toString('utf8').trim() }, 'kata helper said'),
      onClose: (error) => session.end(error ?? new SessionLost('the kata helper ended')),
    });
    const timer = setTimeout(() => session.end(new SessionLost(`no hello from the kata helper within ${HELLO_MS} ms`)), HELLO_MS);
    try {
      await helloed;
    } finally {
      clearTimeout(timer);
    }
    return session;
  }

  private onFrame(id: number, type: string, body: Buffer): void {
    if (type === 'h') {
      const [, shell, landlock] = fields(body);
      this.shell = shell?.toString('utf8') ?? '';
      this.landlock = Number(landlock ?? 0);
      // Below ABI 6 a run's abstract sockets and ports are not its own (README: threat model).
      if (this.landlock < 6) this.log.warn({ kataId: this.kata.kataId, landlock: this.landlock }, 'this kernel confines runs less than the runner can');
      this.hello?.();
      return;
    }
    const pending = this.pending.get(id);
    if (!pending) return; // given up on
    if (type === 's') pending.onStarted?.();
    else if (type === 'a') {
      this.pending.delete(id);
      pending.resolve(replies(body));
    }
  }

  private end(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    this.hello?.(error);
    for (const pending of this.pending.values()) pending.reject(new SessionLost(error.message));
    this.pending.clear();
    this.exec?.close();
    this.log.info({ kataId: this.kata.kataId, containerId: this.kata.containerId, why: error.message }, 'kata session ended');
    this.onEnd(this);
  }

  request(type: RequestType, fields: Field[], options: RequestOptions = {}): Promise<Reply[]> {
    if (this.ended) return Promise.reject(new SessionLost(this.ended.message));
    const id = this.nextId++;
    return new Promise<Reply[]>((resolve, reject) => {
      const onAbort = () => {
        this.pending.delete(id);
        reject(new SessionLost(`${type}: no answer in time`));
      };
      const done = () => options.signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (r) => (done(), resolve(r)),
        reject: (e) => (done(), reject(e)),
        onStarted: options.onStarted,
      });
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.exec!.write(encode(id, type, fields));
    });
  }

  close(): void {
    this.end(new SessionLost('the runner closed the session'));
  }
}

// The open sessions of this runner process, one per live kata.
export class Sessions {
  private readonly byKata = new Map<string, Promise<Session>>();

  constructor(
    private readonly engine: Engine,
    private readonly katas: Katas,
    private readonly helper: Helper,
    private readonly log: FastifyBaseLogger,
    // What a new session does first in a kata (its avatars' folders, on some engines).
    private readonly prepare?: (session: Session) => Promise<void>,
  ) {}

  // A session with the live kata, kata_id:!exists when there is none. An open session
  // is trusted: the kata's container is running while it is open.
  async get(kataId: string): Promise<Session> {
    const known = this.byKata.get(kataId);
    if (known) {
      const session = await known.catch(() => null);
      if (session && !session.closed && session.kata.deadline.getTime() > Date.now()) return session;
      if (this.byKata.get(kataId) === known) this.byKata.delete(kataId);
      session?.close();
    }
    const opening = this.open(kataId);
    this.byKata.set(kataId, opening);
    opening.catch(() => this.byKata.get(kataId) === opening && this.byKata.delete(kataId));
    return opening;
  }

  private async open(kataId: string): Promise<Session> {
    const forget = (s: Session) => void this.byKata.get(kataId)?.then((known) => known === s && this.byKata.delete(kataId), () => {});
    for (let attempt = 0; ; attempt++) {
      const kata = await this.katas.live(kataId);
      try {
        const session = await Session.open(this.engine, kata, this.helper, this.log, forget);
        await this.prepare?.(session);
        return session;
      } catch (e) {
        // A kata made by another runner, or before an upgrade, has no such helper yet.
        if (attempt > 0 || !(await this.katas.find(kataId))?.live) throw e;
        await this.engine.putArchive(kata.containerId, '/', await this.helper.tar());
      }
    }
  }

  // Runs work in the live kata's session. A kata that ends under it answers
  // kata_id:!exists, as it would have a moment earlier.
  async with<T>(kataId: string, work: (session: Session) => Promise<T>): Promise<T> {
    const session = await this.get(kataId);
    try {
      return await work(session);
    } catch (e) {
      if (e instanceof SessionLost && !(await this.katas.find(kataId))?.live) throw errors.kataNotFound();
      throw e;
    }
  }

  // The kata is gone (kata_old, reaped): its session with it.
  forget(kataId: string): void {
    const known = this.byKata.get(kataId);
    this.byKata.delete(kataId);
    void known?.then((s) => s.close(), () => {});
  }

  closeAll(): void {
    for (const kataId of [...this.byKata.keys()]) this.forget(kataId);
  }
}
