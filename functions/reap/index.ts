import { Type } from '@sinclair/typebox';
import { KataId } from '../../lib/args.ts';
import { defineFunction } from '../../lib/function.ts';

// A cron function: the host runs it on REAP_SCHEDULE (default every minute, `off`
// where another process reaps) and once at start; POST /reap runs the same sweep.
export default defineFunction({
  name: 'reap',
  method: 'POST',
  summary: "removes this runner's kata containers that exited or passed their deadline",
  body: Type.Object({}),
  result: Type.Object({ removed: Type.Array(KataId) }),
  handler: async (_body, { katas, metrics, activity }) => {
    const removed = await katas.sweep();
    metrics.katasReaped.inc(removed.length);
    activity.gone(removed, true);
    return { removed };
  },
  schedule: (config) => config.reapSchedule,
});
