import { Type } from '@sinclair/typebox';
import { imageNameArg, requireArgs } from '../../lib/cyber-dojo.ts';
import { defineFunction } from '../../lib/function.ts';

// Today's cyber-dojo runner's pull_image: "pulled" when the image is on the engine,
// else "pulling", and a pull is started in the background.
export default defineFunction({
  name: 'pull_image',
  api: 'cyber-dojo',
  method: 'ANY',
  summary: 'pulls image_name in the background: "pulled" when it is on the engine, "pulling" while it is not',
  result: Type.Union([Type.Literal('pulled'), Type.Literal('pulling')]),
  handler: async (body, { puller }) => {
    const args = requireArgs(body, ['id', 'image_name']);
    return puller.pull(imageNameArg(args.image_name, 'image_name'));
  },
});
