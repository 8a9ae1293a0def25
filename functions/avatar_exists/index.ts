import { Type } from '@sinclair/typebox';
import { Avatar, KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';
import { avatarIn } from '../../lib/katas.ts';
import { avatarExists } from '../../lib/sandbox.ts';

export default defineFunction({
  name: 'avatar_exists',
  method: 'POST',
  summary: 'true when the avatar has entered the kata and not left it',
  body: Type.Object({ kata_id: KataId, avatar_name: Avatar }),
  result: Type.Boolean(),
  handler: async (body, { sessions, config }) =>
    sessions.with(body.kata_id, (session) => avatarExists(session, avatarIn(config, session.kata, body.avatar_name))),
});
