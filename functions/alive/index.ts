import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'alive',
  method: 'GET',
  summary: 'true while the runner process answers',
  result: Type.Boolean(),
  open: true,
  handler: async () => true,
});
