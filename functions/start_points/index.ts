import { Type } from '@sinclair/typebox';
import { Files } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

export default defineFunction({
  name: 'start_points',
  method: 'GET',
  summary: 'the language start points: a red exercise each, with its image and time limit',
  result: Type.Array(
    Type.Object({
      display_name: Type.String(),
      image_name: Type.String(),
      starting_files: Files,
      max_seconds: Type.Integer(),
    }),
  ),
  handler: async (_body, { startPoints }) => startPoints(),
});
