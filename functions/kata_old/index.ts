import { Type } from '@sinclair/typebox';
import { KataId } from '../../lib/args.ts';
import { errors } from '../../lib/errors.ts';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'kata_old',
  method: 'POST',
  summary: "removes the kata's container and everything in it",
  body: Type.Object({ kata_id: KataId }),
  result: Type.Object({}),
  handler: async (body, { katas, sessions, activity }) => {
    sessions.forget(body.kata_id);
    activity.gone([body.kata_id], false);
    // An expired container is removed too, but the kata had already ended.
    if (!(await katas.remove(body.kata_id))) throw errors.kataNotFound();
    return {};
  },
});
