// Co-tenants in one kata (issue 14): nothing of an avatar outlives its run but its
// files, and no avatar can reach another's memory, descriptors, sockets or ports.
// Lion attacks; salmon, beside it, must still get its colour.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { inContainer, startRunner } from './helper.ts';
import { attackAndEnd, twoAvatarKata, victimFiles } from './attack-helper.ts';
import { run } from './run-helper.ts';

t.setTimeout(600_000);

const python = (code: string) => ({ 'cyber-dojo.sh': 'python3 -u attack.py', 'attack.py': code });

// What of the kata's IPC is left, from inside it: System V objects, POSIX queues, /dev/shm.
const ipcLeft = (containerId: string) =>
  inContainer(containerId, 'for k in shm msg sem; do echo "$k $(($(wc -l </proc/sysvipc/$k) - 1))"; done; echo "mqueue $(ls -A /dev/mqueue | wc -l)"; echo "shm files $(ls -A /dev/shm | wc -l)"');
const NOTHING_LEFT = 'shm 0\nmsg 0\nsem 0\nmqueue 0\nshm files 0\n';

t.test("an avatar's IPC objects outlive neither its run nor avatar_old, and the kata's IPC is bounded", async (t) => {
  const runner = await startRunner(t);
  const outcome = await attackAndEnd(t, runner, {
    name: 'System V and POSIX IPC',
    files: python(`
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
CREATE = 0o1000 | 0o666
made = 0
for i in range(30):  # 30 segments of 4 MiB, each filled and detached at once
    sid = libc.shmget(0, 4 << 20, CREATE)
    if sid < 0: break
    address = libc.shmat(sid, None, 0)
    ctypes.memset(address, 1, 4 << 20)
    libc.shmdt(ctypes.c_void_p(address))
    made += 1
attached = 0
for i in range(30):  # and 30 more, kept attached
    sid = libc.shmget(0, 4 << 20, CREATE)
    if sid < 0: break
    ctypes.memset(libc.shmat(sid, None, 0), 1, 4 << 20)
    attached += 1
print('segments detached', made)
print('segments held', attached)
print('queues', sum(libc.msgget(0, CREATE) >= 0 for _ in range(100)))
print('semaphore sets', sum(libc.semget(0, 1, CREATE) >= 0 for _ in range(100)))
print('posix queues', sum(libc.mq_open(b'/lion-%d' % i, os.O_CREAT | os.O_RDWR, 0o666, None) >= 0 for i in range(100)))
open('/dev/shm/lion', 'w').write('x' * 4096)
print('shm left', open('/proc/sysvipc/shm').read().count('\\n') - 1)
time.sleep(10)
`),
    expect: { colour: 'timed_out', timed_out: true, oom_killed: false },
    before: async ({ containerId }) => void t.equal(await ipcLeft(containerId), NOTHING_LEFT, 'the kata starts with none'),
    after: async ({ containerId, hostile }) => {
      // The kata's bounds: 16 MiB of segments, 64 queues, 64 sets, 64 POSIX queues.
      t.match(hostile.stdout.content, /^segments detached 30\nsegments held 4\nqueues 64\nsemaphore sets 64\nposix queues (\d|[1-5]\d|6[0-4])\nshm left 4\n$/);
      t.equal(await ipcLeft(containerId), NOTHING_LEFT, "after lion's run, nothing of its IPC is left");
    },
  });
  t.equal(outcome.victim.oom_killed, false);
});

t.test('the memory guard charges an avatar with all it holds (files, /dev/shm, memory), and no memfd can hide any', async (t) => {
  const runner = await startRunner(t, { KATA_MEMORY: '256m' });
  // Salmon's tests hold 60 MB of honest memory for 4 s while lion fills the kata.
  const victim = victimFiles('python');
  victim['cyber-dojo.sh'] = `python3 -c "import time; b = b'v' * (60 << 20); time.sleep(4)" || { echo "salmon's 60 MB died: $?" >&2; exit 99; }\n${victim['cyber-dojo.sh']}`;
  const outcome = await attackAndEnd(t, runner, {
    name: 'memory held outside processes',
    files: {
      'cyber-dojo.sh': [
        // 139 MB in lion's sandbox, home and /dev/shm: held by no process.
        'dd if=/dev/zero of=big bs=1M count=62 2>/dev/null',
        'dd if=/dev/zero of="$HOME/big" bs=1M count=62 2>/dev/null',
        'dd if=/dev/zero of=/dev/shm/big bs=1M count=15 2>/dev/null',
        `python3 -c "import os; os.memfd_create('hidden')" 2>&1 | tail -1`,
        // Then, once salmon holds its memory, a process that is still smaller than
        // salmon's when the kata is full: the largest process is salmon's.
        'sleep 1.5',
        `python3 -c "import time
b = []
while True: b.append(b'x' * (1 << 20)); time.sleep(0.02)"`,
      ].join('\n'),
    },
    victim,
    maxSeconds: 6,
    expect: { colour: 'amber', status: 137, oom_killed: true, timed_out: false },
    nextDeleted: ['big'],
  });
  t.match(outcome.hostile.stdout.content, /PermissionError: \[Errno 1\] Operation not permitted/, 'memfd_create is refused');
});

t.test("a run answers in time whatever another avatar does to get its descriptors, and only with its own output", async (t) => {
  const runner = await startRunner(t);
  const kata = await twoAvatarKata(runner, 'python');
  // Lion waits on an abstract socket for salmon's stdout and stderr, to hold them.
  const holder = run(runner, kata.id, {
    changed: python(`
import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('\\0cyber-dojo-collusion')
s.listen(1)
s.settimeout(4)
try:
    c, _ = s.accept()
    message, fds, flags, address = socket.recv_fds(c, 16, 4)
    for fd in fds: __import__('os').write(fd, b'injected by lion\\n')
    print('received', len(fds))
    time.sleep(6)
except socket.timeout:
    print('nobody came')
`),
    maxSeconds: 10,
  });
  await sleep(1000);
  const started = performance.now();
  const salmon = await run(runner, kata.id, {
    avatar: 'salmon',
    changed: python(`
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect('\\0cyber-dojo-collusion')
    socket.send_fds(s, [b'x'], [1, 2])
    print('passed its descriptors')
except OSError as e:
    print('refused', e.errno)
`),
    maxSeconds: 2,
  });
  const ms = performance.now() - started;
  t.match(salmon.body.run, { status: 0, stdout: { content: 'refused 1\n' }, stderr: { content: '' } }, "salmon cannot reach lion's abstract socket (EPERM), and its output is its own");
  t.ok(ms < 3000, `salmon's run answered in ${Math.round(ms)} ms, within max_seconds + 1 s`);
  t.equal((await holder).body.run.stdout.content, 'nobody came\n');
  t.equal((await runner.post('kata_old', { kata_id: kata.id })).status, 200);
});

t.test("no avatar can bind or reach another's TCP ports, nor reach its abstract sockets", async (t) => {
  const runner = await startRunner(t);
  const kata = await twoAvatarKata(runner, 'python');
  // Lion listens on a port of its own and on an abstract socket, for 4 s.
  const lion = run(runner, kata.id, {
    changed: python(`
import os, socket, time
low, high = map(int, os.environ['CYBER_DOJO_PORTS'].split('-'))
def bind(port):
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', port)); s.listen(1); return s
    except OSError as e:
        print('bind', port, 'refused', e.errno)
mine = bind(low)
bind(8000)
c = socket.create_connection(('127.0.0.1', low)); print('connected to its own port')
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); u.bind('\\0lions-socket'); u.listen(1)
print('listening', low)
time.sleep(4)
`),
    maxSeconds: 8,
  });
  await sleep(1500);
  const salmon = (
    await run(runner, kata.id, {
      avatar: 'salmon',
      changed: python(`
import socket
low = ${10000 + 100 * 28}  # lion's first port
for what, attempt in [
    ("lion's port", lambda: socket.create_connection(('127.0.0.1', low), timeout=1)),
    ("bind lion's port", lambda: socket.socket().bind(('127.0.0.1', low + 1))),
    ("lion's abstract socket", lambda: socket.socket(socket.AF_UNIX).connect('\\0lions-socket')),
]:
    try:
        attempt(); print(what, 'reached')
    except OSError as e:
        print(what, 'refused', e.errno)
`),
      maxSeconds: 5,
    })
  ).body.run;
  t.equal(salmon.stdout.content, "lion's port refused 13\nbind lion's port refused 13\nlion's abstract socket refused 1\n");
  t.equal((await lion).body.run.stdout.content, `bind 8000 refused 13\nconnected to its own port\nlistening ${10000 + 100 * 28}\n`);
  t.equal((await runner.post('kata_old', { kata_id: kata.id })).status, 200);
});

t.test('avatar_old leaves nothing of the avatar anywhere in the kata', async (t) => {
  const runner = await startRunner(t);
  const kata = await twoAvatarKata(runner, 'python');
  t.equal((await run(runner, kata.id, { changed: python("open('/dev/shm/lion', 'w').write('x')\nimport os\nos.makedirs(os.environ['HOME'] + '/cache', exist_ok=True)") })).status, 200);
  t.equal((await runner.post('avatar_old', { kata_id: kata.id, avatar_name: 'lion' })).status, 200);
  t.equal(await ipcLeft(kata.containerId), NOTHING_LEFT);
  // Its sandbox and home are mounts its uid owns from the kata's start: empty now.
  t.equal(
    await inContainer(kata.containerId, `find / -xdev -uid ${kata.lionUid} ! -path /sandboxes/lion ! -path /home/lion 2>/dev/null; find /sandboxes /home /dev/shm -mindepth 2 -uid ${kata.lionUid}`),
    '',
    'no file of its uid',
  );
  t.equal(await inContainer(kata.containerId, 'grep -c "^lion:" /etc/passwd || true'), '0\n');
  t.equal((await runner.post('kata_old', { kata_id: kata.id })).status, 200);
});
