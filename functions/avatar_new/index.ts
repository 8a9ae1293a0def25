import { Type } from '@sinclair/typebox';
import { Avatar, checkFiles, Files, KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';
import { avatarIn } from '../../lib/katas.ts';
import { avatarNew } from '../../lib/sandbox.ts';

export default defineFunction({
  name: 'avatar_new',
  method: 'POST',
  summary: 'the avatar enters the kata: its own uid, group, home and sandbox, holding the starting files',
  body: Type.Object({ kata_id: KataId, avatar_name: Avatar, starting_files: Files }),
  result: Type.Object({}),
  handler: async (body, { sessions, config, activity }) => {
    checkFiles('starting_files', body.starting_files, config.limits.sandboxFiles);
    await sessions.with(body.kata_id, (session) => avatarNew(session, avatarIn(config, session.kata, body.avatar_name), body.starting_files));
    activity.entered(body.kata_id, body.avatar_name);
    return {};
  },
});
