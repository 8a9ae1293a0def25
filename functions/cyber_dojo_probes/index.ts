// Today's cyber-dojo runner's probes: /alive, /ready and /sha, keyed as theirs are.
import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';

const ENGINE_PING_MS = 2000;

export const alive = defineFunction({
  name: 'cyber_dojo_alive',
  api: 'cyber-dojo',
  path: '/alive',
  key: 'alive?',
  method: 'ANY',
  summary: 'true while the runner process answers',
  result: Type.Boolean(),
  open: true,
  handler: async () => true,
});

export const ready = defineFunction({
  name: 'cyber_dojo_ready',
  api: 'cyber-dojo',
  path: '/ready',
  key: 'ready?',
  method: 'ANY',
  summary: 'true when the engine answers and the process is within its limits; false otherwise',
  result: Type.Boolean(),
  open: true,
  handler: async (_body, { engine, underPressure, runQueue }) => {
    if (underPressure() || runQueue.full) return false;
    return engine.ping(ENGINE_PING_MS).then(() => true, () => false);
  },
});

export const sha = defineFunction({
  name: 'cyber_dojo_sha',
  api: 'cyber-dojo',
  path: '/sha',
  key: 'sha',
  method: 'ANY',
  summary: 'the git commit the runner was built from',
  result: Type.String(),
  handler: async (_body, { config }) => config.sha,
});
