import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'sha',
  method: 'GET',
  summary: 'the git commit the runner was built from',
  result: Type.String({ pattern: '^[0-9a-f]{40}$' }),
  handler: async (_body, { config }) => config.sha,
});
