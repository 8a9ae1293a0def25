// `npm run bench`: latency, CPU and memory of the runner against the real engine, with
// the runner as a child process of its own. Prints a markdown table and writes the
// figures to bench/results/latest.json. Things compared are interleaved, repetition by
// repetition, and ratios are taken pair by pair: on a small, shared VM only those mean much.
// BENCH_REPS, BENCH_BURSTS and BENCH_KATAS scale it down for a quick try.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { AVATARS } from '../lib/args.ts';
import { LABEL } from '../lib/katas.ts';
import { startingFiles } from '../lib/start-points.ts';
import {
  filesTar,
  BENCH_LABEL, cgroupCpuMs, check, cleanUp, cpuMs, docker, engineDaemons, kataId, lastCommands, memAvailableKb, pool, pssKb, resetPeakRss,
  ROOT, round, Runner, shimsOf, sleep, stat, statusKb, sum, timed, type Stat,
} from './support.ts';

const REPS = Number(process.env.BENCH_REPS ?? 25);
const BURSTS = Number(process.env.BENCH_BURSTS ?? 3);
const KATAS = Number(process.env.BENCH_KATAS ?? 100);
const WARM_UP = 2; // rounds discarded before each comparison: cold caches, first connections
// A section that overruns its share of the time stops repeating (n says how many ran),
// so that a loaded machine still finishes the whole bench within 10 minutes.
const MIN_REPS = 10;
const MIN_BURSTS = 2;
const BUDGET_SECONDS = { trivial: 60, python: 60, bursts: 150 };
const AVATARS_IN_BURST = 64;
const KATAS_IN_BURST = 20;

const PYTHON = 'cyber-dojo-runner/python-pytest';
const pythonFiles = startingFiles(`${ROOT}deploy/start-points`, 'python-pytest');
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
const extra: Record<string, unknown> = {};
const benchStarted = performance.now();
const progress = (text: string) => console.error(`[${((performance.now() - benchStarted) / 1000).toFixed(0).padStart(4)} s] ${text}`);

// CPU (ms) of one operation, by where it was spent.
interface Cpu {
  kata: number; // the kata container's cgroup: the exec'd processes (sandbox.sh, cyber-dojo.sh)
  // The shim waits for runc and for the exec'd process, whose own waited-for children
  // are in the kata's cgroup too: what the shim's children took beyond that is runc's.
  // (A session's helper has not exited, so none of its CPU is counted there yet.)
  runc: number;
  shim: number; // the kata's containerd shim itself
  engine: number; // dockerd + containerd: with anyone else's use of the engine meanwhile
  runner: number;
  cli: number; // the docker CLI processes the bench ran
}
const CPU_PARTS = ['kata', 'runc', 'shim', 'engine', 'runner', 'cli'] as const;

function cpuProbe(runner: Runner, container: string): () => Cpu {
  const [shim] = shimsOf(new Set([container]));
  const daemons = engineDaemons();
  if (shim === undefined) throw new Error(`no containerd shim found for ${container}`);
  return () => {
    const kata = cgroupCpuMs(container);
    return {
      kata,
      runc: Math.max(0, cpuMs(shim, 'children') - kata),
      shim: cpuMs(shim),
      engine: sum(daemons, (pid) => cpuMs(pid)),
      runner: cpuMs(runner.pid),
      cli: cpuMs('self', 'children'),
    };
  };
}

interface Samples {
  ms: number[];
  cpu: Cpu[];
}

// Runs each job once per round, the order rotating round by round, with the CPU each
// took; the first rounds warm up.
async function interleaved<K extends string>(budgetSeconds: number, probe: () => Cpu, jobs: Record<K, () => Promise<number>>): Promise<Record<K, Samples>> {
  const names = Object.keys(jobs) as K[];
  const samples = Object.fromEntries(names.map((name) => [name, { ms: [], cpu: [] }])) as unknown as Record<K, Samples>;
  const deadline = performance.now() + budgetSeconds * 1000;
  for (let round = 0; round < WARM_UP + REPS; round++) {
    if (round >= WARM_UP + MIN_REPS && performance.now() > deadline) break;
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const before = probe();
      const ms = await jobs[name]();
      const after = probe();
      if (round < WARM_UP) continue;
      samples[name].ms.push(ms);
      samples[name].cpu.push(Object.fromEntries(CPU_PARTS.map((part) => [part, after[part] - before[part]])) as unknown as Cpu);
    }
  }
  return samples;
}

// Means, not medians: /proc counts CPU in 10 ms ticks, which only averages out.
const cpuRows: Record<string, Record<(typeof CPU_PARTS)[number] | 'total', number>> = {};
function cpuRow(what: string, cpu: Cpu[]) {
  const mean = (part: (typeof CPU_PARTS)[number]) => cpu.reduce((total, c) => total + c[part], 0) / cpu.length;
  const parts = Object.fromEntries(CPU_PARTS.map((part) => [part, round(mean(part))])) as Record<(typeof CPU_PARTS)[number], number>;
  cpuRows[what] = { ...parts, total: round(CPU_PARTS.reduce((total, part) => total + mean(part), 0)) };
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
  await pool(8, avatars.map((avatar) => () => runner.post('avatar_new', { kata_id: kata, avatar_name: avatar, starting_files: files })));
  return kata;
}

// 1. A trivial run: the runner against the exec floor and against container-per-run.
async function trivial(runner: Runner, kata: string, container: string) {
  let n = 0;
  const tar = await filesTar(TRIVIAL);
  const scriptMs: number[] = [];
  const samples = await interleaved(BUDGET_SECONDS.trivial, cpuProbe(runner, container), {
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
  rows['1.run'] = { what: '`run` of `true` over HTTP', unit: 'ms', stat: stat(samples.run.ms) };
  rows['1.script'] = { what: '… of which `cyber-dojo.sh` (its `duration_ms`)', unit: 'ms', stat: stat(scriptMs.slice(WARM_UP)) };
  rows['1.exec'] = { what: '`docker exec <kata> true` (CLI): the exec floor', unit: 'ms', stat: stat(samples.exec.ms) };
  rows['1.perRun'] = { what: 'container-per-run (`docker run --rm -i --init`, tar in, `true`)', unit: 'ms', stat: stat(samples.perRun.ms) };
  rows['1.run/exec'] = { what: 'ratio run / exec floor (pair by pair)', unit: '×', stat: stat(pairwise(samples.run.ms, samples.exec.ms, (a, b) => a / b), 2) };
  rows['1.perRun/run'] = { what: 'ratio container-per-run / run (pair by pair)', unit: '×', stat: stat(pairwise(samples.perRun.ms, samples.run.ms, (a, b) => a / b), 2) };
  cpuRow('`run` of `true`', samples.run.cpu);
  cpuRow('`docker exec <kata> true`', samples.exec.cpu);
}

// 2. A Python red run: the runner against the same command in a bare exec.
async function python(runner: Runner, kata: string, container: string) {
  const uid = (await check(['docker', 'exec', container, 'id', '-u', 'tiger'])).stdout.trim();
  const changed = { 'hiker.py': pythonFiles['hiker.py']! };
  const scriptMs: number[] = [];
  const samples = await interleaved(BUDGET_SECONDS.python, cpuProbe(runner, container), {
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
  rows['2.run'] = { what: '`run` of pytest (red) over HTTP', unit: 'ms', stat: stat(samples.run.ms) };
  rows['2.script'] = { what: '… of which `cyber-dojo.sh` (its `duration_ms`)', unit: 'ms', stat: stat(scriptMs.slice(WARM_UP)) };
  rows['2.exec'] = { what: 'the same in `docker exec -u <uid> -w <sandbox>` (CLI)', unit: 'ms', stat: stat(samples.exec.ms) };
  rows['2.run/exec'] = { what: 'ratio run / bare exec (pair by pair)', unit: '×', stat: stat(pairwise(samples.run.ms, samples.exec.ms, (a, b) => a / b), 2) };
  rows['2.run-exec'] = { what: 'difference run − bare exec (pair by pair)', unit: 'ms', stat: stat(pairwise(samples.run.ms, samples.exec.ms, (a, b) => a - b)) };
  cpuRow('`run` of pytest', samples.run.cpu);
  cpuRow('bare `docker exec` of pytest', samples.exec.cpu);
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
interface Burst {
  kind: string;
  runs: number;
  timedOut: number;
  wallMs: number;
  perRunMs: number[];
  runsPerSecond: number;
  runnerCpuMsPerRun: number;
  kataCpuMsPerRun: number; // all the burst's kata containers
  engineCpuMsPerRun: number;
}
const bursts: Burst[] = [];

async function burstsOf(runner: Runner) {
  const changed = { 'hiker.py': pythonFiles['hiker.py']! };
  const crowded = await newKata(runner, AVATARS.slice(0, AVATARS_IN_BURST), pythonFiles);
  const many = await pool(8, Array.from({ length: KATAS_IN_BURST }, () => () => newKata(runner, ['lion'], pythonFiles)));
  const kinds = [
    { kind: `${AVATARS_IN_BURST} avatars of 1 kata`, targets: AVATARS.slice(0, AVATARS_IN_BURST).map((avatar) => [crowded, avatar] as const) },
    { kind: `${KATAS_IN_BURST} katas, 1 avatar each`, targets: many.map((kata) => [kata, 'lion'] as const) },
  ];
  const containers = await Promise.all(kinds.map(({ targets }) => Promise.all([...new Set(targets.map(([kata]) => kata))].map((kata) => runner.containerOf(kata)))));
  progress('bursts: katas ready');
  const daemons = engineDaemons();
  const deadline = performance.now() + BUDGET_SECONDS.bursts * 1000;
  for (let i = 0; i < BURSTS && (i < MIN_BURSTS || performance.now() < deadline); i++) {
    for (const [k, { kind, targets }] of kinds.entries()) {
      await sleep(1000);
      const katasCpu = () => containers[k]!.reduce((total, id) => total + cgroupCpuMs(id), 0);
      const before = { runner: cpuMs(runner.pid), engine: sum(daemons, cpuMs), katas: katasCpu() };
      // A loaded kata may not finish every run within max_seconds: that is a result too.
      const { ms: wall, value: answers } = await timed(() =>
        Promise.all(targets.map(([kata, avatar]) => runOf(runner, kata, avatar, changed, (run) => isRed(run) || run.timed_out))),
      );
      const perRun = (ms: number) => round(ms / targets.length);
      const timedOut = answers.filter((a) => a.body.timed_out).length;
      bursts.push({
        kind,
        runs: targets.length,
        timedOut,
        wallMs: round(wall),
        perRunMs: answers.map((a) => round(a.ms)),
        runsPerSecond: round(targets.length / (wall / 1000), 2),
        runnerCpuMsPerRun: perRun(cpuMs(runner.pid) - before.runner),
        kataCpuMsPerRun: perRun(katasCpu() - before.katas),
        engineCpuMsPerRun: perRun(sum(daemons, cpuMs) - before.engine),
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
  const katas = Array.from({ length: KATAS }, kataId);
  const enter = async (kata: string) => {
    kataMs.push((await runner.post('kata_new', { image_name: PYTHON, kata_id: kata })).ms);
    avatarMs.push((await runner.post('avatar_new', { kata_id: kata, avatar_name: 'lion', starting_files: pythonFiles })).ms);
  };
  // Latencies one at a time, then the rest of the katas four at a time, unmeasured.
  for (const kata of katas.slice(0, REPS)) await enter(kata);
  await pool(4, katas.slice(REPS).map((kata) => () => runner.post('kata_new', { image_name: PYTHON, kata_id: kata })
    .then(() => runner.post('avatar_new', { kata_id: kata, avatar_name: 'lion', starting_files: pythonFiles }))));
  await sleep(2000);
  const availableAfter = await settledMemAvailableKb();
  const ids = new Set(await pool(8, katas.map((kata) => () => runner.containerOf(kata))));
  const shims = shimsOf(ids);
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

// 7. The cost of a request near the largest: /alive's latency while a 6 MiB run of
// 900 deep files (a sandbox holds 1024) is checked, written and answered, against /alive alone.
async function bigRequest(runner: Runner, kata: string) {
  const depth = 'd/'.repeat(60);
  const changed = Object.fromEntries(Array.from({ length: 900 }, (_, i) => [`${depth}${i}.txt`, 'x'.repeat(7 * 1024)]));
  const probe = async (during?: Promise<unknown>) => {
    const ms: number[] = [];
    let done = during === undefined;
    void during?.finally(() => (done = true));
    for (let i = 0; i < 200 && !(done && ms.length >= 20); i++) ms.push((await timed(() => fetch(`${runner.url}/alive`).then((r) => r.text()))).ms);
    return ms;
  };
  const alone = await probe();
  const during: number[] = [];
  for (let i = 0; i < 3; i++) {
    during.push(...(await probe(runOf(runner, kata, 'panda', changed, (run) => run.status === 0))));
  }
  rows['7.alone'] = { what: '`/alive` latency, alone', unit: 'ms', stat: stat(alone) };
  rows['7.during'] = { what: '`/alive` latency while a 6 MiB run of 900 files 61 deep is served', unit: 'ms', stat: stat(during) };
  rows['7.max'] = { what: '… its worst', unit: 'ms', value: round(Math.max(...during)) };
}

// 8. Today's cyber-dojo API: run_cyber_dojo_sh of a small C kata (red), warm, against the
// same work in a container per call, as today's cyber-dojo runner does it.
async function cyberDojoC() {
  const image = 'cyber-dojo-runner/test-cyber-dojo-c';
  const files = startingFiles(`${ROOT}deploy/start-points`, 'c-assert');
  const compat = await Runner.start({ RUNNER_API: 'cyber-dojo' });
  const tar = await filesTar(files);
  const call = () => compat.post('run_cyber_dojo_sh', { id: 'BenchC', files, manifest: { image_name: image, max_seconds: 10 } });
  const first = await call();
  if (first.body.outcome !== 'red') throw new Error(`run_cyber_dojo_sh of C was not red: ${JSON.stringify(first.body).slice(0, 500)}`);
  let n = 0;
  const samples = await interleaved(BUDGET_SECONDS.python, () => ({ kata: 0, runc: 0, shim: 0, engine: 0, runner: 0, cli: 0 }), {
    warm: async () => {
      const { ms, body } = await call();
      if (body.outcome !== 'red') throw new Error(`not red: ${body.outcome}`);
      return ms;
    },
    perRun: async () =>
      (await timed(() => check([
        'docker', 'run', '--rm', '-i', '--init', '--network', 'none', '--name', `${compat.name}-cpr-${n++}`, '--label', `${BENCH_LABEL}=${compat.name}`,
        '--user', CPR_USER, '--tmpfs', '/sandbox:exec,size=64m,uid=41966,gid=51966', '--workdir', '/sandbox',
        '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--pids-limit', '256', '--memory', '2g',
        image, 'bash', '-c', 'tar -x -f - && bash ./cyber-dojo.sh',
      ], tar, 134))).ms,
  });
  rows['8.warm'] = { what: '`run_cyber_dojo_sh` of C (red), warm, over HTTP', unit: 'ms', stat: stat(samples.warm.ms) };
  rows['8.perRun'] = { what: '… the same in a container per call (`docker run --rm -i --init`, tar in)', unit: 'ms', stat: stat(samples.perRun.ms) };
  rows['8.ratio'] = { what: 'ratio container per call / warm (pair by pair)', unit: '×', stat: stat(pairwise(samples.perRun.ms, samples.warm.ms, (a, b) => a / b), 2) };
  await compat.stop();
}

// 9. The cost of the Swarm's extra hop: the same run of `true` in a kata on this engine
// and in one on a four-node swarm made on this machine (deploy/swarm/up.sh).
async function swarmHop(runner: Runner, kata: string) {
  const down = `${ROOT}deploy/swarm/down.sh`;
  lastCommands.add(down);
  const manager = (await check([`${ROOT}deploy/swarm/up.sh`])).stdout.trim();
  const swarm = await Runner.start({ RUNNER_ENGINE: 'swarm', DOCKER_HOST: manager });
  const onSwarm = kataId();
  await swarm.post('kata_new', { image_name: PYTHON, kata_id: onSwarm });
  await swarm.post('avatar_new', { kata_id: onSwarm, avatar_name: 'lion', starting_files: TRIVIAL });
  const samples = await interleaved(BUDGET_SECONDS.trivial, () => ({ kata: 0, runc: 0, shim: 0, engine: 0, runner: 0, cli: 0 }), {
    local: async () => (await runOf(runner, kata, 'lion', TRIVIAL, (run) => run.status === 0)).ms,
    swarm: async () => (await runOf(swarm, onSwarm, 'lion', TRIVIAL, (run) => run.status === 0)).ms,
  });
  rows['9.local'] = { what: '`run` of `true`, a kata on this engine', unit: 'ms', stat: stat(samples.local.ms) };
  rows['9.swarm'] = { what: '… a kata on a swarm worker (through the manager and the node)', unit: 'ms', stat: stat(samples.swarm.ms) };
  rows['9.ratio'] = { what: 'ratio swarm / this engine (pair by pair)', unit: '×', stat: stat(pairwise(samples.swarm.ms, samples.local.ms, (a, b) => a / b), 2) };
  const made = await timed(() => swarm.post('kata_new', { image_name: PYTHON, kata_id: kataId() }));
  rows['9.kata_new'] = { what: '`kata_new` on the swarm (one sample)', unit: 'ms', value: round(made.ms) };
  await swarm.stop();
  // Its engines' CPU would count as this engine's in the sections after.
  await check([down]);
  lastCommands.delete(down);
}

// The run-engine issue's goals, each next to the figure before the helper and sessions.
function goals(): string {
  const burst = bursts.filter((b) => b.kind.startsWith(`${AVATARS_IN_BURST} avatars`));
  const overhead = burst.length ? stat(burst.map((b) => (100 * (b.runnerCpuMsPerRun + b.engineCpuMsPerRun)) / b.kataCpuMsPerRun)).median : NaN;
  const cpu = (what: string) => cpuRows[what]?.kata ?? NaN;
  const list: [string, string, string, number, boolean][] = [
    ['`run` of `true` / the exec floor (p50 of pairs)', '1.47', '≤ 0.25', rows['1.run/exec']!.stat!.median, rows['1.run/exec']!.stat!.median <= 0.25],
    ['container-per-run / `run` of `true` (p50 of pairs)', '2.46', '≥ 10', rows['1.perRun/run']!.stat!.median, rows['1.perRun/run']!.stat!.median >= 10],
    ['CPU in the kata per `run` of `true` / a bare exec’s', '3.5', '≤ 0.5', round(cpu('`run` of `true`') / cpu('`docker exec <kata> true`'), 2), cpu('`run` of `true`') / cpu('`docker exec <kata> true`') <= 0.5],
    ['`run` of pytest / the same in a bare exec (p50 of pairs)', '1.14', '≤ 0.95', rows['2.run/exec']!.stat!.median, rows['2.run/exec']!.stat!.median <= 0.95],
    ['64-avatar burst: runner + engine CPU per run, % of the kata’s', '9.4', '≤ 3', overhead, overhead <= 3],
    ['64-avatar burst: runs timed out', '0', '0', burst.reduce((n, b) => n + b.timedOut, 0), burst.every((b) => b.timedOut === 0)],
  ];
  const lines = ['| goal | before | aim | now | met |', '|---|---:|---:|---:|---|'];
  for (const [what, before, aim, now, met] of list) lines.push(`| ${what} | ${before} | ${aim} | ${now} | ${met ? 'yes' : 'no'} |`);
  return lines.join('\n');
}

function table(): string {
  const cell = (x: number | undefined) => (x === undefined ? '' : String(x));
  const lines = ['| # | figure | unit | median | p95 | n |', '|---|---|---|---:|---:|---:|'];
  for (const [id, row] of Object.entries(rows)) {
    lines.push(`| ${id.split('.')[0]} | ${row.what} | ${row.unit} | ${cell(row.stat?.median ?? row.value)} | ${cell(row.stat?.p95)} | ${cell(row.stat?.n)} |`);
  }
  lines.push('', '| 3 | burst (Python, red) | wall ms, each | per-run p50 ms | per-run p95 ms | runs/s | runner CPU ms/run | kata containers CPU ms/run | dockerd+containerd CPU ms/run (shared) | timed out |', '|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const kind of new Set(bursts.map((b) => b.kind))) {
    const of = bursts.filter((b) => b.kind === kind);
    const all = (key: 'wallMs' | 'runsPerSecond' | 'runnerCpuMsPerRun' | 'kataCpuMsPerRun' | 'engineCpuMsPerRun' | 'timedOut' | 'runs') => of.map((b) => b[key]);
    const total = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const perRun = stat(of.flatMap((b) => b.perRunMs), 0);
    lines.push(
      `| 3 | ${kind} | ${all('wallMs').map(Math.round).join(' / ')} | ${perRun.median} | ${perRun.p95} | ${stat(all('runsPerSecond'), 2).median} | ${stat(all('runnerCpuMsPerRun')).median} | ${stat(all('kataCpuMsPerRun')).median} | ${stat(all('engineCpuMsPerRun')).median} | ${total(all('timedOut'))} of ${total(all('runs'))} |`,
    );
  }
  lines.push('', '| 1, 2 | CPU per operation, mean ms | kata container | runc | shim | dockerd + containerd (shared) | runner | docker CLI | total |', '|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const [what, c] of Object.entries(cpuRows)) lines.push(`| | ${what} | ${c.kata} | ${c.runc} | ${c.shim} | ${c.engine} | ${c.runner} | ${c.cli} | ${c.total} |`);
  return lines.join('\n');
}

let runner: Runner | undefined;

async function main() {
  const loadBefore = os.loadavg();
  runner = await Runner.start();
  progress(`runner ${runner.name} (pid ${runner.pid}) at ${runner.url}`);
  const kata = kataId();
  await runner.post('kata_new', { image_name: PYTHON, kata_id: kata });
  for (const [avatar, files] of [['lion', TRIVIAL], ['tiger', pythonFiles], ['zebra', FLOOD], ['panda', TRIVIAL]] as const) {
    await runner.post('avatar_new', { kata_id: kata, avatar_name: avatar, starting_files: files });
  }
  const container = await runner.containerOf(kata);
  progress('1: trivial run vs exec floor vs container-per-run');
  await trivial(runner, kata, container);
  progress('2: Python red run vs bare exec');
  await python(runner, kata, container);
  progress('5: output flood');
  await flood(runner, kata);
  progress('7: the largest request');
  await bigRequest(runner, kata);
  progress("8: today's cyber-dojo API, C, warm vs a container per call");
  await cyberDojoC();
  progress('9: the swarm hop');
  await swarmHop(runner, kata);
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
    settings: { reps: REPS, minReps: MIN_REPS, warmUp: WARM_UP, bursts: BURSTS, minBursts: MIN_BURSTS, budgetSeconds: BUDGET_SECONDS, idleKatas: KATAS },
    seconds: round((performance.now() - benchStarted) / 1000),
    runnerWarnings: runner.warnings,
    figures: rows,
    cpuMs: cpuRows,
    bursts,
    ...extra,
  };
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  writeFileSync(`${ROOT}bench/results/latest.json`, `${JSON.stringify(results, null, 2)}\n`);
  console.log(table());
  console.log(`\n${goals()}`);
  console.log(`\n${results.seconds} s; load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before, ${results.loadAverage.after.map((l) => l.toFixed(1)).join(' ')} after; runner warnings: ${JSON.stringify(runner.warnings)}; written to bench/results/latest.json`);
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
  // Once stopping, what fails is the clean-up pulling things from under the bench.
  if (!stopping) {
    console.error(e);
    if (runner) console.error(`the runner's last log lines:\n${runner.log}`);
  }
  process.exitCode = 1;
} finally {
  if (!stopping) await cleanUp();
}
