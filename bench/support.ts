// The bench's tools: statistics, child processes as argv arrays, /proc readers, and
// the runner under test as a child process of its own, with its clean-up.
import Docker from 'dockerode';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { pack } from 'tar-stream';
import { RAG_LABEL } from '../lib/cyber-dojo.ts';
import { LABEL } from '../lib/katas.ts';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const docker = new Docker();
// Marks the container-per-run containers the bench itself starts, so that clean-up
// finds them; the runner's own label would make its reaper sweep them.
export const BENCH_LABEL = 'cyber-dojo-runner.bench';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const kataId = () => randomBytes(5).toString('hex').toUpperCase();

export interface Stat {
  n: number;
  median: number;
  p95: number;
}

// Linear interpolation between the nearest ranks.
export function stat(values: number[], digits = 1): Stat {
  if (values.length === 0) throw new Error('no values');
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    const i = (sorted.length - 1) * q;
    const lo = sorted[Math.floor(i)]!;
    return lo + (sorted[Math.ceil(i)]! - lo) * (i - Math.floor(i));
  };
  return { n: sorted.length, median: round(at(0.5), digits), p95: round(at(0.95), digits) };
}

export const round = (value: number, digits = 1) => Number(value.toFixed(digits));

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

// Runs up to `width` of the jobs at a time, in order.
export async function pool<T>(width: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  return results;
}

export interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Child processes under way, so that an interrupted bench can end them.
const children = new Set<ChildProcess>();

let closing = false; // once clean-up has begun, nothing new starts

// Runs argv (never a shell string) to its end; a non-zero exit is an answer, not an error.
export function run(argv: string[], stdin?: Buffer): Promise<Exit> {
  return closing ? Promise.reject(new Error('the bench is stopping')) : spawned(argv, stdin);
}

function spawned(argv: string[], stdin?: Buffer): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    if (stdin) child.stdin!.end(stdin);
  });
}

export async function check(argv: string[], stdin?: Buffer, expected = 0): Promise<Exit> {
  const exit = await run(argv, stdin);
  if (exit.code !== expected) throw new Error(`${argv.join(' ')}: exit ${exit.code} (expected ${expected}): ${exit.stderr.slice(0, 500)}`);
  return exit;
}

// --- /proc -------------------------------------------------------------------

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux, whatever the kernel's HZ

// utime + stime of a process (all its threads), in ms; or that of the children it has
// waited for (a shim's runc, the bench's docker CLI).
export function cpuMs(pid: number | 'self', whose: 'own' | 'children' = 'own'): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The name field is in parentheses and may hold spaces: fields count from the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
  const ticks = whose === 'own' ? fields[11]! + fields[12]! : fields[13]! + fields[14]!;
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

// CPU time of a container's cgroup (cgroup v1, else v2), in ms.
export function cgroupCpuMs(id: string): number {
  try {
    return Number(readFileSync(`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, 'utf8')) / 1e6;
  } catch {
    return Number(/^usage_usec (\d+)/m.exec(readFileSync(`/sys/fs/cgroup/docker/${id}/cpu.stat`, 'utf8'))?.[1]) / 1e3;
  }
}

export function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? NaN);
}

// Proportional set size: shared pages (a binary's text) divided among their users.
export function pssKb(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN);
}

// Writing 5 to clear_refs resets VmHWM to the current RSS.
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export function memAvailableKb(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN);
}

// Processes whose argv passes the test; a process that ends while being read is skipped.
export function pidsWhere(test: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (test(argv)) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

export const engineDaemons = () => pidsWhere((argv) => /(^|\/)(dockerd|containerd)$/.test(argv[0] ?? ''));

// The containerd shim of each of the containers (by full id).
export const shimsOf = (ids: Set<string>) => pidsWhere((argv) => /containerd-shim/.test(argv[0] ?? '') && ids.has(argv[argv.indexOf('-id') + 1] ?? ''));

// Sums a reading over processes, skipping any that ended meanwhile.
export function sum(pids: number[], read: (pid: number) => number): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += read(pid);
    } catch {}
  }
  return total;
}

// --- the runner under test ---------------------------------------------------

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });

export interface Answer {
  ms: number;
  body: any;
}

export class Runner {
  private logTail: string[] = [];
  readonly warnings: Record<string, number> = {}; // by message: what the runner logged at warn or above

  private constructor(
    readonly name: string,
    readonly url: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        const msg = /"level":(?:40|50|60),.*"msg":"([^"]*)"/.exec(line)?.[1];
        if (msg !== undefined) this.warnings[msg] = (this.warnings[msg] ?? 0) + 1;
        this.logTail = [...this.logTail.slice(-29), line];
      }
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get log(): string {
    return this.logTail.join('\n');
  }

  static async start(env: Record<string, string> = {}): Promise<Runner> {
    const name = `bench-${randomBytes(4).toString('hex')}`;
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'lib/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), RUNNER_NAME: name, REAP_SCHEDULE: 'off', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const runner = new Runner(name, `http://127.0.0.1:${port}`, child);
    started.add(runner);
    for (let waited = 0; ; waited += 100) {
      if (child.exitCode !== null) throw new Error(`the runner exited with ${child.exitCode}:\n${runner.log}`);
      const ready = await fetch(`${runner.url}/alive`).then((r) => r.ok, () => false);
      if (ready) return runner;
      if (waited > 30_000) throw new Error(`the runner was not ready after 30 s:\n${runner.log}`);
      await sleep(100);
    }
  }

  // POSTs a function; anything but 200 is an error.
  async post(fn: string, body: unknown): Promise<Answer> {
    const started = performance.now();
    const response = await fetch(`${this.url}/${fn}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = (await response.json()) as Record<string, unknown>;
    const ms = performance.now() - started;
    if (response.status !== 200) throw new Error(`${fn}: ${response.status} ${JSON.stringify(answer)}`);
    return { ms, body: answer[fn] };
  }

  // The kata container's id, straight from the engine.
  async containerOf(kata: string): Promise<string> {
    return (await docker.getContainer(`${this.name}-kata-${kata}`).inspect()).Id;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) === false) {
      this.child.kill('SIGKILL');
      await exited;
    }
  }
}

const started = new Set<Runner>();

async function removeLabelled(label: string): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [label] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {})));
}

// Commands the clean-up runs last, whatever stopped the bench (a swarm's taking down).
export const lastCommands = new Set<string>();

// Ends what the bench started: its runners, their containers, the bench's own
// container-per-run containers, then lastCommands. Only containers carrying this bench's
// names are touched.
export async function cleanUp(): Promise<void> {
  closing = true;
  for (const child of children) child.kill('SIGKILL');
  for (const runner of started) {
    await runner.stop();
    // A create the engine was still serving when its caller died shows up a moment later.
    for (let pass = 0; pass < 2; pass++) {
      await removeLabelled(`${LABEL.runner}=${runner.name}`);
      await removeLabelled(`${LABEL.claimRunner}=${runner.name}`);
      await removeLabelled(`${RAG_LABEL}=${runner.name}`);
      await removeLabelled(`${BENCH_LABEL}=${runner.name}`);
      if (pass === 0) await sleep(1000);
    }
  }
  started.clear();
  for (const command of lastCommands) {
    const exit = await spawned([command]);
    if (exit.code !== 0) console.error(`${command}: exit ${exit.code}: ${exit.stderr.slice(0, 500)}`);
  }
  lastCommands.clear();
}

// A tar of the files, for a container-per-run that reads them on its stdin.
export function filesTar(files: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tar = pack();
    const chunks: Buffer[] = [];
    tar.on('data', (chunk) => chunks.push(chunk as Buffer)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
    for (const [name, content] of Object.entries(files)) tar.entry({ name, mode: 0o644 }, content);
    tar.finalize();
  });
}
