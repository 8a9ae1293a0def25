import { Type } from '@sinclair/typebox';
import { ImageName } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'image_pulled',
  method: 'POST',
  summary: 'true when the engine has the image',
  body: Type.Object({ image_name: ImageName }),
  result: Type.Boolean(),
  handler: async (body, { katas }) => katas.hasImage(body.image_name),
});
