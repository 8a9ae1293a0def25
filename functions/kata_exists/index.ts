import { Type } from '@sinclair/typebox';
import { KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'kata_exists',
  method: 'POST',
  summary: "true while the kata's container runs and its deadline has not passed",
  body: Type.Object({ kata_id: KataId }),
  result: Type.Boolean(),
  handler: async (body, { katas }) => (await katas.find(body.kata_id))?.live ?? false,
});
