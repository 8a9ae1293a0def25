// Kata containers: one per kata, found by its exact name and labels, never by a
// name filter. Everything the runner knows of a kata is in its container's labels,
// so a restarted runner finds every live kata as it left it.
import type Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { AVATARS, type AvatarName } from './args.ts';
import type { Config } from './config.ts';
import type { ContainerInfo, ContainerSummary, Engine } from './engine.ts';
import { errors, isEngineError, malformed } from './errors.ts';
import { runLimits, SANDBOX_USER } from './cyber-dojo.ts';
import type { Target } from './sandbox.ts';
import type { Helper } from './session.ts';

export const LABEL = {
  runner: 'cyber-dojo-runner.runner',
  kataId: 'cyber-dojo-runner.kata_id',
  image: 'cyber-dojo-runner.image_name',
  deadline: 'cyber-dojo-runner.deadline',
  // Avatar uids are uidBase + 64 * slot + avatar index: a slot is unique among the
  // engine's katas, whichever runner made them (nproc is counted per uid).
  slot: 'cyber-dojo-runner.uid_slot',
  // The kata's claim on its slot (see claimSlot), and the claim's own labels.
  claimToken: 'cyber-dojo-runner.claim_token',
  claim: 'cyber-dojo-runner.uid_claim', // the slot
  claimFor: 'cyber-dojo-runner.claim_for', // the kata container's name
  claimRunner: 'cyber-dojo-runner.claim_runner',
  kind: 'cyber-dojo-runner.kind', // avatars, or cyber-dojo (one user, cyber-dojo's conventions)
} as const;

export type KataKind = 'avatars' | 'cyber-dojo';

export interface Kata {
  kataId: string;
  containerId: string;
  imageName: string;
  imageId: string;
  deadline: Date;
  slot: number;
  kind: KataKind;
  live: boolean; // running, and its deadline has not passed
}

export const avatarUid = (config: Config, kata: Kata, avatar: AvatarName) =>
  config.uidBase + 64 * kata.slot + AVATARS.indexOf(avatar);

// Each avatar's own TCP ports, the only ones its runs may bind or connect to: the
// 100 from 10000 + 100 × its index (the kata's ephemeral ports start above them all).
const PORTS_BASE = 10000;
const PORTS_PER_AVATAR = 100;
export const avatarPorts = (avatar: AvatarName): [number, number] => {
  const low = PORTS_BASE + PORTS_PER_AVATAR * AVATARS.indexOf(avatar);
  return [low, low + PORTS_PER_AVATAR - 1];
};

// Who a helper request is for.
export const avatarIn = (config: Config, kata: Kata, avatar: AvatarName): Target => {
  const uid = avatarUid(config, kata, avatar);
  return { avatar, uid, gid: uid, sandbox: `/sandboxes/${avatar}`, home: `/home/${avatar}`, lockSeconds: config.avatarLockSeconds, ports: avatarPorts(avatar) };
};

// Containers that hold no processes: their slot is free, and they may be reaped.
const STOPPED = new Set(['exited', 'dead']);
// A container between create and start belongs to a kata_new under way; leave it be.
const CREATE_GRACE_MS = 60_000;
const underWay = (state: string, createdMs: number, now: number) => state === 'created' && now - createdMs < CREATE_GRACE_MS;
const SWEEP_AT_ONCE = 8;
// A claim whose kata container is not there (or not its) is stale after this long:
// longer than any kata_new takes between its claim and its container.
const CLAIM_GRACE_MS = 10 * 60_000;
// Slots a kata_new picks among, at random, so that concurrent ones rarely collide.
const SLOT_CHOICES = 16;

export class Katas {
  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
    private readonly helper: Helper,
    private readonly log: FastifyBaseLogger,
  ) {}

  containerName(kataId: string): string {
    return `${this.config.runnerName}-kata-${kataId}`;
  }

  private toKata(info: ContainerInfo): Kata | null {
    const labels = info.labels;
    const kataId = labels[LABEL.kataId];
    if (labels[LABEL.runner] !== this.config.runnerName || !kataId) return null;
    const deadline = new Date(labels[LABEL.deadline] ?? 0);
    return {
      kataId,
      containerId: info.id,
      imageName: labels[LABEL.image] ?? '',
      imageId: info.image,
      deadline,
      slot: Number(labels[LABEL.slot]),
      kind: labels[LABEL.kind] === 'cyber-dojo' ? 'cyber-dojo' : 'avatars',
      live: info.running && deadline.getTime() > Date.now(),
    };
  }

  async find(kataId: string): Promise<Kata | null> {
    const info = await this.engine.inspectContainer(this.containerName(kataId));
    return info && this.toKata(info);
  }

  // A live kata, or kata_id:!exists.
  async live(kataId: string): Promise<Kata> {
    const kata = await this.find(kataId);
    if (!kata?.live) throw errors.kataNotFound();
    return kata;
  }

  // The engine's own reference check has the last word on a name: it also checks a
  // digest's algorithm and length (and Docker 20.10 refuses IPv6 registry hosts).
  async hasImage(imageName: string): Promise<boolean> {
    try {
      return (await this.engine.inspectImage(imageName)) !== null;
    } catch (e) {
      if (isEngineError(e, 'invalid')) throw malformed('image_name', e.message);
      throw e;
    }
  }

  async ensureImage(imageName: string): Promise<void> {
    if (await this.hasImage(imageName)) return;
    try {
      await this.engine.pullImage(imageName, this.config.imagePullTimeoutMs);
    } catch (e) {
      if (isEngineError(e, 'unavailable')) throw errors.engineUnavailable(e.message);
      if (isEngineError(e, 'forbidden')) throw e; // this runner may not pull: its deployment's fault
      throw errors.imageNotFound(e instanceof Error ? e.message : String(e));
    }
  }

  // kata_id:exists while the kata is live; an expired or exited container of the
  // same kata is replaced. A kata for cyber-dojo's own images (kind 'cyber-dojo') has
  // their one user's sandbox and home, and no avatars' (lib/cyber-dojo.ts).
  async create(imageName: string, kataId: string, lifetimeSeconds: number, kind: KataKind = 'avatars'): Promise<Kata> {
    // A kata_old may remove the container under way: then this kata_new came after it.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.createOnce(imageName, kataId, lifetimeSeconds, kind);
      } catch (e) {
        if (!(e instanceof RemovedUnderWay) || attempt >= 2) throw e instanceof RemovedUnderWay ? errors.server(e.message) : e;
      }
    }
  }

  private async createOnce(imageName: string, kataId: string, lifetimeSeconds: number, kind: KataKind): Promise<Kata> {
    const name = this.containerName(kataId);
    const info = await this.engine.inspectContainer(name);
    const existing = info && this.toKata(info);
    if (existing?.live) throw errors.kataExists();
    // A container not yet started is another kata_new's, under way: removing it would
    // fail that one, or, once it had started, answer 200 to both.
    if (existing && underWay(info.state, Date.parse(info.created), Date.now())) throw errors.kataExists();
    if (info && existing) await this.removeKata(info);
    await this.ensureImage(imageName);
    const deadline = new Date(Date.now() + lifetimeSeconds * 1000);
    // Only avatars' uids are the kata's own: cyber-dojo's images have one uid for all.
    const token = kind === 'avatars' ? randomBytes(8).toString('hex') : '';
    const slot = token ? await this.claimSlot(imageName, name, token) : 0;
    let containerId: string;
    try {
      containerId = await this.engine.createContainer(this.spec(imageName, kataId, lifetimeSeconds, deadline, slot, token, kind));
    } catch (e) {
      await this.releaseSlot(slot, token);
      if (isEngineError(e, 'conflict')) throw errors.kataExists();
      if (isEngineError(e, 'not_found')) throw errors.imageNotFound(e.message);
      throw e;
    }
    try {
      await this.engine.startContainer(containerId);
      // The caller's image need not hold anything of the runner's: its helper goes in.
      await this.engine.putArchive(containerId, '/', await this.helper.tar());
    } catch (e) {
      const removed = isEngineError(e, 'not_found') || isEngineError(e, 'conflict');
      await this.engine.removeContainer(containerId);
      await this.releaseSlot(slot, token);
      throw removed ? new RemovedUnderWay(`kata ${kataId}: container removed while starting`) : e;
    }
    const imageId = (await this.engine.inspectImage(imageName))?.id ?? '';
    this.log.info({ kataId, containerId, imageName, slot, deadline }, 'kata created');
    return { kataId, containerId, imageName, imageId, deadline, slot, kind, live: true };
  }

  // This runner's live katas, as the engine lists them.
  async listLive(): Promise<{ kataId: string; imageName: string; deadline: Date }[]> {
    const now = Date.now();
    const list = await this.engine.listContainers([`${LABEL.runner}=${this.config.runnerName}`]);
    return list
      .map((c) => ({ kataId: c.labels[LABEL.kataId] ?? '', imageName: c.labels[LABEL.image] ?? '', deadline: new Date(c.labels[LABEL.deadline] ?? 0), running: c.state === 'running' }))
      .filter((k) => k.running && k.deadline.getTime() > now)
      .map(({ kataId, imageName, deadline }) => ({ kataId, imageName, deadline }));
  }

  // Removes the kata's container, whatever its state; true when it was live.
  async remove(kataId: string): Promise<boolean> {
    const info = await this.engine.inspectContainer(this.containerName(kataId));
    const kata = info && this.toKata(info);
    if (!info || !kata) return false;
    await this.removeKata(info);
    this.log.info({ kataId, containerId: kata.containerId }, 'kata removed');
    return kata.live;
  }

  // A kata container and its slot's claim; false when another removed it first.
  private async removeKata(c: { id: string; labels: Record<string, string> }): Promise<boolean> {
    const removed = await this.engine.removeContainer(c.id);
    const token = c.labels[LABEL.claimToken];
    if (token) await this.releaseSlot(Number(c.labels[LABEL.slot]), token);
    return removed;
  }

  // The reaper's sweep: removes this runner's kata containers that have exited or
  // passed their deadline, and the engine's stale slot claims. Several sweeps may
  // race; each container is reported once.
  async sweep(): Promise<string[]> {
    const now = Date.now();
    // A container that never started past its grace is a kata_new that died half-way.
    const reapable = (c: ContainerSummary) =>
      !underWay(c.state, c.created * 1000, now) &&
      (c.state === 'created' || STOPPED.has(c.state) || !(new Date(c.labels[LABEL.deadline] ?? 0).getTime() > now));
    const due = (await this.engine.listContainers([`${LABEL.runner}=${this.config.runnerName}`])).filter(reapable);
    const removed: string[] = [];
    // A removal is ~100 ms of the engine's time, mostly waiting: a few at once.
    await this.atOnce(due, async (c) => {
      if (!(await this.removeKata(c))) return;
      const kataId = c.labels[LABEL.kataId] ?? '';
      this.log.info({ kataId, containerId: c.id, state: c.state, deadline: c.labels[LABEL.deadline] }, 'kata reaped');
      removed.push(kataId);
    });
    const claims = await this.engine.listContainers([LABEL.claim]);
    await this.atOnce(claims, async (claim) => {
      if (await this.isStale(claim)) await this.engine.removeContainer(claim.id);
    });
    return removed;
  }

  private async atOnce<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
    for (let i = 0; i < items.length; i += SWEEP_AT_ONCE) await Promise.all(items.slice(i, i + SWEEP_AT_ONCE).map(work));
  }

  // A slot is claimed by creating a container named for its first uid: names are unique
  // on the engine, so exactly one kata_new gets each slot, whatever the number of runner
  // processes and however busy the host. The claim is never started; it goes with its kata.
  private claimName(slot: number): string {
    return `cyber-dojo-uids-${this.config.uidBase + 64 * slot}`;
  }

  private async claimSlot(imageName: string, kataContainer: string, token: string): Promise<number> {
    for (let round = 0; round < 10; round++) {
      const taken = new Set((await this.engine.listContainers([LABEL.claim])).map((c) => Number(c.labels[LABEL.claim])));
      const free: number[] = [];
      for (let slot = 0; free.length < SLOT_CHOICES; slot++) if (!taken.has(slot)) free.push(slot);
      while (free.length) {
        const slot = free.splice(Math.floor(Math.random() * free.length), 1)[0]!;
        if (this.config.uidBase + 64 * (slot + 1) > 2 ** 31 - 1) throw errors.server('uid slots exhausted');
        try {
          await this.engine.createContainer(this.claimSpec(imageName, slot, kataContainer, token));
          return slot;
        } catch (e) {
          if (!isEngineError(e, 'conflict')) throw e;
        }
        const claim = await this.engine.inspectContainer(this.claimName(slot));
        if (claim && (await this.isStale({ id: claim.id, labels: claim.labels, created: Date.parse(claim.created) / 1000 }))) {
          await this.engine.removeContainer(claim.id);
        }
      }
    }
    throw errors.server('no free uid slot after 10 rounds');
  }

  // A claim is stale when its kata container is gone, has stopped, or is another
  // container of that kata's (another token), past the grace of a kata_new under way.
  private async isStale(claim: { id: string; labels: Record<string, string>; created: number }): Promise<boolean> {
    if (Date.now() - claim.created * 1000 < CLAIM_GRACE_MS) return false;
    const kata = await this.engine.inspectContainer(claim.labels[LABEL.claimFor] ?? '');
    return !kata || STOPPED.has(kata.state) || kata.labels[LABEL.claimToken] !== claim.labels[LABEL.claimToken];
  }

  private async releaseSlot(slot: number, token: string): Promise<void> {
    if (!token) return;
    const claim = await this.engine.inspectContainer(this.claimName(slot));
    if (claim?.labels[LABEL.claimToken] === token) await this.engine.removeContainer(claim.id);
  }

  private claimSpec(imageName: string, slot: number, kataContainer: string, token: string): Docker.ContainerCreateOptions {
    return {
      name: this.claimName(slot),
      Image: imageName,
      Entrypoint: ['cyber-dojo-uid-claim'], // never started
      Labels: {
        [LABEL.claim]: String(slot),
        [LABEL.claimFor]: kataContainer,
        [LABEL.claimToken]: token,
        [LABEL.claimRunner]: this.config.runnerName,
      },
      NetworkDisabled: true,
      HostConfig: { NetworkMode: 'none', LogConfig: { Type: 'none', Config: {} } },
    };
  }

  private spec(imageName: string, kataId: string, lifetimeSeconds: number, deadline: Date, slot: number, token: string, kind: KataKind): Docker.ContainerCreateOptions {
    const limits = this.config.limits;
    const tmpfs: Record<string, string> = {
      '/run/cyber-dojo': 'rw,noexec,nosuid,nodev,size=16m,mode=0700',
      '/tmp': `rw,exec,nosuid,nodev,size=${limits.tmpBytes},mode=1777`,
      '/var/tmp': `rw,noexec,nosuid,nodev,size=${limits.tmpBytes},mode=1777`,
    };
    // Each user's sandbox and home are its own size-limited tmpfs, owned by it from the
    // start: one avatar filling its disk leaves the others theirs. Its file count is
    // bounded too: every run reads the sandbox's list of files.
    const mount = (sandbox: string, home: string, uid: number, gid: number) => {
      const options = `rw,exec,nosuid,nodev,mode=0700,uid=${uid},gid=${gid}`;
      tmpfs[sandbox] = `${options},size=${limits.sandboxBytes},nr_inodes=${limits.sandboxFiles}`;
      tmpfs[home] = `${options},size=${limits.homeBytes}`;
    };
    if (kind === 'cyber-dojo') mount(SANDBOX_USER.sandbox, SANDBOX_USER.home, SANDBOX_USER.uid, SANDBOX_USER.gid);
    else if (this.engine.ownsMounts) AVATARS.forEach((avatar, index) => {
      const uid = this.config.uidBase + 64 * slot + index;
      mount(`/sandboxes/${avatar}`, `/home/${avatar}`, uid, uid);
    });
    // An engine that cannot give a mount an owner (Swarm, whose tmpfs is noexec too):
    // each avatar makes its own folders in the kata's own file system (prepareAvatars).
    // Today's cyber-dojo's katas have their runner's limits (the helper, unprivileged in
    // this, can only lower the kata's).
    const own = kind === 'cyber-dojo' ? runLimits(imageName) : limits;
    return {
      name: this.containerName(kataId),
      Image: imageName,
      Entrypoint: ['sleep'],
      Cmd: [String(lifetimeSeconds)],
      User: 'root',
      WorkingDir: '/',
      Labels: {
        [LABEL.runner]: this.config.runnerName,
        [LABEL.kataId]: kataId,
        [LABEL.image]: imageName,
        [LABEL.deadline]: deadline.toISOString(),
        [LABEL.slot]: String(slot),
        [LABEL.claimToken]: token,
        [LABEL.kind]: kind,
      },
      NetworkDisabled: true,
      HostConfig: {
        Init: true,
        NetworkMode: 'none',
        // Root in the container is only ever the runner (its helper): it switches to an
        // avatar's uid, and puts the run's clock ahead of the avatar's processes.
        CapDrop: ['ALL'],
        CapAdd: ['SETUID', 'SETGID', 'SYS_NICE'],
        SecurityOpt: ['no-new-privileges'],
        PidsLimit: limits.pids,
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        NanoCpus: limits.nanoCpus,
        ShmSize: limits.shmBytes,
        // The kata's System V and POSIX IPC, bounded (its namespace is its own): all of it
        // together holds no more than its /dev/shm, and a segment no process holds goes.
        Sysctls: {
          'kernel.shmmax': String(limits.shmBytes),
          'kernel.shmall': String(Math.ceil(limits.shmBytes / 4096)),
          'kernel.shmmni': '64',
          'kernel.shm_rmid_forced': '1',
          'kernel.msgmni': '64',
          'kernel.msgmnb': '65536',
          'kernel.msgmax': '8192',
          'kernel.sem': '250 8000 32 64',
          'fs.mqueue.queues_max': '64',
          'fs.mqueue.msg_max': '10',
          'fs.mqueue.msgsize_max': '8192',
        },
        Ulimits: [
          { Name: 'nproc', Soft: own.nproc, Hard: own.nproc },
          { Name: 'nofile', Soft: own.nofile, Hard: own.nofile },
          { Name: 'fsize', Soft: own.fsizeBytes, Hard: own.fsizeBytes },
          { Name: 'core', Soft: 0, Hard: 0 },
        ],
        Tmpfs: tmpfs,
        LogConfig: { Type: 'none', Config: {} },
      },
    };
  }
}

// The kata's container went (a kata_old) while this kata_new was starting it.
class RemovedUnderWay extends Error {}
