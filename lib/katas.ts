// Kata containers: one per kata, found by its exact name and labels, never by a
// name filter. Everything the runner knows of a kata is in its container's labels,
// so a restarted runner finds every live kata as it left it.
import type Docker from 'dockerode';
import type { FastifyBaseLogger } from 'fastify';
import { AVATARS, type AvatarName } from './args.ts';
import type { Config } from './config.ts';
import type { ContainerInfo, ContainerSummary, Engine } from './engine.ts';
import { errors, isEngineError, malformed } from './errors.ts';
import { SandboxFault } from './sandbox.ts';

export const LABEL = {
  runner: 'cyber-dojo-runner.runner',
  kataId: 'cyber-dojo-runner.kata_id',
  image: 'cyber-dojo-runner.image_name',
  deadline: 'cyber-dojo-runner.deadline',
  // Avatar uids are uidBase + 64 * slot + avatar index: a slot is unique among the
  // engine's running katas, whichever runner made them (nproc is counted per uid).
  slot: 'cyber-dojo-runner.uid_slot',
} as const;

export interface Kata {
  kataId: string;
  containerId: string;
  imageName: string;
  imageId: string;
  deadline: Date;
  slot: number;
  live: boolean; // running, and its deadline has not passed
}

export const avatarUid = (config: Config, kata: Kata, avatar: AvatarName) =>
  config.uidBase + 64 * kata.slot + AVATARS.indexOf(avatar);

// Containers that hold no processes: their slot is free, and they may be reaped.
const STOPPED = new Set(['exited', 'dead']);
// A container between create and start belongs to a kata_new under way; leave it be.
const CREATE_GRACE_MS = 60_000;
const underWay = (state: string, createdMs: number, now: number) => state === 'created' && now - createdMs < CREATE_GRACE_MS;
const SWEEP_AT_ONCE = 8;

export class Katas {
  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
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

  // Runs `work` against a live kata. A kata that expires or is removed under it
  // answers kata_id:!exists, as it would have a moment earlier.
  async withLive<T>(kataId: string, work: (kata: Kata) => Promise<T>): Promise<T> {
    const kata = await this.live(kataId);
    try {
      return await work(kata);
    } catch (e) {
      const lost = e instanceof SandboxFault || isEngineError(e, 'not_found') || isEngineError(e, 'conflict');
      if (lost && !(await this.find(kataId))?.live) throw errors.kataNotFound();
      throw e;
    }
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
      throw errors.imageNotFound(e instanceof Error ? e.message : String(e));
    }
  }

  // kata_id:exists while the kata is live; an expired or exited container of the
  // same kata is replaced.
  async create(imageName: string, kataId: string, lifetimeSeconds: number): Promise<Kata> {
    const info = await this.engine.inspectContainer(this.containerName(kataId));
    const existing = info && this.toKata(info);
    if (existing?.live) throw errors.kataExists();
    // A container not yet started is another kata_new's, under way: removing it would
    // fail that one, or, once it had started, answer 200 to both.
    if (existing && underWay(info.state, Date.parse(info.created), Date.now())) throw errors.kataExists();
    if (existing) await this.engine.removeContainer(existing.containerId);
    await this.ensureImage(imageName);
    const deadline = new Date(Date.now() + lifetimeSeconds * 1000);
    for (let attempt = 0; attempt < 10; attempt++) {
      const slot = await this.freeSlot();
      let containerId: string;
      try {
        containerId = await this.engine.createContainer(this.spec(imageName, kataId, lifetimeSeconds, deadline, slot));
      } catch (e) {
        if (isEngineError(e, 'conflict')) throw errors.kataExists();
        if (isEngineError(e, 'not_found')) throw errors.imageNotFound(e.message);
        throw e;
      }
      if (await this.slotTakenBefore(slot, containerId)) {
        await this.engine.removeContainer(containerId);
        continue;
      }
      try {
        await this.engine.startContainer(containerId);
      } catch (e) {
        await this.engine.removeContainer(containerId);
        throw e;
      }
      const imageId = (await this.engine.inspectImage(imageName))?.id ?? '';
      this.log.info({ kataId, containerId, imageName, slot, deadline }, 'kata created');
      return { kataId, containerId, imageName, imageId, deadline, slot, live: true };
    }
    throw errors.server('no free uid slot after 10 attempts');
  }

  // Removes the kata's container, whatever its state; true when it was live.
  async remove(kataId: string): Promise<boolean> {
    const kata = await this.find(kataId);
    if (!kata) return false;
    await this.engine.removeContainer(kata.containerId);
    this.log.info({ kataId, containerId: kata.containerId }, 'kata removed');
    return kata.live;
  }

  // The reaper's sweep: removes this runner's kata containers that have exited or
  // passed their deadline. Several sweeps may race; each container is reported once.
  async sweep(): Promise<string[]> {
    const now = Date.now();
    // A container that never started past its grace is a kata_new that died half-way.
    const reapable = (c: ContainerSummary) =>
      !underWay(c.state, c.created * 1000, now) &&
      (c.state === 'created' || STOPPED.has(c.state) || !(new Date(c.labels[LABEL.deadline] ?? 0).getTime() > now));
    const due = (await this.engine.listContainers([`${LABEL.runner}=${this.config.runnerName}`])).filter(reapable);
    const removed: string[] = [];
    // A removal is ~100 ms of the engine's time, mostly waiting: a few at once.
    for (let i = 0; i < due.length; i += SWEEP_AT_ONCE) {
      await Promise.all(
        due.slice(i, i + SWEEP_AT_ONCE).map(async (c) => {
          if (!(await this.engine.removeContainer(c.id))) return;
          const kataId = c.labels[LABEL.kataId] ?? '';
          this.log.info({ kataId, containerId: c.id, state: c.state, deadline: c.labels[LABEL.deadline] }, 'kata reaped');
          removed.push(kataId);
        }),
      );
    }
    return removed;
  }

  private async freeSlot(): Promise<number> {
    const taken = new Set<number>();
    for (const c of await this.engine.listContainers([LABEL.slot])) {
      if (!STOPPED.has(c.state)) taken.add(Number(c.labels[LABEL.slot]));
    }
    let slot = 0;
    while (taken.has(slot)) slot++;
    if (this.config.uidBase + 64 * (slot + 1) > 2 ** 31 - 1) throw errors.server('uid slots exhausted');
    return slot;
  }

  // Two kata_new calls may pick the same free slot at once: the container created
  // first keeps it (the engine's nanosecond creation times order them), and the
  // other tries again. Each checks after its own create, so one always sees the other.
  private async slotTakenBefore(slot: number, containerId: string): Promise<boolean> {
    const rivals = (await this.engine.listContainers([`${LABEL.slot}=${slot}`]))
      .filter((c) => c.id !== containerId && !STOPPED.has(c.state));
    if (rivals.length === 0) return false;
    const ours = await this.engine.inspectContainer(containerId);
    if (!ours) return true;
    for (const rival of rivals) {
      const theirs = await this.engine.inspectContainer(rival.id);
      if (theirs && (theirs.created < ours.created || (theirs.created === ours.created && theirs.id < ours.id))) return true;
    }
    return false;
  }

  private spec(imageName: string, kataId: string, lifetimeSeconds: number, deadline: Date, slot: number): Docker.ContainerCreateOptions {
    const limits = this.config.limits;
    const tmpfs: Record<string, string> = {
      '/run/cyber-dojo': 'rw,noexec,nosuid,nodev,size=16m,mode=0700',
      '/tmp': `rw,exec,nosuid,nodev,size=${limits.tmpBytes},mode=1777`,
      '/var/tmp': `rw,noexec,nosuid,nodev,size=${limits.tmpBytes},mode=1777`,
    };
    // Each avatar's sandbox and home are its own size-limited tmpfs, owned by its uid
    // from the start: one avatar filling its disk leaves the others theirs.
    AVATARS.forEach((avatar, index) => {
      const uid = this.config.uidBase + 64 * slot + index;
      const options = `rw,exec,nosuid,nodev,mode=0700,uid=${uid},gid=${uid}`;
      // Its file count is bounded too: every run reads the sandbox's list of files.
      tmpfs[`/sandboxes/${avatar}`] = `${options},size=${limits.sandboxBytes},nr_inodes=${limits.sandboxFiles}`;
      tmpfs[`/home/${avatar}`] = `${options},size=${limits.homeBytes}`;
    });
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
      },
      NetworkDisabled: true,
      HostConfig: {
        Init: true,
        NetworkMode: 'none',
        // Root in the container is only ever the runner (sandbox.sh): it switches to an
        // avatar's uid, and puts the run's clock ahead of the avatar's processes.
        CapDrop: ['ALL'],
        CapAdd: ['SETUID', 'SETGID', 'SYS_NICE'],
        SecurityOpt: ['no-new-privileges'],
        PidsLimit: limits.pids,
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        NanoCpus: limits.nanoCpus,
        ShmSize: limits.shmBytes,
        Ulimits: [
          { Name: 'nproc', Soft: limits.nproc, Hard: limits.nproc },
          { Name: 'nofile', Soft: limits.nofile, Hard: limits.nofile },
          { Name: 'fsize', Soft: limits.fsizeBytes, Hard: limits.fsizeBytes },
          { Name: 'core', Soft: 0, Hard: 0 },
        ],
        Tmpfs: tmpfs,
        LogConfig: { Type: 'none', Config: {} },
      },
    };
  }
}
