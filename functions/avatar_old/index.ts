import { Type } from '@sinclair/typebox';
import { Avatar, KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';
import { avatarIn } from '../../lib/katas.ts';
import { avatarOld } from '../../lib/sandbox.ts';

export default defineFunction({
  name: 'avatar_old',
  method: 'POST',
  summary: "the avatar leaves: its processes, files, home and user are removed",
  body: Type.Object({ kata_id: KataId, avatar_name: Avatar }),
  result: Type.Object({}),
  handler: async (body, { sessions, config, activity }) => {
    await sessions.with(body.kata_id, (session) => avatarOld(session, avatarIn(config, session.kata, body.avatar_name)));
    activity.left(body.kata_id, body.avatar_name);
    return {};
  },
});
