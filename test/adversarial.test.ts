// Hostile runs against a co-tenant (issue 6): lion attacks the kata it shares with
// salmon. Each attack ends within max_seconds + 1 s as the contract says, leaves no
// process of lion, lion's next normal run and salmon's run during it are green, and
// kata_old then removes the kata in time (attack-helper.ts). Cross-avatar access,
// symlinks and setuid are in isolation.test.ts. The attacks written in plain sh run
// twice: on the Python start point, and on the busybox one (an image with no bash,
// perl, util-linux or coreutils).
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { avatarPorts } from '../lib/katas.ts';
import { startRunner } from './helper.ts';
import { attackAndEnd, twoAvatarKata, victimFiles, type Attack, type Language } from './attack-helper.ts';
import { run } from './run-helper.ts';

t.setTimeout(900_000);

const script = (...lines: string[]) => ({ 'cyber-dojo.sh': `${lines.join('\n')}\n` });
const timedOut = { colour: 'timed_out', timed_out: true, oom_killed: false };
// What cyber-dojo.sh prints is no test output: the start point's rules call it amber.
const amber = (status: number) => ({ colour: 'amber', status, timed_out: false, oom_killed: false });
const oomKilled = { status: 137, colour: 'amber', timed_out: false, oom_killed: true };

// In plain sh: for every image.
const RUNAWAYS: Attack[] = [
  {
    // The shell gives up on forks that keep failing, so this bomb burns out in about a
    // second; the loop, which needs no fork, keeps the run going to max_seconds. The bomb
    // is set off from a subshell: a shell whose own fork fails may exit (busybox's does),
    // and the script must reach its loop however the bomb's forks and its own interleave.
    // The bomb's forks refused (EAGAIN) show it reached lion's nproc.
    name: 'shell fork bomb',
    files: script('( bomb() { bomb | bomb & }; bomb )', 'while :; do :; done'),
    expect: { ...timedOut, stderr: { content: /Resource temporarily unavailable/ } },
  },
  { name: 'infinite loop', files: script('while :; do :; done'), expect: timedOut },
  { name: 'TERM-ignoring loop', files: script("trap '' TERM", 'while :; do :; done'), expect: timedOut },
  {
    name: 'setsid daemon, the script gone at once',
    files: script(`( setsid sh -c "trap '' TERM HUP; while :; do :; done" >/dev/null 2>&1 & )`, 'echo bye'),
    expect: amber(0),
  },
  {
    name: 'nohup daemon, the script gone at once',
    files: script("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &", 'echo bye'),
    expect: amber(0),
  },
  { name: 'setsid loop and a loop', files: script("setsid sh -c 'while :; do :; done' &", 'while :; do :; done'), expect: timedOut },
  // Its parent is root's: out of lion's reach.
  {
    name: 'kill -9 $PPID',
    files: script('kill -9 $PPID', 'while :; do :; done'),
    expect: { ...timedOut, stderr: { content: /Operation not permitted/ } },
  },
  // Sent from a child, it kills every process of lion's, the script too (a
  // process's own kill(-1) spares itself).
  {
    name: 'kill -9 -1',
    files: script('sleep 100 &', "sh -c 'kill -9 -1'", 'echo survived'),
    expect: { ...amber(137), stdout: { content: /^$/ } },
  },
  {
    name: 'CPU hog: four busy loops',
    files: script('for i in 1 2 3 4; do while :; do :; done & done', 'wait'),
    expect: timedOut,
  },
];

// The bomb is built by a run of its own before the attack, so that max_seconds is all the
// bomb's, however long a busy host takes to compile it. The start point compiles every .c
// file: the bomb's source must go for lion's next run to build.
const bombC = (body: string): Pick<Attack, 'files' | 'before' | 'nextDeleted'> => ({
  files: { 'cyber-dojo.sh': './bomb\n' },
  before: async ({ runner, id }) => {
    const source = `#include <unistd.h>\n\nint main(void)\n{\n${body}\n}\n`;
    const built = await run(runner, id, { changed: { 'bomb.c': source, 'cyber-dojo.sh': 'gcc -o bomb bomb.c\n' }, maxSeconds: 20 });
    if (built.body.run?.status !== 0) throw new Error(`the bomb did not build: ${JSON.stringify(built.body)}`);
  },
  nextDeleted: ['bomb.c'],
});
const C_BOMBS: Attack[] = [
  { name: 'C fork() loop', language: 'c', ...bombC('    for (;;) fork();'), maxSeconds: 3, expect: timedOut, countPeak: true },
  {
    // Nobody waits for the children: the script ends, and its end kills them.
    name: 'C fork() loop, the parent gone at once',
    language: 'c',
    ...bombC('    if (fork() == 0)\n        for (;;) fork();\n    return 0;'),
    maxSeconds: 3,
    expect: amber(0),
  },
];

for (const [language, attacks] of [['python', [...RUNAWAYS, ...C_BOMBS]], ['sh', RUNAWAYS]] as [Language, Attack[]][]) {
  t.test(`fork bombs and runaways (${language})`, async (t) => {
    const runner = await startRunner(t);
    const nproc = runner.config.limits.nproc;
    for (const spec of attacks) {
      await t.test(spec.name, async (t) => {
        const { peak } = await attackAndEnd(t, runner, { language, ...spec });
        // The bomb really went off (it holds the limit for all of max_seconds), and lion's nproc held it.
        if (spec.countPeak) t.ok(peak > nproc / 2 && peak <= nproc, `lion had at most ${peak} processes at once, of its nproc ${nproc}`);
      });
    }
  });
}

t.test('a memory bomb in plain sh is oom_killed on an image with no tools but busybox', async (t) => {
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  await attackAndEnd(t, runner, { name: 'memory bomb (sh)', language: 'sh', files: script('x=x', 'while :; do x="$x$x"; done'), maxSeconds: 5, expect: oomKilled });
});

// Salmon's tests hold 40 MB for 3 s, in the kata while the bomb fills it.
const holdingVictim = () => {
  const files = victimFiles('python');
  const hold = `python3 -c "import time; b = b'v' * (40 << 20); time.sleep(3)" || { echo "salmon's 40 MB died: $?" >&2; exit 99; }`;
  return { ...files, 'cyber-dojo.sh': `${hold}\n${files['cyber-dojo.sh']}` };
};

const bomb = ['python3 -c "', 'b = []', 'while True: b.append(b\'x\' * (16 << 20))', '"'];

t.test('a memory bomb is oom_killed, and the OOM killer takes it, not the other avatar', async (t) => {
  // A small kata fills up quickly.
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  await attackAndEnd(t, runner, { name: 'memory bomb', files: script(...bomb), victim: holdingVictim(), maxSeconds: 3, expect: oomKilled });
});

// A process may lower its own oom_score_adj to 0 with no capability; avatars' processes
// are all at 0, so no avatar can make another's the OOM killer's preferred target.
t.test('a memory bomb that lowers its own oom_score_adj: the OOM killer still takes it, not the other avatar', async (t) => {
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  await attackAndEnd(t, runner, {
    name: 'memory bomb at oom_score_adj 0',
    files: script('echo 0 >/proc/self/oom_score_adj', ...bomb),
    victim: holdingVictim(),
    maxSeconds: 3,
    expect: oomKilled,
  });
});

// Each of the bomb's processes is smaller than salmon's, and the kernel's OOM killer
// takes the largest process, whoever owns it: here the runner's memory guard, which
// counts memory per avatar, kills lion first.
t.test('a memory bomb of many small processes: the memory guard takes them, not the other avatar', async (t) => {
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  const hog = "import time; b = b'x' * (8 << 20); time.sleep(60)";
  await attackAndEnd(t, runner, {
    name: 'memory bomb of 30 small processes',
    files: script(`for i in $(seq 30); do python3 -c "${hog}" & done`, 'wait'),
    victim: holdingVictim(),
    maxSeconds: 3,
    expect: oomKilled,
  });
});

t.test("100 MB of output is cut in the kata: the runner's memory does not grow with it", async (t) => {
  const runner = await startRunner(t);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))![1]);
  let before = 0;
  const outcome = await attackAndEnd(t, runner, {
    name: '100 MB of output',
    files: script("head -c 100000000 /dev/zero | tr '\\0' x"),
    expect: { ...amber(0), stdout: { truncated: true } },
    // The peak is counted from here: writing 5 to clear_refs resets it to the current RSS.
    before: async () => {
      gc();
      before = kib('VmRSS');
      writeFileSync('/proc/self/clear_refs', '5');
    },
  });
  const growth = kib('VmHWM') - before;
  t.comment(`the runner's RSS peaked ${growth} KiB over its ${before} KiB`);
  t.ok(growth < 20 * 1024, `the runner's RSS grew by ${growth} KiB at its peak, under 20 MiB`);
  t.equal(outcome.hostile.stdout.content.length, 51200);
});

for (const language of ['python', 'sh'] as Language[]) {
  t.test(`filling lion's sandbox, home and /dev/shm; /tmp and /var/tmp it cannot write (${language})`, async (t) => {
    const runner = await startRunner(t);
    const fill = (path: string) => `dd if=/dev/zero of=${path} bs=1M count=200 2>/dev/null`;
    // Salmon still writes to its own sandbox and home (a megabyte each), then runs its tests.
    const victim = victimFiles(language);
    victim['cyber-dojo.sh'] = [
      'head -c 1m /dev/zero >mine && rm mine || exit 99',
      'head -c 1m /dev/zero >"$HOME/mine" && rm "$HOME/mine" || exit 99',
      victim['cyber-dojo.sh'],
    ].join('\n');
    const { hostile } = await attackAndEnd(t, runner, {
      name: `disk fill (${language})`,
      language,
      files: script(fill('big'), fill('"$HOME/big"'), fill('/tmp/big'), fill('/var/tmp/big'), fill('/dev/shm/big'), 'df -k . "$HOME" /tmp /var/tmp /dev/shm'),
      victim,
      expect: amber(0),
      // The caller deletes the file that filled the sandbox: its changed files fit again.
      nextDeleted: ['big'],
    });
    const free = hostile.stdout.content.split('\n').slice(1, -1).map((line: string) => line.split(/\s+/)).map((f: string[]) => [f[5], f[3] === '0']);
    t.same(free, [['/sandboxes/lion', true], ['/home/lion', true], ['/tmp', false], ['/var/tmp', false], ['/dev/shm', true]], 'its own were filled, and /dev/shm, not /tmp nor /var/tmp');
  });

  t.test(`as many files as lion can make in its sandbox, then a loop (${language})`, async (t) => {
    const runner = await startRunner(t);
    // Every run lists the sandbox's files: their number is bounded, so that work is too.
    await attackAndEnd(t, runner, {
      name: `many files (${language})`,
      language,
      files: script('mkdir many && cd many && seq 300000 | xargs touch 2>/dev/null', 'while :; do :; done'),
      expect: timedOut,
    });
  });
}

t.test('a file-handle bomb in 50 processes', async (t) => {
  const runner = await startRunner(t);
  const nofile = runner.config.limits.nofile;
  const { hostile } = await attackAndEnd(t, runner, {
    name: 'file-handle bomb',
    files: script(
      // Each hog is one process (the sleep replaces it): 50 of lion's nproc.
      'hog() { local n=0 fd; while exec {fd}</dev/null; do n=$((n + 1)); done 2>/dev/null; echo "$n"; exec sleep 60; }',
      'for i in $(seq 50); do hog & done',
      'wait',
    ),
    expect: timedOut,
  });
  const counts = hostile.stdout.content.split('\n').filter(Boolean).map(Number);
  t.equal(counts.length, 50, 'every process ran out of file handles');
  t.ok(counts.every((n: number) => n > nofile - 16 && n < nofile), `each at its nofile limit of ${nofile}: ${[...new Set(counts)]}`);
});

t.test('no network: the internet, the docker0 gateway, the metadata address, DNS, the Docker socket', async (t) => {
  const runner = await startRunner(t);
  const port = new URL(runner.url).port;
  // The last is one of lion's own ports, which Landlock lets it try: the network says no.
  const targets = ['1.1.1.1/53', '172.17.0.1/80', '172.17.0.1/2375', '169.254.169.254/80', `127.0.0.1/${port}`, `1.1.1.1/${avatarPorts('lion')[0]}`];
  const { hostile } = await attackAndEnd(t, runner, {
    name: 'network access',
    files: script(
      ...targets.map((to) => `if (exec 3<>/dev/tcp/${to}); then echo "connected to ${to}"; else echo "no connection to ${to}"; fi`),
      'if getent hosts example.com; then echo resolved; else echo "no DNS"; fi',
      'if [ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; then echo "a Docker socket"; else echo "no Docker socket"; fi',
    ),
    expect: amber(0),
  });
  t.equal(hostile.stdout.content, [...targets.map((to) => `no connection to ${to}`), 'no DNS', 'no Docker socket', ''].join('\n'));
  t.match(hostile.stderr.content, /Network is unreachable/);
});

t.test("many runs of one avatar at once hold one of the kata's places, not all of them", async (t) => {
  const runner = await startRunner(t);
  const kata = await twoAvatarKata(runner, 'python');
  // Lion's runs take 3 s each, one after another: answered in turn.
  const answeredAt: number[] = [];
  const lions = Array.from({ length: 6 }, () => run(runner, kata.id, { changed: script('sleep 3'), maxSeconds: 5 }).then((a) => (answeredAt.push(performance.now()), a)));
  await sleep(500);
  const salmon = (await run(runner, kata.id, { avatar: 'salmon', changed: victimFiles('python'), maxSeconds: 20 })).body.run;
  const salmonAt = performance.now();
  t.equal(salmon.colour, 'green');
  const answers = await Promise.all(lions);
  // Lion's runs wait for each other: all but the first wait outside the kata's places.
  t.ok(salmonAt < answeredAt[1]!, "salmon's run was answered before lion's second");
  t.same(answers.map((a) => a.body.run?.colour), Array(6).fill('amber'), "all lion's runs ran, none timed out waiting");
  t.equal((await kata.runner.post('kata_old', { kata_id: kata.id })).status, 200);
});
