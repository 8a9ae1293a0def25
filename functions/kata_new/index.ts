import { Type } from '@sinclair/typebox';
import { ImageName, KataId, LifetimeSeconds } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

const DEFAULT_LIFETIME_SECONDS = 86400;

export default defineFunction({
  name: 'kata_new',
  method: 'POST',
  summary: "starts the kata's container, which lives lifetime_seconds; kata_id:exists while it is live",
  body: Type.Object({ image_name: ImageName, kata_id: KataId, lifetime_seconds: Type.Optional(LifetimeSeconds) }),
  result: Type.Object({ kata_id: KataId, image_name: ImageName, deadline: Type.String({ format: 'date-time' }) }),
  handler: async (body, { katas, metrics }) => {
    const kata = await katas.create(body.image_name, body.kata_id, body.lifetime_seconds ?? DEFAULT_LIFETIME_SECONDS);
    metrics.katasCreated.inc();
    return { kata_id: kata.kataId, image_name: kata.imageName, deadline: kata.deadline.toISOString() };
  },
});
