// What a function module is, and what it is given. Each functions/<name>/index.ts
// default-exports one; the host mounts any subset of them.
import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyBaseLogger } from 'fastify';
import type { ColourRulesCache } from './colour.ts';
import type { Activity } from './activity.ts';
import type { Config } from './config.ts';
import type { Puller, RagLambdas } from './cyber-dojo.ts';
import type { Engine } from './engine.ts';
import type { Katas } from './katas.ts';
import type { Metrics } from './metrics.ts';
import type { RunQueue } from './run-queue.ts';
import type { Sessions } from './session.ts';
import type { StartPoint } from './start-points.ts';

export interface Services {
  config: Config;
  engine: Engine;
  katas: Katas;
  sessions: Sessions; // each live kata's helper, one per kata
  colourRules: ColourRulesCache;
  runQueue: RunQueue; // an avatar's runs one at a time, a kata's config.runsAtOnce at once
  metrics: Metrics;
  underPressure: () => boolean; // over the process's limits (event-loop delay, heap)
  activity: Activity; // what the dashboard shows that the engine does not know
  puller: Puller; // the cyber-dojo API's background pulls
  ragLambdas: RagLambdas; // and its images' colour lambdas
  startPoints: () => StartPoint[];
  log: FastifyBaseLogger;
}

// What a handler knows of the request it serves.
export interface RequestContext {
  log: FastifyBaseLogger; // carries the request id
  elapsedMs(): number; // since it arrived
}

// Which API a function belongs to: this runner's contract, or today's cyber-dojo runner's
// (any method, a body on GET, its own error body; RUNNER_API=cyber-dojo mounts those).
export type Api = 'runner' | 'cyber-dojo';

export interface RunnerFunction<Body extends TSchema = TSchema, Result extends TSchema = TSchema> {
  name: string; // also its path, /<name>, unless `path` says otherwise
  method: 'GET' | 'POST' | 'ANY';
  api?: Api; // 'runner' when not given
  path?: string;
  key?: string; // its result's key in the answer ({<key>: result}); its name when not given
  summary: string;
  body?: Body; // GET functions take none
  result: Result;
  // The answer as is, of this content type, not as {<name>: result} (e.g. Prometheus text).
  produces?: string;
  // Answered without a token, when one is configured (the health checks).
  open?: boolean;
  handler(body: Static<Body>, services: Services, request: RequestContext): Promise<Static<Result>>;
  // A cron function: the host schedules it when this gives a schedule, and runs it once at start.
  schedule?(config: Config): string | null;
}

// Keeps each module's handler typed by its own schemas.
export const defineFunction = <Body extends TSchema, Result extends TSchema>(f: RunnerFunction<Body, Result>) =>
  f as unknown as RunnerFunction;
