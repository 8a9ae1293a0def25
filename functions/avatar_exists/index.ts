import { Type } from '@sinclair/typebox';
import { Avatar, KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';
import { avatarUid } from '../../lib/katas.ts';
import { avatarExists } from '../../lib/sandbox.ts';

export default defineFunction({
  name: 'avatar_exists',
  method: 'POST',
  summary: 'true when the avatar has entered the kata and not left it',
  body: Type.Object({ kata_id: KataId, avatar_name: Avatar }),
  result: Type.Boolean(),
  handler: async (body, { katas, engine, config }) =>
    katas.withLive(body.kata_id, (kata) =>
      avatarExists(engine, { containerId: kata.containerId, avatar: body.avatar_name, uid: avatarUid(config, kata, body.avatar_name) }),
    ),
});
