import { Type } from '@sinclair/typebox';
import { errors } from '../../lib/errors.ts';
import { defineFunction } from '../../lib/function.ts';

const ENGINE_PING_MS = 2000;

export default defineFunction({
  name: 'ready',
  method: 'GET',
  summary: 'true when the container engine answers and this process is within its limits; 503 engine:unavailable, or runner:busy, otherwise',
  result: Type.Boolean(),
  open: true,
  handler: async (_body, { engine, underPressure, runQueue }) => {
    if (underPressure()) throw errors.runnerBusy('event-loop delay or heap over its limit');
    if (runQueue.full) throw errors.runnerBusy('the run queue is full');
    try {
      await engine.ping(ENGINE_PING_MS);
    } catch (e) {
      throw errors.engineUnavailable((e as Error).message);
    }
    return true;
  },
});
