// The thin host: a Fastify app that mounts function modules, answers errors as the
// contract says, documents itself from the same schemas, and runs cron functions.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure from '@fastify/under-pressure';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type Docker from 'dockerode';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { createTask, validate as validCron, type ScheduledTask } from 'node-cron';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Activity } from './activity.ts';
import { isLoopback, requireToken } from './auth.ts';
import { ColourRulesCache } from './colour.ts';
import type { Config } from './config.ts';
import { DockerEngine, type Engine } from './engine.ts';
import { EngineError, errors, malformed, RunnerError } from './errors.ts';
import type { RunnerFunction, Services } from './function.ts';
import { avatarIn, Katas } from './katas.ts';
import { Puller, RagLambdas } from './cyber-dojo.ts';
import { ANY, argsOf, cyberDojoFace } from './cyber-dojo-http.ts';
import { getMetrics } from './metrics.ts';
import { RunQueue } from './run-queue.ts';
import { AVATARS } from './args.ts';
import { prepareAvatars } from './sandbox.ts';
import { Helper, Session, Sessions } from './session.ts';
import { SwarmEngine } from './swarm.ts';
import { loadStartPoints, type StartPoint } from './start-points.ts';

export interface HostOptions {
  config: Config;
  functions: RunnerFunction[]; // every function there is; config.functions picks the mounted ones
  engine?: Engine; // a fake, for unit tests of pure logic only
  docker?: Docker; // a client for another engine (DOCKER_HOST by default)
  logger?: FastifyServerOptions['logger'];
}

const HOSTNAME = hostname();
const ALWAYS = ['metrics'];
// A caller's x-request-id is kept when it is a plain token; otherwise one is made.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const functionOf = (url: string) => new URL(url, 'http://runner').pathname.replace(/^\/+/, '');

const ErrorBody = Type.Object(
  { exception: Type.Object({ function: Type.String(), message: Type.String({ description: '<arg>:<reason>' }) }) },
  { $id: 'RunnerError' },
);

// Fastify's own errors (body parsing, validation) become the contract's codes.
function contractError(error: FastifyError & { validation?: { instancePath: string; keyword: string; params: Record<string, unknown> }[] }): RunnerError {
  if (error instanceof RunnerError) return error;
  if (error instanceof EngineError) {
    return error.kind === 'unavailable' ? errors.engineUnavailable(error.message) : errors.server(`engine: ${error.message}`);
  }
  if (error.validation?.length) {
    const first = error.validation[0]!;
    const arg = first.instancePath.split('/')[1] ?? (first.keyword === 'required' ? String(first.params.missingProperty) : 'json');
    return malformed(arg, error.message);
  }
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return errors.jsonTooLarge();
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) return errors.jsonMalformed(error.message);
  return errors.server(error.stack ?? String(error));
}

export async function buildHost(options: HostOptions): Promise<FastifyInstance> {
  const { config } = options;
  // The functions of the API this host speaks (config.api).
  const available = options.functions.filter((f) => (f.api ?? 'runner') === config.api);
  const byName = new Map(available.map((f) => [f.name, f]));
  // Every process answers /metrics about itself, whatever else it mounts.
  const chosen = config.functions === 'all' ? [] : [...new Set([...config.functions, ...ALWAYS.filter((name) => byName.has(name))])];
  const mounted = (config.functions === 'all' ? available : chosen.map((name) => byName.get(name))) as RunnerFunction[];
  const unknown = config.functions === 'all' ? [] : config.functions.filter((name) => !byName.has(name));
  if (unknown.length) throw new Error(`RUNNER_FUNCTIONS: no function ${unknown.join(', ')} (there are ${[...byName.keys()].join(', ')})`);

  const app = Fastify({
    logger: options.logger ?? { level: process.env.LOG_LEVEL ?? 'info' },
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    bodyLimit: config.bodyLimitBytes,
    routerOptions: { ignoreTrailingSlash: true },
    // Wrong types are malformed, never coerced; unknown fields are left alone.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const metrics = getMetrics();
  const engine = options.engine ?? (config.engine === 'swarm' ? new SwarmEngine(app.log, metrics, options.docker) : new DockerEngine(app.log, metrics, options.docker));
  const helper = Helper.load(config.helperFile);
  const katas = new Katas(engine, config, helper, app.log);
  // Where a kata's mounts cannot be its avatars' own, each avatar makes its folders first.
  const prepare = async (session: Session) => {
    if (session.kata.kind === 'avatars') await prepareAvatars(session, AVATARS.map((avatar) => avatarIn(config, session.kata, avatar)));
  };
  const sessions = new Sessions(engine, katas, helper, app.log, engine.ownsMounts ? undefined : prepare);
  let startPoints: StartPoint[] | undefined;
  const services: Services = {
    config,
    engine,
    katas,
    sessions,
    colourRules: new ColourRulesCache(engine, app.log),
    runQueue: new RunQueue(
      { runsAtOnce: config.runsAtOnce, processLimit: config.runQueueLimit, kataLimit: config.kataQueueLimit, maxWaitMs: config.runQueueWaitMs },
      metrics,
    ),
    metrics,
    underPressure: () => app.isUnderPressure(),
    activity: new Activity(),
    puller: new Puller(engine, config, app.log),
    ragLambdas: new RagLambdas(engine, config, app.log),
    startPoints: () => (startPoints ??= loadStartPoints(config.startPointsDir, config.imagePrefix)),
    log: app.log,
  };

  // Callers (and curl -d) may omit the content type: every body is parsed as JSON.
  // Plain JSON.parse: `__proto__` and `constructor` are legal filenames, kept as own keys, never prototypes.
  // Today's cyber-dojo API reads and answers bodies its own way (cyberDojoFace).
  const cyberDojo = config.api === 'cyber-dojo';
  if (cyberDojo) cyberDojoFace(app);
  else {
    const json = app.getDefaultJsonParser('ignore', 'ignore');
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'string' }, json);
  }
  app.addSchema(ErrorBody);
  // Only watches: /ready answers 503 while the process is over its limits, so that a
  // load balancer routes around it; other requests go on.
  await app.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxHeapUsedBytes: config.maxHeapBytes,
    pressureHandler: () => {},
  });
  await app.register(swagger, {
    openapi: {
      info: { title: 'cyber-dojo runner', version: config.sha.slice(0, 7), description: 'Runs cyber-dojo tests, one container per kata, one uid per avatar. Errors answer {exception: {function, message}}.' },
      components: { securitySchemes: { token: { type: 'http', scheme: 'bearer', description: 'RUNNER_TOKEN, when the runner has one' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // Answers given while closing end their connection: one kept alive would hold
  // close() for the whole keep-alive timeout after the last request under way.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (request, reply) => {
    // Which process answered: a deployment's replicas tell themselves apart by it.
    reply.header('x-runner-host', HOSTNAME);
    reply.header('x-request-id', request.id);
    if (closing) reply.header('connection', 'close');
  });

  const pathOf = (f: RunnerFunction) => f.path ?? `/${f.name}`;
  const open = new Set(mounted.filter((f) => f.open).map((f) => pathOf(f).slice(1)));
  requireToken(app, config.tokens, open);
  if (!config.tokens.length && !isLoopback(config.host)) {
    app.log.warn({ host: config.host }, 'no RUNNER_TOKEN: anyone who can reach this port can create katas');
  }

  if (!cyberDojo) app.setErrorHandler((error: FastifyError, request, reply) => {
    const e = contractError(error);
    const fn = (request.routeOptions.config as { fn?: string } | undefined)?.fn ?? functionOf(request.url);
    if (e.status >= 500) request.log.error({ err: error, detail: e.detail }, `${fn} failed`);
    else request.log.info({ code: e.code, detail: e.detail }, `${fn} refused`);
    metrics.httpErrors.inc({ function: fn, message: e.code });
    if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
    return reply.status(e.status).send({ exception: { function: fn, message: e.code } });
  });
  if (!cyberDojo) app.setNotFoundHandler((request, reply) => {
    const fn = functionOf(request.url);
    metrics.httpErrors.inc({ function: fn, message: errors.functionNotFound().code });
    return reply.status(404).send({ exception: { function: fn, message: errors.functionNotFound().code } });
  });

  for (const f of mounted) {
    const key = f.key ?? f.name;
    app.route({
      method: f.method === 'ANY' ? [...ANY] : f.method,
      url: pathOf(f),
      config: { fn: f.name },
      schema: {
        summary: f.summary,
        ...(f.body ? { body: f.body } : {}),
        ...(f.open || !config.tokens.length ? {} : { security: [{ token: [] }] }),
        response: {
          200: f.produces ? f.result : Type.Object({ [key]: f.result }),
          ...(cyberDojo ? {} : { '4xx': Type.Ref(ErrorBody), '5xx': Type.Ref(ErrorBody) }),
        },
      },
      handler: async (request, reply) => {
        const body = cyberDojo ? await argsOf(request, config.bodyLimitBytes) : (request.body ?? {});
        const result = await f.handler(body, services, { log: request.log, elapsedMs: () => reply.elapsedTime });
        if (!f.produces) return { [key]: result };
        return reply.type(f.produces).send(result);
      },
    });
  }

  // Cron functions run on their schedule and once at start; a null schedule (another
  // process sweeps) runs them only on request. Close waits for a run under way.
  const tasks: ScheduledTask[] = [];
  const running = new Set<Promise<unknown>>();
  for (const f of mounted) {
    const schedule = f.schedule?.(config);
    if (!schedule) continue;
    if (!validCron(schedule)) throw new Error(`${f.name}: schedule ${JSON.stringify(schedule)} is not a cron expression`);
    const run = () => {
      const started = performance.now();
      const work = f.handler({}, services, { log: app.log, elapsedMs: () => performance.now() - started }).catch((e: unknown) => app.log.error({ err: e, fn: f.name }, 'cron function failed'));
      running.add(work);
      return work.finally(() => running.delete(work));
    };
    tasks.push(createTask(schedule, run, { name: f.name, noOverlap: true }));
    app.addHook('onReady', async () => {
      void run();
    });
  }
  app.addHook('onReady', async () => {
    for (const task of tasks) await task.start();
  });
  app.addHook('onClose', async () => {
    for (const task of tasks) await task.destroy();
    await Promise.all(running);
    sessions.closeAll();
    services.ragLambdas.close();
  });
  return app;
}
