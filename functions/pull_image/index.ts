import { Type } from '@sinclair/typebox';
import { IMAGE_NAME_PATTERN } from '../../lib/args.ts';
import { requireArgs, taggedImageName } from '../../lib/cyber-dojo.ts';
import { CyberDojoError } from '../../lib/errors.ts';
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
    if (typeof args.image_name !== 'string' || !new RegExp(IMAGE_NAME_PATTERN).test(args.image_name)) throw new CyberDojoError(400, 'image_name is malformed');
    return puller.pull(taggedImageName(args.image_name));
  },
});
