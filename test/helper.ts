// Builds the runner as its main does, against the real engine, listening on a free
// loopback port; each test file gets its own RUNNER_NAME, and every container of it
// is removed when the test ends.
import Docker from 'dockerode';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { functions } from '../functions/index.ts';
import { loadConfig, type Config } from '../lib/config.ts';
import { buildHost } from '../lib/host.ts';
import { RAG_LABEL } from '../lib/cyber-dojo.ts';
import { LABEL } from '../lib/katas.ts';

export const docker = new Docker();
export const PYTHON = 'cyber-dojo-runner/python-pytest';
export const BASE = 'cyber-dojo-runner/base:bookworm';

export const kataId = () => randomBytes(5).toString('hex').toUpperCase();
// The contract's error body.
export const error = (fn: string, message: string) => ({ exception: { function: fn, message } });

export interface Runner {
  app: FastifyInstance;
  config: Config;
  url: string;
  post(fn: string, body: unknown): Promise<{ status: number; body: any }>;
  get(path: string): Promise<{ status: number; body: any }>;
  // The containers this runner made.
  containers(): Promise<Docker.ContainerInfo[]>;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

export async function startRunner(t: Tap, env: Record<string, string> = {}, client?: Docker): Promise<Runner> {
  const config = loadConfig({
    ...process.env,
    RUNNER_NAME: `test-${randomBytes(4).toString('hex')}`,
    REAP_SCHEDULE: 'off',
    ...env,
  });
  const app = await buildHost({ config, functions, docker: client, logger: { level: process.env.TEST_LOG_LEVEL ?? 'error' } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const answer = async (response: Response) => {
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: response.status, body };
  };
  const runner: Runner = {
    app,
    config,
    url,
    post: async (fn, body) =>
      answer(await fetch(`${url}/${fn}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) })),
    get: async (path) => answer(await fetch(`${url}${path}`)),
    containers: () => docker.listContainers({ all: true, filters: { label: [`${LABEL.runner}=${config.runnerName}`] } }),
  };
  t.teardown(async () => {
    await app.close();
    await removeContainers(config.runnerName);
  });
  return runner;
}

// The runner's kata containers, and the uid slot claims of its katas.
export async function removeContainers(runnerName: string): Promise<void> {
  const lists = await Promise.all(
    [LABEL.runner, LABEL.claimRunner, RAG_LABEL].map((label) => docker.listContainers({ all: true, filters: { label: [`${label}=${runnerName}`] } })),
  );
  await Promise.all(lists.flat().map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
}

// The uid slot claims of the runner's katas.
export const claimsOf = (runner: Runner) => docker.listContainers({ all: true, filters: { label: [`${LABEL.claimRunner}=${runner.config.runnerName}`] } });

// A kata with one avatar in it, on the given image.
export async function kataWithAvatar(runner: Runner, files: Record<string, string>, options: { image?: string; avatar?: string } = {}) {
  const id = kataId();
  const created = await runner.post('kata_new', { image_name: options.image ?? BASE, kata_id: id });
  if (created.status !== 200) throw new Error(`kata_new: ${JSON.stringify(created)}`);
  const entered = await runner.post('avatar_new', { kata_id: id, avatar_name: options.avatar ?? 'lion', starting_files: files });
  if (entered.status !== 200) throw new Error(`avatar_new: ${JSON.stringify(entered)}`);
  return id;
}

// Runs a shell command as root in a container, outside the runner; answers its stdout.
export async function inContainer(containerId: string, script: string, user = '0:0'): Promise<string> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: ['sh', '-c', script], User: user, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  await new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', resolve);
  });
  const out = Buffer.concat(chunks);
  let text = '';
  for (let at = 0; at + 8 <= out.length; ) {
    const size = out.readUInt32BE(at + 4);
    if (out[at] === 1) text += out.subarray(at + 8, at + 8 + size).toString();
    at += 8 + size;
  }
  return text;
}

// Runs a shell command in a container's file system as the host's root, with every
// capability: it can do what no avatar and no helper can. The tests run on the engine's host.
export async function asHostRoot(containerId: string, script: string): Promise<void> {
  const pid = (await docker.getContainer(containerId).inspect()).State.Pid;
  execFileSync('nsenter', ['--target', String(pid), '--mount', '--', 'sh', '-c', script]);
}

// Processes (and threads' leaders) of a uid left in a container, read from /proc.
export async function processesOf(containerId: string, uid: number): Promise<number> {
  const out = await inContainer(containerId, `grep -l "^Uid:[[:space:]]*${uid}[[:space:]]" /proc/[0-9]*/status 2>/dev/null | wc -l`);
  return Number(out.trim());
}

export async function containerOf(runner: Runner, id: string): Promise<string> {
  return (await docker.getContainer(`${runner.config.runnerName}-kata-${id}`).inspect()).Id;
}

// Ends a kata's container as an expiry or an engine restart would, and leaves it
// there, exited, for the runner to find. Answers the container's id.
export async function endKata(runner: Runner, id: string): Promise<string> {
  const container = docker.getContainer(await containerOf(runner, id));
  await container.kill();
  await container.wait();
  return container.id;
}

// A runner in a process of its own (lib/main.ts), as an operator starts it; `log` is
// what it has logged so far, a JSON object a line.
export async function spawnRunner(t: Tap, env: Record<string, string> = {}): Promise<{ url: string; name: string; post: Runner['post']; log: () => any[] }> {
  const name = `test-${randomBytes(4).toString('hex')}`;
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/main.ts'], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, PORT: '0', RUNNER_NAME: name, REAP_SCHEDULE: 'off', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    await removeContainers(name);
  });
  let seen = '';
  child.stdout!.on('data', (chunk: Buffer) => (seen += chunk.toString('utf8')));
  // Its first lines say where it listens.
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', () => {
      const found = /runner listening on (http:\/\/[\d.]+:\d+)/.exec(seen);
      if (found) resolve(found[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the runner exited with ${code}: ${seen}`)));
  });
  const post: Runner['post'] = async (fn, body) => {
    const response = await fetch(`${url}/${fn}`, { method: 'POST', body: JSON.stringify(body) });
    return { status: response.status, body: await response.json() };
  };
  const log = () => seen.split('\n').filter(Boolean).map((line) => JSON.parse(line));
  return { url, name, post, log };
}

export function uidOf(runner: Runner, slot: number, avatarIndex: number): number {
  return runner.config.uidBase + 64 * slot + avatarIndex;
}
