import { Type } from '@sinclair/typebox';
import { Dictionary } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

const Run = Type.Object({ at: Type.String({ format: 'date-time' }), colour: Type.String(), durationMs: Type.Integer(), stdout: Type.String(), stderr: Type.String() });

export default defineFunction({
  name: 'dashboard_data',
  method: 'GET',
  summary: "what the dashboard shows: the live katas (from the engine), their avatars' last runs, runs per minute by colour, the queue, the last reaps (this process's)",
  result: Type.Object({
    at: Type.String({ format: 'date-time' }),
    queue: Type.Object({ waiting: Type.Integer(), running: Type.Integer() }),
    katas: Type.Array(
      Type.Object({
        kata_id: Type.String(),
        image_name: Type.String(),
        deadline: Type.String({ format: 'date-time' }),
        seconds_left: Type.Integer(),
        runs: Type.Integer(),
        avatars: Dictionary(Type.Array(Run), { description: 'each avatar seen, its last runs, newest first' }),
      }),
    ),
    runs_per_minute: Type.Array(Type.Object({ minute: Type.String({ format: 'date-time' }), colours: Dictionary(Type.Integer()) })),
    reaps: Type.Array(Type.Object({ at: Type.String({ format: 'date-time' }), kataIds: Type.Array(Type.String()) })),
  }),
  handler: async (_body, { katas, activity, runQueue }) => {
    const now = Date.now();
    const live = await katas.listLive();
    return {
      at: new Date(now).toISOString(),
      queue: { waiting: runQueue.waiting, running: runQueue.running },
      katas: live
        .sort((a, b) => a.kataId.localeCompare(b.kataId))
        .map((k) => ({ kata_id: k.kataId, image_name: k.imageName, deadline: k.deadline.toISOString(), seconds_left: Math.round((k.deadline.getTime() - now) / 1000), ...activity.of(k.kataId) })),
      runs_per_minute: activity.runsPerMinute(),
      reaps: activity.lastReaps(),
    };
  },
});
