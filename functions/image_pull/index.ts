import { Type } from '@sinclair/typebox';
import { ImageName } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'image_pull',
  method: 'POST',
  summary: 'pulls the image unless the engine has it; image_name:!exists when it cannot (IMAGE_PULL_TIMEOUT_SECONDS bounds the wait)',
  body: Type.Object({ image_name: ImageName }),
  result: Type.Boolean(),
  handler: async (body, { katas }) => {
    await katas.ensureImage(body.image_name);
    return true;
  },
});
