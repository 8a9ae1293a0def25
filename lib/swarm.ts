// The engine seam over a Docker Swarm (RUNNER_ENGINE=swarm; DOCKER_HOST a manager): a
// kata is a service of one replica, placed on a node labelled katas=true, restarted on
// failure only (a kata's sleep ends 0 at its deadline, and is not restarted; a task
// rescheduled after its node is lost runs until the reaper removes it at the deadline).
// Swarm has no exec: a kata's session, its files and its helper go to the engine of the
// node its task runs on, named by that node's label cyber-dojo-runner.engine. The
// functions do not know which engine they run on.
//
// What a service cannot be given that a container can, in the engine this was built on
// (Docker 20.10): ulimits (the helper sets each run's own), no-new-privileges (the
// helper sets it for each run), a tmpfs owned by a uid (each avatar makes its own
// folders: ownsMounts is false), a /dev/shm size, a swap limit, network none (kata
// nodes' engines have no bridge: a kata has only lo).
import Docker from 'dockerode';
import type { FastifyBaseLogger } from 'fastify';
import { DockerEngine, engineCall, engineFind, type ContainerInfo, type ContainerSummary, type Engine, type ExecSession, type ImageInfo, type SessionOptions } from './engine.ts';
import { EngineError } from './errors.ts';
import type { Metrics } from './metrics.ts';

export const NODE_ENGINE_LABEL = 'cyber-dojo-runner.engine';
export const KATA_NODE_LABEL = 'katas';
// How long a kata's task may take to be running, and how often that is looked at.
const TASK_WAIT_MS = 120_000;
const TASK_POLL_MS = 250;

interface Task {
  ID: string;
  NodeID?: string;
  DesiredState: string;
  Status: { State: string; ContainerStatus?: { ContainerID?: string } };
}

// A tmpfs option string ("rw,exec,size=67108864,mode=0700,...") as a service's mount.
function tmpfsMount(target: string, options: string) {
  const option = (name: string) => new RegExp(`(?:^|,)${name}=([^,]+)`).exec(options)?.[1];
  const size = option('size');
  const mode = option('mode');
  return { Type: 'tmpfs', Target: target, TmpfsOptions: { ...(size ? { SizeBytes: Number(size) } : {}), ...(mode ? { Mode: parseInt(mode, 8) } : {}) } };
}

export class SwarmEngine implements Engine {
  readonly ownsMounts = false;
  private readonly manager: DockerEngine;
  private readonly nodes = new Map<string, Promise<DockerEngine>>(); // by node id

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly metrics: Metrics,
    private readonly docker: Docker = new Docker(),
  ) {
    this.manager = new DockerEngine(log, metrics, docker);
  }

  private call<T>(op: string, target: string, fn: () => Promise<T>, tolerate: EngineError['kind'][] = []): Promise<T> {
    return engineCall(this.log, this.metrics, op, target, fn, tolerate);
  }

  private find<T>(op: string, target: string, fn: () => Promise<T>): Promise<T | null> {
    return engineFind(this.log, this.metrics, op, target, fn);
  }

  ping(timeoutMs: number): Promise<void> {
    return this.manager.ping(timeoutMs);
  }

  inspectImage(name: string): Promise<ImageInfo | null> {
    return this.manager.inspectImage(name);
  }

  pullImage(name: string, timeoutMs: number): Promise<void> {
    return this.manager.pullImage(name, timeoutMs);
  }

  private tasks(serviceId: string): Promise<Task[]> {
    return this.call('task.list', serviceId, () => this.docker.listTasks({ filters: { service: [serviceId] } }) as Promise<Task[]>);
  }

  private static running(tasks: Task[]): Task | undefined {
    return tasks.find((t) => t.Status.State === 'running' && t.DesiredState === 'running');
  }

  // A service's state, as a container's would be: running, created (not yet, or never,
  // started), or exited (its task ended and none is to follow).
  private static state(tasks: Task[]): string {
    if (SwarmEngine.running(tasks)) return 'running';
    return tasks.some((t) => t.DesiredState === 'running') || tasks.length === 0 ? 'created' : 'exited';
  }

  async inspectContainer(name: string): Promise<ContainerInfo | null> {
    const service = await this.find('service.inspect', name, () => this.docker.getService(name).inspect());
    if (!service) return null;
    const state = SwarmEngine.state(await this.tasks(service.ID));
    return {
      id: service.ID,
      name: service.Spec.Name,
      image: service.Spec.TaskTemplate.ContainerSpec.Image,
      labels: service.Spec.Labels ?? {},
      running: state === 'running',
      state,
      created: service.CreatedAt,
    };
  }

  async listContainers(labels: string[]): Promise<ContainerSummary[]> {
    const services = await this.call('service.list', labels.join(','), () => this.docker.listServices({ filters: { label: labels } }));
    return Promise.all(
      services.map(async (s) => ({
        id: s.ID!,
        labels: s.Spec?.Labels ?? {},
        state: SwarmEngine.state(await this.tasks(s.ID!)),
        created: Date.parse(s.CreatedAt!) / 1000,
      })),
    );
  }

  // A container's options as a service of no replicas yet: startContainer gives it one.
  async createContainer(options: Docker.ContainerCreateOptions): Promise<string> {
    const host = options.HostConfig ?? {};
    const spec = {
      Name: options.name,
      Labels: options.Labels,
      TaskTemplate: {
        ContainerSpec: {
          Image: options.Image,
          Command: options.Entrypoint as string[] | undefined,
          Args: options.Cmd as string[] | undefined,
          Labels: options.Labels,
          User: options.User,
          Dir: options.WorkingDir,
          Init: host.Init ?? false,
          CapabilityAdd: host.CapAdd,
          CapabilityDrop: host.CapDrop,
          Sysctls: host.Sysctls,
          Mounts: Object.entries(host.Tmpfs ?? {}).map(([target, tmpfs]) => tmpfsMount(target, tmpfs)),
        },
        Resources: { Limits: { NanoCPUs: host.NanoCpus, MemoryBytes: host.Memory, Pids: host.PidsLimit } },
        RestartPolicy: { Condition: 'on-failure', MaxAttempts: 3 },
        Placement: { Constraints: [`node.labels.${KATA_NODE_LABEL} == true`] },
        LogDriver: { Name: 'none' },
      },
      Mode: { Replicated: { Replicas: 0 } },
    };
    const service = await this.call('service.create', options.name ?? '-', () => this.docker.createService(spec as unknown as Docker.CreateServiceOptions), ['conflict']);
    return service.id;
  }

  async startContainer(id: string): Promise<void> {
    const service = this.docker.getService(id);
    const info = await this.call('service.inspect', id, () => service.inspect());
    await this.call('service.update', id, () => service.update({ version: info.Version.Index, ...info.Spec, Mode: { Replicated: { Replicas: 1 } } }));
    await this.taskContainer(id);
  }

  async removeContainer(id: string): Promise<boolean> {
    try {
      await this.call('service.remove', id, () => this.docker.getService(id).remove(), ['not_found']);
      return true;
    } catch (e) {
      if (e instanceof EngineError && e.kind === 'not_found') return false;
      throw e;
    }
  }

  // The node engine running a kata's task, and that task's container; waits while the
  // task is on its way (after a start, or a node lost).
  private async taskContainer(serviceId: string): Promise<{ engine: DockerEngine; containerId: string }> {
    for (const giveUp = Date.now() + TASK_WAIT_MS; ; await new Promise((r) => setTimeout(r, TASK_POLL_MS))) {
      const tasks = await this.tasks(serviceId);
      const task = SwarmEngine.running(tasks);
      const containerId = task?.Status.ContainerStatus?.ContainerID;
      if (task?.NodeID && containerId) return { engine: await this.nodeEngine(task.NodeID), containerId };
      if (SwarmEngine.state(tasks) === 'exited') throw new EngineError('not_found', `service ${serviceId} has no running task`, 404);
      if (Date.now() > giveUp) throw new EngineError('failed', `service ${serviceId}: no task running after ${TASK_WAIT_MS} ms`);
    }
  }

  private nodeEngine(nodeId: string): Promise<DockerEngine> {
    let engine = this.nodes.get(nodeId);
    if (!engine) {
      engine = this.call('node.inspect', nodeId, () => this.docker.getNode(nodeId).inspect()).then((node: { Spec?: { Labels?: Record<string, string> } }) => {
        const endpoint = node.Spec?.Labels?.[NODE_ENGINE_LABEL];
        if (!endpoint) throw new EngineError('failed', `node ${nodeId} has no ${NODE_ENGINE_LABEL} label`);
        const url = new URL(endpoint);
        const docker = url.protocol === 'unix:' ? new Docker({ socketPath: url.pathname }) : new Docker({ host: url.hostname, port: Number(url.port), protocol: 'http' });
        return new DockerEngine(this.log, this.metrics, docker);
      });
      this.nodes.set(nodeId, engine);
      engine.catch(() => this.nodes.delete(nodeId));
    }
    return engine;
  }

  async openSession(serviceId: string, options: SessionOptions): Promise<ExecSession> {
    const { engine, containerId } = await this.taskContainer(serviceId);
    return engine.openSession(containerId, options);
  }

  async putArchive(serviceId: string, path: string, tar: Buffer): Promise<void> {
    const { engine, containerId } = await this.taskContainer(serviceId);
    await engine.putArchive(containerId, path, tar);
  }

  async readFile(serviceId: string, path: string, maxBytes: number): Promise<Buffer | null> {
    const { engine, containerId } = await this.taskContainer(serviceId);
    return engine.readFile(containerId, path, maxBytes);
  }
}
