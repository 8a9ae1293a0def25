// Today's cyber-dojo runner API, spoken over katas (functions/run_cyber_dojo_sh and
// friends; README: today's cyber-dojo). Its callers send every file at each call; the
// id's kata container is kept warm, and the helper makes its sandbox hold exactly what
// was sent before cyber-dojo.sh runs. Colours come from the image's Ruby lambda,
// evaluated in a container of its own (deploy/rag-ruby), never in this process.
import { createHash } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { IMAGE_NAME_PATTERN } from './args.ts';
import type { Config } from './config.ts';
import type { Engine, ExecSession } from './engine.ts';
import { CyberDojoError, isEngineError } from './errors.ts';
import type { RunLimits, Target } from './sandbox.ts';

// The user cyber-dojo's images carry, as their runner runs it.
export const SANDBOX_USER = { name: 'sandbox', uid: 41966, gid: 51966, group: 'sandbox', sandbox: '/sandbox', home: '/home/sandbox' } as const;
export const MAX_SECONDS = 15; // theirs: a caller's max_seconds is capped at this
export const STATUS = { pulling: '141', timed_out: '142', faulty: '143' } as const;
export const RAG_LAMBDA_FILE = '/usr/local/bin/red_amber_green.rb';

const MiB = 1024 ** 2;
// Their runner's ulimits (source/server/runner.rb), which their start points expect: no
// data limit for clang's images only, whose -fsanitize=address maps terabytes. Their nproc
// is per uid, and so shared by all these katas on a node, as theirs is on a host.
export const runLimits = (imageName: string): RunLimits => ({
  nproc: 1024,
  nofile: 1024,
  fsizeBytes: 256 * MiB,
  stackBytes: 16 * MiB,
  locks: 1024,
  dataBytes: /^(cyberdojofoundation|ghcr\.io\/cyber-dojo-languages)\/clang/.test(imageName) ? 0 : 4096 * MiB,
});

export const target = (lockSeconds: number): Target => ({
  avatar: 'sandbox',
  uid: SANDBOX_USER.uid,
  gid: SANDBOX_USER.gid,
  sandbox: SANDBOX_USER.sandbox,
  home: SANDBOX_USER.home,
  lockSeconds,
  ports: [0, 0], // one user in the kata: nobody else's ports to keep it from
});

// Their dispatcher's check of a call's arguments, with its messages.
export function requireArgs(body: unknown, names: string[], optional: string[] = []): Record<string, unknown> {
  const args = body as Record<string, unknown>;
  const missing = names.filter((name) => !Object.hasOwn(args, name));
  if (missing.length) throw new CyberDojoError(400, `missing argument${missing.length > 1 ? 's' : ''}: ${missing.map((n) => `:${n}`).join(', ')}`);
  const unknown = Object.keys(args).filter((name) => !names.includes(name) && !optional.includes(name));
  if (unknown.length) throw new CyberDojoError(400, `unknown argument${unknown.length > 1 ? 's' : ''}: ${unknown.map((n) => `:${n}`).join(', ')}`);
  return args;
}

// The kata of an id and image: one container, kept warm between calls.
export const kataIdOf = (id: string, imageName: string) =>
  createHash('sha256').update(`cyber-dojo\0${id}\0${imageName}`).digest('hex').slice(0, 10).toUpperCase();

// Their images' names as they compare them: an explicit tag (`:latest` when none).
export function taggedImageName(name: string): string {
  if (name.includes('@')) return name;
  const lastSlash = name.lastIndexOf('/');
  return name.slice(lastSlash + 1).includes(':') ? name : `${name}:latest`;
}

const IMAGE_NAME = new RegExp(IMAGE_NAME_PATTERN);

// A call's image name: an image reference, answered as they compare them.
export function imageNameArg(value: unknown, arg: string): string {
  if (typeof value !== 'string' || !IMAGE_NAME.test(value)) throw new CyberDojoError(400, `${arg} is malformed`);
  return taggedImageName(value);
}

// The functions their start points' cyber-dojo.sh call (their image's BASH_ENV sources
// this file): written into the home before each run, as their runner does.
export const HOME_FILES = {
  'cyber_dojo_fs_cleaners.sh': [
    'function cyber_dojo_delete_dirs() { for dirname in "$@"; do rm -rf "${dirname}" 2> /dev/null || true; done; }',
    'function cyber_dojo_delete_files() { for filename in "$@"; do rm "${filename}" 2> /dev/null || true; done; }',
    'function cyber_dojo_reset_dirs() { for dirname in "$@"; do cyber_dojo_delete_dirs "${dirname}"; mkdir -p "${dirname}"; done; }',
    '',
  ].join('\n'),
};

// Pulls in the background: a run of an image not yet on the engine answers `pulling`.
export class Puller {
  private readonly pulling = new Set<string>();

  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
    private readonly log: FastifyBaseLogger,
  ) {}

  // 'pulled' when the image is there, else 'pulling' (and a pull is under way).
  async pull(imageName: string): Promise<'pulled' | 'pulling'> {
    if (await this.engine.inspectImage(imageName)) return 'pulled';
    if (!this.pulling.has(imageName)) {
      this.pulling.add(imageName);
      this.engine
        .pullImage(imageName, this.config.imagePullTimeoutMs)
        .catch((e: unknown) => this.log.warn({ imageName, err: (e as Error).message }, 'pull failed'))
        .finally(() => this.pulling.delete(imageName));
    }
    return 'pulling';
  }
}

export type Colour = { colour: 'red' | 'amber' | 'green' } | { fault: string };

// The evaluator's container: one per runner name, labelled apart from katas (the sweep
// never sees it); its Ruby reads requests on a long-lived exec's stdin.
const RAG_IMAGE = 'cyber-dojo-runner/rag-ruby';
export const RAG_LABEL = 'cyber-dojo-runner.rag_of';

export class RagLambdas {
  private session?: Promise<{ exec: ExecSession; pending: Map<number, (c: Colour) => void> }>;
  private nextId = 1;
  private readonly sources = new Map<string, Promise<string | null>>(); // by image id

  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
    private readonly log: FastifyBaseLogger,
  ) {}

  // The image's lambda source, read once per image from a kata of it.
  sourceOf(imageId: string, containerId: string): Promise<string | null> {
    let source = this.sources.get(imageId);
    if (!source) {
      source = this.engine.readFile(containerId, RAG_LAMBDA_FILE, 64 * 1024).then((b) => b && b.toString('utf8'));
      this.sources.set(imageId, source);
      source.catch(() => this.sources.delete(imageId));
    }
    return source;
  }

  async colour(source: string, stdout: string, stderr: string, status: number): Promise<Colour> {
    const { exec, pending } = await this.open();
    const id = this.nextId++;
    return new Promise<Colour>((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve({ fault: 'the colour evaluator did not answer' });
      }, 10_000);
      pending.set(id, (c) => (clearTimeout(timer), resolve(c)));
      exec.write(Buffer.from(`${JSON.stringify({ id, source, stdout, stderr, status })}\n`, 'utf8'));
    });
  }

  private open() {
    this.session ??= this.start().catch((e: unknown) => {
      this.session = undefined;
      throw e;
    });
    return this.session;
  }

  private async start() {
    const name = `${this.config.runnerName}-rag`;
    let id = (await this.engine.inspectContainer(name))?.id;
    if (!id) {
      try {
        id = await this.engine.createContainer({
          name,
          Image: RAG_IMAGE,
          Entrypoint: ['sleep', 'infinity'],
          User: '65534:65534',
          Labels: { [RAG_LABEL]: this.config.runnerName },
          NetworkDisabled: true,
          HostConfig: {
            Init: true,
            NetworkMode: 'none',
            ReadonlyRootfs: true,
            CapDrop: ['ALL'],
            SecurityOpt: ['no-new-privileges'],
            PidsLimit: 64,
            Memory: 512 * 1024 ** 2,
            MemorySwap: 512 * 1024 ** 2,
            NanoCpus: 1e9,
            LogConfig: { Type: 'none', Config: {} },
          },
        });
      } catch (e) {
        if (!isEngineError(e, 'conflict')) throw e;
        id = (await this.engine.inspectContainer(name))!.id; // another runner process made it
      }
    }
    if (!(await this.engine.inspectContainer(id))?.running) await this.engine.startContainer(id).catch(() => {});
    const pending = new Map<number, (c: Colour) => void>();
    let buffered = '';
    const exec = await this.engine.openSession(id, {
      cmd: ['ruby', '/opt/cyber-dojo/rag.rb'],
      user: '65534:65534',
      onStdout: (chunk) => {
        buffered += chunk.toString('utf8');
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const answer = JSON.parse(buffered.slice(0, nl)) as { id: number } & Partial<{ colour: 'red' | 'amber' | 'green'; fault: string }>;
          buffered = buffered.slice(nl + 1);
          pending.get(answer.id)?.(answer.colour ? { colour: answer.colour } : { fault: answer.fault ?? 'no colour' });
          pending.delete(answer.id);
        }
      },
      onStderr: (chunk) => this.log.warn({ rag: chunk.toString('utf8') }, 'colour evaluator said'),
      onClose: () => {
        this.session = undefined;
        for (const answer of pending.values()) answer({ fault: 'the colour evaluator ended' });
        pending.clear();
      },
    });
    return { exec, pending };
  }

  close(): void {
    void this.session?.then(({ exec }) => exec.close(), () => {});
    this.session = undefined;
  }
}
