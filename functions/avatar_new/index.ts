import { Type } from '@sinclair/typebox';
import { Avatar, checkFiles, Files, KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';
import { avatarUid } from '../../lib/katas.ts';
import { avatarNew } from '../../lib/sandbox.ts';

export default defineFunction({
  name: 'avatar_new',
  method: 'POST',
  summary: 'the avatar enters the kata: its own uid, group, home and sandbox, holding the starting files',
  body: Type.Object({ kata_id: KataId, avatar_name: Avatar, starting_files: Files }),
  result: Type.Object({}),
  handler: async (body, { katas, engine, config }) => {
    checkFiles('starting_files', body.starting_files);
    await katas.withLive(body.kata_id, (kata) =>
      avatarNew(engine, { containerId: kata.containerId, avatar: body.avatar_name, uid: avatarUid(config, kata, body.avatar_name) }, body.starting_files),
    );
    return {};
  },
});
