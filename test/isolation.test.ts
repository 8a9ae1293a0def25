// One avatar against another in the kata they share (issue 6): lion cannot read, write,
// list or signal what is salmon's, nor the kata's own processes; symlinks lion plants
// lead nowhere; setuid programs give lion nothing. Each attack is also checked as in
// adversarial.test.ts (attack-helper.ts): bound, no process left, both avatars green.
import t from 'tap';
import { docker, inContainer, startRunner } from './helper.ts';
import { attack, end, normalFiles, victimFiles } from './attack-helper.ts';
import { run } from './run-helper.ts';

t.setTimeout(600_000);

const amber = { colour: 'amber', status: 0, timed_out: false, oom_killed: false };
// The python start point's files, as salmon's runs left them.
const SALMON_FILES = ['cyber-dojo.sh', 'hiker.py', 'test_hiker.py'];
const sorted = (text: string) => text.split('\n').filter(Boolean).sort();

t.test("lion cannot read, write, list or signal salmon's files and processes, nor the kata's", async (t) => {
  const runner = await startRunner(t);
  // Salmon leaves a file in its home and in /dev/shm (the one folder avatars share), and
  // a sleep that must live to its end.
  const victim = victimFiles('python');
  victim['cyber-dojo.sh'] = [
    'echo secret >"$HOME/secret.txt"',
    'echo secret >/dev/shm/salmon.txt',
    'sleep 4 &',
    'sleeper=$!',
    victim['cyber-dojo.sh']!.trimEnd(),
    'status=$?',
    'wait "$sleeper" || { echo "salmon\'s sleep was signalled" >&2; exit 99; }',
    'exit $status',
    '',
  ].join('\n');
  const attempts: [string, string][] = [
    ["list salmon's sandbox", 'ls /sandboxes/salmon'],
    ["read salmon's hiker.py", 'cat /sandboxes/salmon/hiker.py'],
    ["write in salmon's sandbox", 'touch /sandboxes/salmon/x'],
    ["list salmon's home", 'ls /home/salmon'],
    ["read salmon's home file", 'cat /home/salmon/secret.txt'],
    ["read salmon's /dev/shm file", 'cat /dev/shm/salmon.txt'],
    ["delete salmon's /dev/shm file", 'rm -f /dev/shm/salmon.txt'],
    ["write salmon's /dev/shm file", 'echo lion >/dev/shm/salmon.txt'],
    ['write in the shared /tmp', 'echo lion >/tmp/lion.txt'],
    ['write in the shared /var/tmp', 'echo lion >/var/tmp/lion.txt'],
    ["list the runner's work folders", 'ls /run/cyber-dojo'],
    ["read salmon's output so far", 'cat /proc/$sleeper/fd/1'],
    ["read salmon's environment", 'cat /proc/$sleeper/environ'],
    ["list salmon's working folder", 'ls /proc/$sleeper/cwd/'],
    ["stop salmon's sleep", 'kill -STOP $sleeper'],
    ["kill salmon's sleep", 'kill -9 $sleeper'],
    ["kill the kata's init", 'kill -9 1'],
    ["kill the kata's sleep", 'kill -9 $kata_sleep'],
  ];
  const hostile = [
    'pid_of() { # name uid: the first process of that name and real uid, from /proc',
    '  local status key value _ name uid',
    '  for status in /proc/[0-9]*/status; do',
    '    name= uid=',
    '    while read -r key value _; do',
    '      case $key in Name:) name=$value ;; Uid:) uid=$value; break ;; esac',
    '    done 2>/dev/null <"$status"',
    '    [ "$name:$uid" = "$1:$2" ] && { status=${status#/proc/}; echo "${status%/status}"; return 0; }',
    '  done',
    '  return 1',
    '}',
    'try() { # what command: says whether the command was allowed',
    '  if eval "$2" >/dev/null 2>&1; then echo "ALLOWED: $1"; else echo "denied: $1"; fi',
    '}',
    'until sleeper=$(pid_of sleep "$(id -u salmon)"); do sleep 0.05; done',
    'kata_sleep=$(pid_of sleep 0) && echo "found the sleeps"',
    ...attempts.map(([what, command]) => `try "${what}" '${command.replace(/'/g, "'\\''")}'`),
    '',
  ].join('\n');
  const outcome = await attack(t, runner, {
    name: "lion against salmon's files and processes, and the kata's",
    files: { 'cyber-dojo.sh': hostile },
    maxSeconds: 3,
    victim,
    victimLeads: true,
    expect: amber,
  });
  t.equal(outcome.hostile.stdout.content, ['found the sleeps', ...attempts.map(([what]) => `denied: ${what}`), ''].join('\n'));
  const salmon = `${outcome.salmonUid}:${outcome.salmonUid}`;
  t.same(sorted(await inContainer(outcome.containerId, 'ls -A /sandboxes/salmon', salmon)), SALMON_FILES, "salmon's sandbox holds its files alone");
  t.equal(await inContainer(outcome.containerId, 'cat /home/salmon/secret.txt', salmon), 'secret\n', "salmon's file is as it left it");
  t.equal(await inContainer(outcome.containerId, 'ls -A /dev/shm /tmp /var/tmp'), '/dev/shm:\n\n/tmp:\n\n/var/tmp:\n', "and nothing of either avatar's is left in the shared folders");
  const state = (await docker.getContainer(outcome.containerId).inspect()).State;
  t.equal(state.Running, true, 'the kata lives on');
  await end(t, outcome);
});

t.test("symlinks lion plants are not returned, and changed_files are not written through them", async (t) => {
  const runner = await startRunner(t);
  const outcome = await attack(t, runner, {
    name: 'symlinks and a FIFO',
    files: {
      'cyber-dojo.sh': [
        'ln -s /sandboxes/salmon to-salmon',
        'ln -s / to-root',
        'ln -s /etc/passwd to-passwd',
        'ln -s hiker.py to-hiker.py',
        'mkfifo fifo',
        '',
      ].join('\n'),
    },
    expect: amber,
  });
  t.same(outcome.hostile.created, {}, 'no link, nor the FIFO, is returned as a created file');

  // A later run names files under the links: the caller cannot know they are links.
  const through = await run(runner, outcome.id, {
    changed: { ...normalFiles('python'), 'to-salmon/pwned.txt': 'pwned\n', 'to-root/tmp/pwned': 'pwned\n' },
  });
  t.equal(through.body.run?.colour, 'green', 'the run through the links is green');
  const lion = `${outcome.lionUid}:${outcome.lionUid}`;
  const salmon = `${outcome.salmonUid}:${outcome.salmonUid}`;
  t.same(sorted(await inContainer(outcome.containerId, 'ls -A /sandboxes/salmon', salmon)), SALMON_FILES, "nothing landed in salmon's sandbox");
  t.notMatch(await inContainer(outcome.containerId, 'ls -A /tmp /'), /pwned/, 'nor in /tmp or /');
  t.same(
    sorted(await inContainer(outcome.containerId, "cd /sandboxes/lion && find to-salmon to-root -printf '%y %p\\n'", lion)),
    ['d to-root', 'd to-root/tmp', 'd to-salmon', 'f to-root/tmp/pwned', 'f to-salmon/pwned.txt'],
    "the files are in lion's sandbox, in folders that replaced the links",
  );
  await end(t, outcome);
});

t.test('setuid-root programs and user namespaces give lion nothing', async (t) => {
  const runner = await startRunner(t);
  const planted = ['/usr/local/bin/rootbash', '/tmp/rootbash'];
  const outcome = await attack(t, runner, {
    name: 'setuid-root bash, su, passwd, unshare',
    before: async ({ containerId }) => {
      t.equal(await inContainer(containerId, 'find / -xdev -perm /6000 -type f'), '', 'the image has no setuid or setgid program');
      // Root in the kata owns these folders, so it may plant them: one copy on the
      // image's own filesystem, one on /tmp (mounted nosuid).
      const plant = planted.map((path) => `cp /bin/bash ${path} && chmod 4755 ${path} && stat -c '%a %U' ${path}`).join(' && ');
      t.equal(await inContainer(containerId, plant), '4755 root\n4755 root\n', 'planted, setuid root');
    },
    files: {
      'cyber-dojo.sh': [
        ...planted.map((path) => `echo "${path}: euid $(${path} -p -c 'id -u')"`),
        'if su -c true root </dev/null >/dev/null 2>&1; then echo "su: root"; else echo "su: refused"; fi',
        'if passwd -d lion </dev/null >/dev/null 2>&1; then echo "passwd: changed"; else echo "passwd: refused"; fi',
        // Root in a user namespace of its own would be a start for other tricks.
        'if unshare -Ur true </dev/null >/dev/null 2>&1; then echo "unshare: root in a namespace"; else echo "unshare: refused"; fi',
        '',
      ].join('\n'),
    },
    expect: amber,
  });
  t.equal(outcome.hostile.stdout.content, [...planted.map((path) => `${path}: euid ${outcome.lionUid}`), 'su: refused', 'passwd: refused', 'unshare: refused', ''].join('\n'));
  await end(t, outcome);
});
