// The Docker engine behind a small interface. Every call is logged with the container
// it touched; engine failures become EngineErrors (not_found, conflict, invalid,
// unavailable, failed) so that callers never see dockerode's shapes or messages.
import Docker from 'dockerode';
import type { Duplex } from 'node:stream';
import { extract } from 'tar-stream';
import type { FastifyBaseLogger } from 'fastify';
import { EngineError } from './errors.ts';
import type { Metrics } from './metrics.ts';

// An engine call slower than this is logged at warn, not debug.
const SLOW_MS = 1000;

export interface ContainerInfo {
  id: string;
  name: string;
  image: string; // the image id the container runs
  labels: Record<string, string>;
  running: boolean;
  state: string; // created, running, exited, ...
  created: string; // RFC 3339 with nanoseconds: orders creations exactly
}

export interface ContainerSummary {
  id: string;
  labels: Record<string, string>;
  state: string; // created, running, exited, ...
  created: number; // unix seconds
}

// A long-lived exec: its stdin stays open for writing, its output arrives as it comes.
export interface SessionOptions {
  cmd: string[];
  user: string;
  onStdout: (chunk: Buffer) => void;
  onStderr: (chunk: Buffer) => void;
  onClose: (error?: Error) => void; // once, when the process's output has ended
}

export interface ExecSession {
  write(chunk: Buffer): void;
  close(): void; // ends its stdin, and its stream
}

export interface ImageInfo {
  id: string;
  labels: Record<string, string>;
}

export interface Engine {
  // Whether a container's tmpfs mounts can be owned by a uid of its choosing (Swarm's
  // cannot: then each avatar makes its own folders, see prepareAvatars).
  readonly ownsMounts: boolean;
  ping(timeoutMs: number): Promise<void>;
  inspectContainer(name: string): Promise<ContainerInfo | null>;
  listContainers(labels: string[]): Promise<ContainerSummary[]>;
  createContainer(options: Docker.ContainerCreateOptions): Promise<string>;
  startContainer(id: string): Promise<void>;
  // Force-removes; false when the container was already gone or being removed.
  removeContainer(id: string): Promise<boolean>;
  openSession(container: string, options: SessionOptions): Promise<ExecSession>;
  // Writes a tar's contents into a container's file system (created or running).
  putArchive(container: string, path: string, tar: Buffer): Promise<void>;
  // A regular file of a container's file system (at most maxBytes of it); null when it has none.
  readFile(container: string, path: string, maxBytes: number): Promise<Buffer | null>;
  inspectImage(name: string): Promise<ImageInfo | null>;
  pullImage(name: string, timeoutMs: number): Promise<void>;
}

const UNAVAILABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);

export function engineError(e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  const err = e as { statusCode?: number; code?: string; message?: string; json?: { message?: string } };
  const message = err.json?.message ?? err.message ?? String(e);
  if (err.statusCode === 404) return new EngineError('not_found', message, 404);
  if (err.statusCode === 409) return new EngineError('conflict', message, 409);
  if (err.statusCode === 400) return new EngineError('invalid', message, 400);
  if (err.statusCode === 403) return new EngineError('forbidden', message, 403);
  if (err.code && UNAVAILABLE.has(err.code)) return new EngineError('unavailable', message);
  return new EngineError('failed', message, err.statusCode);
}

const labelsOf = (labels: Record<string, string> | null | undefined) => labels ?? {};

// Runs one engine call, logging it with the container (or image) it touched: at debug,
// or at warn when it was slow or failed (unless the caller expects that failure).
export async function engineCall<T>(log: FastifyBaseLogger, metrics: Metrics, op: string, target: string, fn: () => Promise<T>, tolerate: EngineError['kind'][] = []): Promise<T> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  try {
    const result = await fn();
    metrics.engineSeconds.observe({ op }, ms() / 1000);
    log[ms() > SLOW_MS ? 'warn' : 'debug']({ engine: op, target, ms: ms() }, 'engine call');
    return result;
  } catch (e) {
    const error = engineError(e);
    metrics.engineSeconds.observe({ op }, ms() / 1000);
    metrics.engineErrors.inc({ op, kind: error.kind });
    log[tolerate.includes(error.kind) ? 'debug' : 'warn']({ engine: op, target, ms: ms(), kind: error.kind, err: error.message }, 'engine call failed');
    throw error;
  }
}

// An engine call for what may not be there: null when it is not (logged at debug).
export async function engineFind<T>(log: FastifyBaseLogger, metrics: Metrics, op: string, target: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await engineCall(log, metrics, op, target, fn, ['not_found']);
  } catch (e) {
    if (e instanceof EngineError && e.kind === 'not_found') return null;
    throw e;
  }
}

export class DockerEngine implements Engine {
  private readonly docker: Docker;
  readonly ownsMounts = true;

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly metrics: Metrics,
    docker?: Docker,
  ) {
    // With no options docker-modem honours DOCKER_HOST, else the local socket.
    this.docker = docker ?? new Docker();
  }

  private call<T>(op: string, target: string, fn: () => Promise<T>, tolerate: EngineError['kind'][] = []): Promise<T> {
    return engineCall(this.log, this.metrics, op, target, fn, tolerate);
  }

  private find<T>(op: string, target: string, fn: () => Promise<T>): Promise<T | null> {
    return engineFind(this.log, this.metrics, op, target, fn);
  }

  async ping(timeoutMs: number): Promise<void> {
    // dockerode's types lack ping's options; docker-modem honours abortSignal.
    const ping = this.docker.ping.bind(this.docker) as (options: { abortSignal: AbortSignal }) => Promise<unknown>;
    await this.call('ping', '-', () => ping({ abortSignal: AbortSignal.timeout(timeoutMs) }));
  }

  async inspectContainer(name: string): Promise<ContainerInfo | null> {
    const info = await this.find('container.inspect', name, () => this.docker.getContainer(name).inspect());
    return info && {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      image: info.Image,
      labels: labelsOf(info.Config.Labels),
      running: info.State.Running && !info.State.Paused,
      state: info.State.Status,
      created: info.Created,
    };
  }

  async listContainers(labels: string[]): Promise<ContainerSummary[]> {
    const list = await this.call(
      'container.list',
      labels.join(','),
      () => this.docker.listContainers({ all: true, filters: { label: labels } }),
    );
    return list.map((c) => ({ id: c.Id, labels: labelsOf(c.Labels), state: c.State, created: c.Created }));
  }

  async createContainer(options: Docker.ContainerCreateOptions): Promise<string> {
    const container = await this.call('container.create', options.name ?? '-', () => this.docker.createContainer(options), ['conflict']);
    return container.id;
  }

  async startContainer(id: string): Promise<void> {
    await this.call('container.start', id, () => this.docker.getContainer(id).start());
  }

  async removeContainer(id: string): Promise<boolean> {
    try {
      await this.call('container.remove', id, () => this.docker.getContainer(id).remove({ force: true, v: true }), ['not_found', 'conflict']);
      return true;
    } catch (e) {
      // 404: already gone; 409: another sweep is removing it. Both are done, but not by us.
      if (e instanceof EngineError && (e.kind === 'not_found' || e.kind === 'conflict')) return false;
      throw e;
    }
  }

  async openSession(containerId: string, options: SessionOptions): Promise<ExecSession> {
    return this.call('container.exec', containerId, async () => {
      const exec = await this.docker.getContainer(containerId).exec({
        Cmd: options.cmd,
        User: options.user,
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
      });
      const stream = (await exec.start({ hijack: true, stdin: true })) as Duplex;
      demux(stream, options);
      return {
        write: (chunk: Buffer) => void stream.write(chunk),
        // Its stdin's end tells the process to stop; the socket goes soon after regardless.
        close: () => {
          stream.end();
          setTimeout(() => stream.destroy(), 1000).unref();
        },
      };
    });
  }

  readFile(containerId: string, path: string, maxBytes: number): Promise<Buffer | null> {
    return this.find('container.get_archive', containerId, async () => {
      const stream = (await this.docker.getContainer(containerId).getArchive({ path })) as NodeJS.ReadableStream;
      return await new Promise<Buffer | null>((resolve, reject) => {
        const tar = extract();
        let found: Buffer | null = null;
        tar.on('entry', (header, entry, next) => {
          const chunks: Buffer[] = [];
          let size = 0;
          entry.on('data', (chunk) => {
            if (size < maxBytes) chunks.push(chunk as Buffer);
            size += (chunk as Buffer).length;
          });
          entry.on('end', () => {
            if (found === null && header.type === 'file') found = Buffer.concat(chunks).subarray(0, maxBytes);
            next();
          });
        });
        tar.on('finish', () => resolve(found)).on('error', reject);
        stream.on('error', reject);
        stream.pipe(tar);
      });
    });
  }

  async putArchive(containerId: string, path: string, tar: Buffer): Promise<void> {
    await this.call('container.put_archive', containerId, () => this.docker.getContainer(containerId).putArchive(tar, { path }));
  }

  async inspectImage(name: string): Promise<ImageInfo | null> {
    const info = await this.find('image.inspect', name, () => this.docker.getImage(name).inspect());
    return info && { id: info.Id, labels: labelsOf(info.Config?.Labels) };
  }

  async pullImage(name: string, timeoutMs: number): Promise<void> {
    const abortSignal = AbortSignal.timeout(timeoutMs);
    await this.call('image.pull', name, async () => {
      const stream = await this.docker.pull(name, { abortSignal });
      await new Promise<void>((resolve, reject) => {
        abortSignal.addEventListener('abort', () => reject(new EngineError('failed', `pull took over ${timeoutMs} ms`)), { once: true });
        this.docker.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) => {
          const failure = err?.message ?? events.find((e) => e.error)?.error;
          if (failure) reject(new EngineError('failed', failure));
          else resolve();
        });
      });
    });
  }
}

// Splits Docker's multiplexed stream ([type, 0, 0, 0, size u32 BE] + payload frames)
// as it arrives, and says once when it has ended.
function demux(stream: Duplex, options: SessionOptions): void {
  let pending: Buffer = Buffer.alloc(0);
  let closed = false;
  const finish = (error?: Error) => {
    if (closed) return;
    closed = true;
    options.onClose(error && engineError(error));
  };
  stream.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 8) {
      const size = pending.readUInt32BE(4);
      if (pending.length < 8 + size) break;
      const toStderr = pending[0] === 2;
      const payload = pending.subarray(8, 8 + size);
      pending = pending.subarray(8 + size);
      try {
        (toStderr ? options.onStderr : options.onStdout)(payload);
      } catch (e) {
        stream.destroy(e as Error);
        return;
      }
    }
  });
  stream.once('end', () => finish());
  stream.once('error', (e) => finish(e));
  stream.once('close', () => finish());
}
