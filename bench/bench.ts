// `npm run bench`: latency, CPU and memory of the runner against the real engine, with
// the runner as a child process of its own. Prints a markdown table and writes the
// figures to bench/results/latest.json. Things compared are interleaved, repetition by
// repetition, and ratios are taken pair by pair: on a small, shared VM only those mean much.
// BENCH_REPS, BENCH_BURSTS and BENCH_KATAS scale it down for a quick try.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { AVATARS } from '../lib/args.ts';
import { LABEL } from '../lib/katas.ts';
import { filesTar } from '../lib/sandbox.ts';
import {
  BENCH_LABEL, check, cleanUp, cpuMs, docker, engineDaemons, kataId, memAvailableKb, pidsWhere, pool, pssKb, resetPeakRss,
  ROOT, round, Runner, sleep, stat, statusKb, sum, timed, type Stat,
} from './support.ts';

const REPS = Number(process.env.BENCH_REPS ?? 25);
const BURSTS = Number(process.env.BENCH_BURSTS ?? 3);
const KATAS = Number(process.env.BENCH_KATAS ?? 100);
const WARM_UP = 3; // rounds discarded before each comparison: cold caches, first connections
const AVATARS_IN_BURST = 64;
const KATAS_IN_BURST = 20;

const PYTHON = 'cyber-dojo-runner/python-pytest';
const START = `${ROOT}deploy/start-points/python-pytest/start/`;
const pythonFiles: Record<string, string> = Object.fromEntries(readdirSync(START).map((name) => [name, readFileSync(START + name, 'utf8')]));
const TRIVIAL = { 'cyber-dojo.sh': 'true\n' };
const FLOOD = { 'cyber-dojo.sh': "head -c 100000000 /dev/zero | tr '\\0' x\n" };
// cyber-dojo's own uid:gid for container-per-run.
const CPR_USER = '41966:51966';

interface Row {
  what: string;
  unit: string;
  stat?: Stat;
  value?: number;
}
const rows: Record<string, Row> = {};
const bursts: Record<string, unknown>[] = [];
const extra: Record<string, unknown> = {};
const benchStarted = performance.now();
const progress = (text: string) => console.error(`[${((performance.now() - benchStarted) / 1000).toFixed(0).padStart(4)} s] ${text}`);

// Runs each job once per round, the order rotating round by round; the first rounds warm up.
async function interleaved<K extends string>(jobs: Record<K, () => Promise<number>>): Promise<Record<K, number[]>> {
  const names = Object.keys(jobs) as K[];
  const samples = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<K, number[]>;
  for (let round = 0; round < WARM_UP + REPS; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const ms = await jobs[name]();
      if (round >= WARM_UP) samples[name].push(ms);
    }
  }
  return samples;
}

const pairwise = (a: number[], b: number[], f: (x: number, y: number) => number) => a.map((x, i) => f(x, b[i]!));

async function runOf(runner: Runner, kata: string, avatar: string, changed: Record<string, string>, expect: (run: any) => boolean) {
  const answer = await runner.post('run', { kata_id: kata, avatar_name: avatar, changed_files: changed, deleted_filenames: [], max_seconds: 20 });
  if (!expect(answer.body)) throw new Error(`unexpected run of ${avatar}: ${JSON.stringify(answer.body).slice(0, 1000)}`);
  return answer;
}
const isRed = (run: any) => run.colour === 'red';

async function newKata(runner: Runner, avatars: string[], files: Record<string, string>) {
  const kata = kataId();
  await runner.post('kata_new', { image_name: PYTHON, kata_id: kata });
  await pool(4, avatars.map((avatar) => () => runner.post('avatar_new', { kata_id: kata, avatar_name: avatar, starting_files: files })));
  return kata;
}

// 1. A trivial run: the runner against the exec floor and against container-per-run.
async function trivial(runner: Runner, kata: string, container: string) {
  let n = 0;
  const tar = await filesTar(TRIVIAL);
  const scriptMs: number[] = [];
  const samples = await interleaved({
    run: async () => {
      const { ms, body } = await runOf(runner, kata, 'lion', TRIVIAL, (run) => run.status === 0);
      scriptMs.push(body.duration_ms);
      return ms;
    },
    exec: async () => (await timed(() => check(['docker', 'exec', container, 'true']))).ms,
    perRun: async () =>
      (await timed(() => check([
        'docker', 'run', '--rm', '-i', '--init', '--network', 'none',
        '--name', `${runner.name}-cpr-${n++}`, '--label', `${BENCH_LABEL}=${runner.name}`,
        '--user', CPR_USER, '--tmpfs', `/sandbox:exec,size=64m,mode=0700,uid=41966,gid=51966`, '--workdir', '/sandbox',
        '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--pids-limit', '256', '--memory', '2g',
        PYTHON, 'bash', '-c', 'tar -x -f - && bash ./cyber-dojo.sh',
      ], tar))).ms,
  });
  rows['1.run'] = { what: '`run` of `true` over HTTP', unit: 'ms', stat: stat(samples.run) };
  rows['1.script'] = { what: '… of which `cyber-dojo.sh` (its `duration_ms`)', unit: 'ms', stat: stat(scriptMs.slice(WARM_UP)) };
  rows['1.exec'] = { what: '`docker exec <kata> true` (CLI): the exec floor', unit: 'ms', stat: stat(samples.exec) };
  rows['1.perRun'] = { what: 'container-per-run (`docker run --rm -i --init`, tar in, `true`)', unit: 'ms', stat: stat(samples.perRun) };
  rows['1.run/exec'] = { what: 'ratio run / exec floor (pair by pair)', unit: '×', stat: stat(pairwise(samples.run, samples.exec, (a, b) => a / b), 2) };
  rows['1.perRun/run'] = { what: 'ratio container-per-run / run (pair by pair)', unit: '×', stat: stat(pairwise(samples.perRun, samples.run, (a, b) => a / b), 2) };
}

// 2. A Python red run: the runner against the same command in a bare exec.
async function python(runner: Runner, kata: string, container: string) {
  const uid = (await check(['docker', 'exec', container, 'id', '-u', 'tiger'])).stdout.trim();
  const changed = { 'hiker.py': pythonFiles['hiker.py']! };
  const scriptMs: number[] = [];
  const samples = await interleaved({
    run: async () => {
      const { ms, body } = await runOf(runner, kata, 'tiger', changed, isRed);
      scriptMs.push(body.duration_ms);
      return ms;
    },
    exec: async () => {
      const { ms, value } = await timed(() => check(['docker', 'exec', '-u', `${uid}:${uid}`, '-w', '/sandboxes/tiger', container, 'bash', './cyber-dojo.sh'], undefined, 1));
      if (!/= FAILURES =/.test(value.stdout)) throw new Error(`bare exec of pytest was not red: ${value.stdout}`);
      return ms;
    },
  });
  rows['2.run'] = { what: '`run` of pytest (red) over HTTP', unit: 'ms', stat: stat(samples.run) };
  rows['2.script'] = { what: '… of which `cyber-dojo.sh` (its `duration_ms`)', unit: 'ms', stat: stat(scriptMs.slice(WARM_UP)) };
  rows['2.exec'] = { what: 'the same in `docker exec -u <uid> -w <sandbox>` (CLI)', unit: 'ms', stat: stat(samples.exec) };
  rows['2.run/exec'] = { what: 'ratio run / bare exec (pair by pair)', unit: '×', stat: stat(pairwise(samples.run, samples.exec, (a, b) => a / b), 2) };
  rows['2.run-exec'] = { what: 'difference run − bare exec (pair by pair)', unit: 'ms', stat: stat(pairwise(samples.run, samples.exec, (a, b) => a - b)) };
}

// 5. The runner's memory while a run floods its output (cut at 50 KiB in the container).
async function flood(runner: Runner, kata: string) {
  const before = statusKb(runner.pid, 'VmRSS');
  const peaks: number[] = [];
  for (let i = 0; i < 3; i++) {
    resetPeakRss(runner.pid);
    let sampled = 0;
    const sampler = setInterval(() => (sampled = Math.max(sampled, statusKb(runner.pid, 'VmRSS'))), 5);
    try {
      await runOf(runner, kata, 'zebra', {}, (run) => run.stdout.truncated && run.stdout.content.length === 51200);
    } finally {
      clearInterval(sampler);
    }
    peaks.push(Math.max(sampled, statusKb(runner.pid, 'VmHWM')));
  }
  const mib = (kb: number) => round(kb / 1024);
  rows['5.before'] = { what: 'runner RSS before the flood runs', unit: 'MiB', value: mib(before) };
  rows['5.peak'] = { what: 'runner peak RSS during a 100 MB output flood (max of 3)', unit: 'MiB', value: mib(Math.max(...peaks)) };
  extra.flood = { beforeKb: before, peaksKb: peaks, afterKb: statusKb(runner.pid, 'VmRSS') };
}

// 3. Bursts: every avatar of one kata at once, and one avatar in each of many katas at once.
async function burstsOf(runner: Runner) {
  const changed = { 'hiker.py': pythonFiles['hiker.py']! };
  const crowded = await newKata(runner, AVATARS.slice(0, AVATARS_IN_BURST), pythonFiles);
  const many = await pool(4, Array.from({ length: KATAS_IN_BURST }, () => () => newKata(runner, ['lion'], pythonFiles)));
  const kinds = {
    [`${AVATARS_IN_BURST} avatars of 1 kata`]: AVATARS.slice(0, AVATARS_IN_BURST).map((avatar) => [crowded, avatar] as const),
    [`${KATAS_IN_BURST} katas, 1 avatar each`]: many.map((kata) => [kata, 'lion'] as const),
  };
  progress('bursts: katas ready');
  const daemons = engineDaemons();
  for (let i = 0; i < BURSTS; i++) {
    for (const [kind, targets] of Object.entries(kinds)) {
      await sleep(1000);
      const cpuBefore = cpuMs(runner.pid);
      const engineBefore = sum(daemons, cpuMs);
      // A loaded kata may not finish every run within max_seconds: that is a result too.
      const { ms: wall, value: answers } = await timed(() =>
        Promise.all(targets.map(([kata, avatar]) => runOf(runner, kata, avatar, changed, (run) => isRed(run) || run.timed_out))),
      );
      const timedOut = answers.filter((a) => a.body.timed_out).length;
      bursts.push({
        kind,
        runs: targets.length,
        timedOut,
        wallMs: round(wall),
        perRunMs: answers.map((a) => round(a.ms)),
        runsPerSecond: round(targets.length / (wall / 1000), 2),
        runnerCpuMsPerRun: round((cpuMs(runner.pid) - cpuBefore) / targets.length),
        engineCpuMsPerRun: round((sum(daemons, cpuMs) - engineBefore) / targets.length),
      });
      progress(`burst ${kind}: ${Math.round(wall)} ms, ${timedOut} timed out`);
    }
  }
  await pool(4, [crowded, ...many].map((kata) => () => runner.post('kata_old', { kata_id: kata })));
}

const cgroupMemory = (id: string) => {
  for (const path of [`/sys/fs/cgroup/memory/docker/${id}/memory.usage_in_bytes`, `/sys/fs/cgroup/docker/${id}/memory.current`]) {
    try {
      return Number(readFileSync(path, 'utf8'));
    } catch {}
  }
  return NaN;
};

const settledMemAvailableKb = async () => {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++, await sleep(400)) readings.push(memAvailableKb());
  return stat(readings, 0).median;
};

// 4. kata_new and avatar_new, and what an idle kata (with one avatar) costs in memory.
async function idleKatas(runner: Runner): Promise<string[]> {
  const daemons = engineDaemons();
  const daemonsBefore = sum(daemons, (pid) => statusKb(pid, 'VmRSS'));
  const availableBefore = await settledMemAvailableKb();
  const kataMs: number[] = [];
  const avatarMs: number[] = [];
  const katas: string[] = [];
  for (let i = 0; i < KATAS; i++) {
    const kata = kataId();
    kataMs.push((await runner.post('kata_new', { image_name: PYTHON, kata_id: kata })).ms);
    avatarMs.push((await runner.post('avatar_new', { kata_id: kata, avatar_name: 'lion', starting_files: pythonFiles })).ms);
    katas.push(kata);
  }
  await sleep(2000);
  const availableAfter = await settledMemAvailableKb();
  const ids = new Set(await pool(8, katas.map((kata) => () => runner.containerOf(kata))));
  const shims = pidsWhere((argv) => /containerd-shim/.test(argv[0] ?? '') && ids.has(argv[argv.indexOf('-id') + 1] ?? ''));
  const perKata = (kb: number) => round(kb / 1024 / KATAS, 2);
  rows['4.kata_new'] = { what: '`kata_new`', unit: 'ms', stat: stat(kataMs) };
  rows['4.avatar_new'] = { what: '`avatar_new` (Python starting files)', unit: 'ms', stat: stat(avatarMs) };
  rows['4.memAvailable'] = { what: `MemAvailable drop per idle kata (${KATAS} katas, 1 avatar each)`, unit: 'MiB', value: perKata(availableBefore - availableAfter) };
  rows['4.shimRss'] = { what: '… containerd-shim RSS per kata', unit: 'MiB', value: perKata(sum(shims, (pid) => statusKb(pid, 'VmRSS'))) };
  rows['4.shimPss'] = { what: '… containerd-shim PSS per kata (shared pages split)', unit: 'MiB', value: perKata(sum(shims, pssKb)) };
  rows['4.cgroup'] = { what: '… the container’s cgroup memory usage', unit: 'MiB', value: perKata([...ids].reduce((total, id) => total + cgroupMemory(id), 0) / 1024) };
  rows['4.daemons'] = { what: '… dockerd + containerd RSS growth', unit: 'MiB', value: perKata(sum(daemons, (pid) => statusKb(pid, 'VmRSS')) - daemonsBefore) };
  extra.idle = { katas: KATAS, shims: shims.length, kataNewMs: kataMs.map((ms) => round(ms)), avatarNewMs: avatarMs.map((ms) => round(ms)) };
  return [...ids];
}

// 6. One sweep over expired katas: killed containers have exited, and exited katas are reaped.
async function reap(runner: Runner, ids: string[]) {
  await pool(8, ids.map((id) => () => docker.getContainer(id).kill()));
  for (;;) {
    const exited = await docker.listContainers({ all: true, filters: { label: [`${LABEL.runner}=${runner.name}`], status: ['exited'] } });
    if (ids.every((id) => exited.some((c) => c.Id === id))) break;
    await sleep(200);
  }
  const { ms, body } = await runner.post('reap', {});
  if (body.removed.length !== ids.length) throw new Error(`reap removed ${body.removed.length} katas, not ${ids.length}`);
  rows['6.sweep'] = { what: `one reap sweep over ${ids.length} exited katas`, unit: 'ms', value: round(ms) };
  rows['6.perKata'] = { what: '… per kata', unit: 'ms', value: round(ms / ids.length) };
}

function table(): string {
  const cell = (x: number | undefined) => (x === undefined ? '' : String(x));
  const lines = ['| # | figure | unit | median | p95 | n |', '|---|---|---|---:|---:|---:|'];
  for (const [id, row] of Object.entries(rows)) {
    lines.push(`| ${id.split('.')[0]} | ${row.what} | ${row.unit} | ${cell(row.stat?.median ?? row.value)} | ${cell(row.stat?.p95)} | ${cell(row.stat?.n)} |`);
  }
  lines.push('', '| 3 | burst (Python, red) | wall ms, each | per-run p50 ms | per-run p95 ms | runs/s | runner CPU ms/run | dockerd+containerd CPU ms/run | timed out |', '|---|---|---|---:|---:|---:|---:|---:|---:|');
  for (const kind of new Set(bursts.map((b) => b.kind as string))) {
    const of = bursts.filter((b) => b.kind === kind);
    const all = (key: string) => of.map((b) => b[key] as number);
    const perRun = stat(of.flatMap((b) => b.perRunMs as number[]), 0);
    lines.push(
      `| 3 | ${kind} | ${all('wallMs').map(Math.round).join(' / ')} | ${perRun.median} | ${perRun.p95} | ${stat(all('runsPerSecond'), 2).median} | ${stat(all('runnerCpuMsPerRun')).median} | ${stat(all('engineCpuMsPerRun')).median} | ${all('timedOut').reduce((a, b) => a + b, 0)} of ${all('runs').reduce((a, b) => a + b, 0)} |`,
    );
  }
  return lines.join('\n');
}

let runner: Runner | undefined;

async function main() {
  const loadBefore = os.loadavg();
  runner = await Runner.start();
  progress(`runner ${runner.name} (pid ${runner.pid}) at ${runner.url}`);
  const kata = kataId();
  await runner.post('kata_new', { image_name: PYTHON, kata_id: kata });
  for (const [avatar, files] of [['lion', TRIVIAL], ['tiger', pythonFiles], ['zebra', FLOOD]] as const) {
    await runner.post('avatar_new', { kata_id: kata, avatar_name: avatar, starting_files: files });
  }
  const container = await runner.containerOf(kata);
  progress('1: trivial run vs exec floor vs container-per-run');
  await trivial(runner, kata, container);
  progress('2: Python red run vs bare exec');
  await python(runner, kata, container);
  progress('5: output flood');
  await flood(runner, kata);
  progress('3: bursts');
  await burstsOf(runner);
  progress(`4: ${KATAS} idle katas`);
  const ids = await idleKatas(runner);
  progress('6: reap');
  await reap(runner, ids);

  const results = {
    date: new Date().toISOString(),
    sha: (await check(['git', 'rev-parse', 'HEAD'])).stdout.trim(),
    machine: { cpus: os.cpus().length, memoryMiB: Math.round(os.totalmem() / 1024 ** 2), kernel: os.release(), node: process.version, docker: (await docker.version()).Version },
    loadAverage: { before: loadBefore, after: os.loadavg() },
    settings: { reps: REPS, warmUp: WARM_UP, bursts: BURSTS, idleKatas: KATAS },
    seconds: round((performance.now() - benchStarted) / 1000),
    runnerWarnings: runner.warnings,
    figures: rows,
    bursts,
    ...extra,
  };
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  writeFileSync(`${ROOT}bench/results/latest.json`, `${JSON.stringify(results, null, 2)}\n`);
  console.log(table());
  console.log(`\n${results.seconds} s; load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before, ${results.loadAverage.after.map((l) => l.toFixed(1)).join(' ')} after; runner warnings: ${runner.warnings}; written to bench/results/latest.json`);
}

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    progress(`${signal}: cleaning up`);
    cleanUp().finally(() => process.exit(130));
  });
}
try {
  await main();
} catch (e) {
  console.error(e);
  if (runner) console.error(`the runner's last log lines:\n${runner.log}`);
  process.exitCode = 1;
} finally {
  if (!stopping) await cleanUp();
}
