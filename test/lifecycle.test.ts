// The kata and avatar lifecycle (issue 3), through the HTTP API against the real engine:
// what each function answers, and what it leaves behind in the engine and the container.
import t from 'tap';
import { AVATARS } from '../lib/args.ts';
import { LABEL } from '../lib/katas.ts';
import { BASE, containerOf, docker, endKata, error, inContainer, kataId, kataWithAvatar, processesOf, startRunner, type Runner } from './helper.ts';
import { avatarOf, run, runScript } from './run-helper.ts';

// JSON, with the line separators that TAP would take for line breaks escaped too.
const show = (value: unknown) => String(JSON.stringify(value)).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

// The containers of one kata on the engine, whichever state they are in.
const containersOf = (runner: Runner, id: string) =>
  docker.listContainers({ all: true, filters: { label: [`${LABEL.runner}=${runner.config.runnerName}`, `${LABEL.kataId}=${id}`] } });

// 200 while the engine has the container, 404 once it is gone.
const inspectStatus = (id: string) =>
  docker.getContainer(id).inspect().then(() => 200, (e: { statusCode?: number }) => e.statusCode);

t.test('kata_new starts one hardened container per kata; kata_old removes it', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  const before = Date.now();
  const created = await runner.post('kata_new', { image_name: BASE, kata_id: id });
  const after = Date.now();
  t.equal(created.status, 200);
  t.strictSame(Object.keys(created.body.kata_new).sort(), ['deadline', 'image_name', 'kata_id']);
  t.equal(created.body.kata_new.kata_id, id);
  t.equal(created.body.kata_new.image_name, BASE);
  const deadline = created.body.kata_new.deadline;
  t.match(deadline, ISO_UTC, 'the deadline is ISO-8601 UTC');
  t.ok(Date.parse(deadline) >= before + 86400_000 - 1000 && Date.parse(deadline) <= after + 86400_000 + 1000, 'a day from now by default');
  t.strictSame(await runner.post('kata_exists', { kata_id: id }), { status: 200, body: { kata_exists: true } });
  t.strictSame(await runner.post('kata_new', { image_name: BASE, kata_id: id }), { status: 409, body: error('kata_new', 'kata_id:exists') });

  const list = await containersOf(runner, id);
  t.equal(list.length, 1, 'exactly one container for the kata, found by its labels');
  const info = await docker.getContainer(list[0]!.Id).inspect();
  t.equal(info.Name, `/${runner.config.runnerName}-kata-${id}`);
  t.equal(info.Config.Labels[LABEL.runner], runner.config.runnerName);
  t.equal(info.Config.Labels[LABEL.kataId], id);
  t.equal(info.Config.Labels[LABEL.image], BASE);
  t.equal(info.Config.Labels[LABEL.deadline], deadline, 'the deadline label is the answered deadline');
  t.match(info.Config.Labels[LABEL.slot], /^\d+$/);
  t.equal(info.HostConfig.Init, true);
  t.equal(info.HostConfig.NetworkMode, 'none');
  t.strictSame(info.HostConfig.CapDrop, ['ALL']);
  t.ok(info.HostConfig.SecurityOpt?.includes('no-new-privileges'));
  t.strictSame([info.Path, ...info.Args], ['sleep', '86400']);
  // Inside: an init is PID 1 with the kata's sleep under it, no network but loopback,
  // and even root's processes can gain no privileges.
  t.equal(await inContainer(info.Id, `tr '\\0' ' ' </proc/1/cmdline`), '/sbin/docker-init -- sleep 86400 ');
  t.equal(await inContainer(info.Id, 'ls /sys/class/net'), 'lo\n');
  t.match(await inContainer(info.Id, 'grep NoNewPrivs /proc/self/status'), /^NoNewPrivs:\s+1$/m);

  t.strictSame(await runner.post('kata_old', { kata_id: id }), { status: 200, body: { kata_old: {} } });
  t.strictSame(await runner.post('kata_exists', { kata_id: id }), { status: 200, body: { kata_exists: false } });
  t.equal(await inspectStatus(info.Id), 404, 'the container is gone from the engine');
  t.strictSame(await runner.post('kata_old', { kata_id: id }), { status: 404, body: error('kata_old', 'kata_id:!exists') });
  t.strictSame(await runner.containers(), []);
});

t.test('lifetime_seconds sets the deadline and the sleep; outside 60..604800 or not an integer it is malformed', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  for (const lifetime of [60, 604800]) {
    const id = kataId();
    const before = Date.now();
    const created = await runner.post('kata_new', { image_name: BASE, kata_id: id, lifetime_seconds: lifetime });
    t.equal(created.status, 200, `lifetime ${lifetime}`);
    const deadline = Date.parse(created.body.kata_new.deadline);
    t.ok(deadline >= before + lifetime * 1000 - 1000 && deadline <= Date.now() + lifetime * 1000 + 1000, `deadline ${lifetime} s from now`);
    const info = await docker.getContainer(await containerOf(runner, id)).inspect();
    t.strictSame([info.Path, ...info.Args], ['sleep', String(lifetime)]);
    t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  }
  for (const lifetime of [59, 604801, 0, -60, 60.5, '86400', null, true, [3600]]) {
    t.strictSame(
      await runner.post('kata_new', { image_name: BASE, kata_id: kataId(), lifetime_seconds: lifetime }),
      { status: 400, body: error('kata_new', 'lifetime_seconds:malformed') },
      `lifetime_seconds ${JSON.stringify(lifetime)}`,
    );
  }
  t.strictSame(await runner.containers(), [], 'no container for a refused kata_new');
});

t.test('kata_new replaces an exited container of the same kata that was not yet reaped', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const old = await endKata(runner, id);
  t.equal((await docker.getContainer(old).inspect()).State.Status, 'exited', 'the old container is still there, exited');
  t.strictSame((await runner.post('kata_exists', { kata_id: id })).body, { kata_exists: false }, 'an exited kata does not exist');
  t.strictSame(await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: {} }), { status: 404, body: error('avatar_new', 'kata_id:!exists') });

  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  const renewed = await containerOf(runner, id);
  t.not(renewed, old, 'a new container');
  t.equal(await inspectStatus(old), 404, 'the exited one is removed');
  t.equal((await containersOf(runner, id)).length, 1);
  t.strictSame((await runner.post('kata_exists', { kata_id: id })).body, { kata_exists: true });

  // kata_old of an exited kata: it had already ended, and its container goes too.
  await endKata(runner, id);
  t.strictSame(await runner.post('kata_old', { kata_id: id }), { status: 404, body: error('kata_old', 'kata_id:!exists') });
  t.strictSame(await runner.containers(), []);
});

t.test('kata_new answers image_name:!exists for an image it cannot find or pull, image_name:malformed for a bad reference', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  // Neither on the engine nor pullable: Docker Hub and a local registry port, both unreachable.
  for (const image of ['cyber-dojo-runner/no-such-image:never', 'localhost:1/no-such-image:never']) {
    t.strictSame(await runner.post('kata_new', { image_name: image, kata_id: kataId() }), { status: 404, body: error('kata_new', 'image_name:!exists') }, image);
  }
  for (const image of ['Upper/Case', 'has space', '', 'a//b', ':tag', 'name:', 'name@sha256:abc', '-lead', 42, null]) {
    t.strictSame(
      await runner.post('kata_new', { image_name: image, kata_id: kataId() }),
      { status: 400, body: error('kata_new', 'image_name:malformed') },
      `image_name ${JSON.stringify(image)}`,
    );
  }
  t.strictSame(await runner.post('kata_new', { kata_id: kataId() }), { status: 400, body: error('kata_new', 'image_name:malformed') }, 'no image_name');
  t.strictSame(await runner.containers(), []);
});

t.test("avatar_new: the avatar's own user, group, home and 0700 sandbox, files written as the avatar, cyber-dojo.sh not run", { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: id })).status, 200);
  // Each run appends to runs.log: had avatar_new run it, the first run would find it there.
  const script = [
    'echo ran >> runs.log',
    'whoami',
    'id',
    'echo "HOME=$HOME"',
    'grep "^lion:" /etc/passwd',
    "stat -c '%a %U:%G' /sandboxes/lion",
    "stat -c '%U:%G %n' -- cyber-dojo.sh hiker.txt sub sub/dir sub/dir/deep.txt",
    'rm -r sub && echo sub removed',
  ].join('\n');
  const files = { 'cyber-dojo.sh': script, 'hiker.txt': 'hi', 'sub/dir/deep.txt': 'deep' };
  t.strictSame(await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: files }), { status: 200, body: { avatar_new: {} } });
  t.strictSame((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: true });
  t.strictSame((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'salmon' })).body, { avatar_exists: false }, 'another avatar has not entered');

  const uid = (await avatarOf(runner, id)).uid;
  const answer = await run(runner, id);
  t.equal(answer.status, 200);
  const { stdout, stderr, status, created, changed, deleted } = answer.body.run;
  t.equal(stderr.content, '');
  t.equal(status, 0);
  t.equal(
    stdout.content,
    [
      'lion',
      `uid=${uid}(lion) gid=${uid}(lion) groups=${uid}(lion)`,
      'HOME=/home/lion',
      `lion:x:${uid}:${uid}::/home/lion:/bin/bash`,
      '700 lion:lion',
      'lion:lion cyber-dojo.sh',
      'lion:lion hiker.txt',
      'lion:lion sub',
      'lion:lion sub/dir',
      'lion:lion sub/dir/deep.txt',
      'sub removed',
      '',
    ].join('\n'),
  );
  t.strictSame(created, { 'runs.log': { content: 'ran\n', truncated: false } }, 'cyber-dojo.sh ran for the first time in this run');
  t.strictSame(changed, {});
  t.strictSame(deleted, ['sub/dir/deep.txt'], "the avatar deleted its own folders");
  t.strictSame(await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: {} }), { status: 409, body: error('avatar_new', 'avatar_name:exists') });
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('avatar uids are unique across katas on the engine', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const files = { 'cyber-dojo.sh': 'id -u' };
  const ids = [await kataWithAvatar(runner, files), await kataWithAvatar(runner, files)];
  const uids: number[] = [];
  for (const id of ids) {
    const answer = await run(runner, id);
    uids.push(Number(answer.body.run.stdout.content));
    t.equal(uids.at(-1), (await avatarOf(runner, id)).uid, "the uid is the kata's slot's");
  }
  t.not(uids[0], uids[1], "two katas' lions have different uids");
  for (const id of ids) t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('avatar_old: its processes, sandbox, home and user go; entering again starts from the new starting files', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = await kataWithAvatar(runner, {
    // A folder the avatar made unreadable to itself must go too.
    // And so must what it left in the kata's shared temporary folders.
    'cyber-dojo.sh': 'echo secret > "$HOME/secret.txt"; mkdir -p made/deep; echo x > made/deep/f.txt; chmod 0 made/deep made; mkdir /tmp/lion-dir; touch /tmp/lion-dir/f /var/tmp/lion.txt /dev/shm/lion.txt',
    'old.txt': 'old',
  });
  t.equal((await run(runner, id)).status, 200);
  const container = await containerOf(runner, id);
  const uid = (await avatarOf(runner, id)).uid;
  t.equal(await inContainer(container, 'ls /sandboxes/lion /home/lion', `${uid}:${uid}`), '/home/lion:\nsecret.txt\ntmp\n\n/sandboxes/lion:\ncyber-dojo.sh\nmade\nold.txt\n');
  // The avatar may also lock itself out of its own sandbox and home.
  await inContainer(container, 'chmod 0 /sandboxes/lion /home/lion; nohup sleep 1000 >/dev/null 2>&1 &', `${uid}:${uid}`);
  t.equal(await processesOf(container, uid), 1, 'a process of the avatar outside any run');

  t.strictSame(await runner.post('avatar_old', { kata_id: id, avatar_name: 'lion' }), { status: 200, body: { avatar_old: {} } });
  t.strictSame((await runner.post('avatar_exists', { kata_id: id, avatar_name: 'lion' })).body, { avatar_exists: false });
  t.equal(await processesOf(container, uid), 0, 'its processes are killed');
  t.equal(await inContainer(container, 'find /sandboxes/lion /home/lion -mindepth 1 2>&1', `${uid}:${uid}`), '', 'its sandbox and home are empty, and open to it');
  t.equal(await inContainer(container, 'cat /etc/passwd /etc/group | grep -c "^lion:"'), '0\n', 'its user and group are gone');
  t.equal(await inContainer(container, 'ls -A /tmp /var/tmp /dev/shm'), '/dev/shm:\n\n/tmp:\n\n/var/tmp:\n', 'and its files in the shared temporary folders');
  t.strictSame(await runner.post('avatar_old', { kata_id: id, avatar_name: 'lion' }), { status: 404, body: error('avatar_old', 'avatar_name:!exists') });
  t.strictSame(await run(runner, id), { status: 404, body: error('run', 'avatar_name:!exists') });

  const files = { 'cyber-dojo.sh': 'stat -c %a /sandboxes/lion "$HOME"; find /sandboxes/lion "$HOME" -mindepth 1 | sort', 'new.txt': 'new' };
  t.equal((await runner.post('avatar_new', { kata_id: id, avatar_name: 'lion', starting_files: files })).status, 200);
  t.equal(
    (await run(runner, id)).body.run.stdout.content,
    '700\n700\n/home/lion/tmp\n/sandboxes/lion/cyber-dojo.sh\n/sandboxes/lion/new.txt\n',
    'only the new starting files, in a 0700 sandbox and home',
  );
  t.equal(await inContainer(container, 'cat /etc/passwd /etc/group | grep -c "^lion:"'), '2\n', 'one user and one group again');
  t.equal((await runner.post('kata_old', { kata_id: id })).status, 200);
  t.strictSame(await runner.containers(), []);
});

t.test('the avatar functions and run answer kata_id:!exists for a kata that does not exist', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const id = kataId();
  const avatar = { kata_id: id, avatar_name: 'lion' };
  t.strictSame(await runner.post('avatar_new', { ...avatar, starting_files: {} }), { status: 404, body: error('avatar_new', 'kata_id:!exists') });
  t.strictSame(await runner.post('avatar_old', avatar), { status: 404, body: error('avatar_old', 'kata_id:!exists') });
  t.strictSame(await runner.post('avatar_exists', avatar), { status: 404, body: error('avatar_exists', 'kata_id:!exists') });
  t.strictSame(await runScript(runner, id, 'true'), { status: 404, body: error('run', 'kata_id:!exists') });
  t.strictSame(await runner.containers(), [], 'nothing was created for it');
});

t.test('kata_id, avatar_name and starting_files are checked exactly as the contract says, before anything happens', { timeout: 120_000 }, async (t) => {
  const runner = await startRunner(t);
  const live = kataId();
  t.equal((await runner.post('kata_new', { image_name: BASE, kata_id: live })).status, 200);
  // Every function that takes the argument, with a body that is good but for it.
  const bodies: Record<string, Record<string, unknown>> = {
    kata_new: { image_name: BASE, kata_id: kataId() },
    kata_old: { kata_id: live },
    kata_exists: { kata_id: live },
    avatar_new: { kata_id: live, avatar_name: 'lion', starting_files: {} },
    avatar_old: { kata_id: live, avatar_name: 'lion' },
    avatar_exists: { kata_id: live, avatar_name: 'lion' },
    run: { kata_id: live, avatar_name: 'lion', changed_files: {}, deleted_filenames: [], max_seconds: 10 },
  };
  const refused = async (fn: string, arg: string, value: unknown) => {
    const body = { ...bodies[fn], [arg]: value };
    if (value === undefined) delete body[arg];
    t.strictSame(await runner.post(fn, body), { status: 400, body: error(fn, `${arg}:malformed`) }, `${fn} ${arg} ${show(value)}`);
  };
  const badKataIds = ['abcdef0123', 'ABCDEF012', 'ABCDEF01234', 'ABCDEF012G', 'ABCDEF0123\n', ' ABCDEF012', '', 1234567890, null, undefined];
  for (const fn of Object.keys(bodies)) {
    for (const value of badKataIds) await refused(fn, 'kata_id', value);
  }
  const badAvatars = ['scissors', 'Lion', 'LION', ' lion', 'lion ', '', 42, null, ['lion'], undefined];
  for (const fn of ['avatar_new', 'avatar_old', 'avatar_exists', 'run']) {
    for (const value of badAvatars) await refused(fn, 'avatar_name', value);
  }
  const badFiles = [[], 'text', 42, null, { 'a.txt': 42 }, { 'a.txt': null }, { 'a.txt': {} }, { 'a.txt': ['x'] }, { 'a.txt': '\ud800' }, { 'line\nbreak': 42 }, { 'line\u2028break': null }, undefined];
  for (const value of badFiles) await refused('avatar_new', 'starting_files', value);

  t.strictSame((await runner.post('kata_exists', { kata_id: live })).body, { kata_exists: true }, 'no refused kata_old removed the kata');
  t.strictSame((await runner.post('avatar_exists', { kata_id: live, avatar_name: 'lion' })).body, { avatar_exists: false }, 'no refused avatar_new entered');
  t.equal((await runner.containers()).length, 1, 'no refused kata_new made a container');
  // The contract's 64 avatars, in its order (an avatar's index is part of its uid).
  const contractAvatars = `alligator antelope bat bear bee beetle buffalo butterfly
    cheetah crab deer dolphin eagle elephant flamingo fox frog gopher gorilla heron hippo hummingbird hyena jellyfish
    kangaroo kingfisher koala leopard lion lizard lobster moose mouse ostrich owl panda parrot peacock penguin porcupine
    puffin rabbit raccoon ray rhino salmon seal shark skunk snake spider squid squirrel starfish swan tiger
    toucan tuna turtle vulture walrus whale wolf zebra`.split(/\s+/);
  t.strictSame([...AVATARS], contractAvatars);
  for (const avatar of contractAvatars) {
    t.equal((await runner.post('avatar_exists', { kata_id: live, avatar_name: avatar })).status, 200, avatar);
  }
  t.equal((await runner.post('kata_old', { kata_id: live })).status, 200);
  t.strictSame(await runner.containers(), []);
});
