import { Type } from '@sinclair/typebox';
import { errors } from '../../lib/errors.ts';
import { defineFunction } from '../../lib/function.ts';

const ENGINE_PING_MS = 2000;

export default defineFunction({
  name: 'ready',
  method: 'GET',
  summary: 'true when the container engine answers; 503 engine:unavailable otherwise',
  result: Type.Boolean(),
  handler: async (_body, { engine }) => {
    try {
      await engine.ping(ENGINE_PING_MS);
    } catch (e) {
      throw errors.engineUnavailable((e as Error).message);
    }
    return true;
  },
});
