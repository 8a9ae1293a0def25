import { Type } from '@sinclair/typebox';
import { defineFunction } from '../../lib/function.ts';

// The engine is asked how many katas are live at most this often.
const LIVE_KATAS_MS = 5000;
let counted = { at: 0, live: 0 };

export default defineFunction({
  name: 'metrics',
  method: 'GET',
  summary: "this process's metrics, in Prometheus's text format (README: Metrics)",
  result: Type.String(),
  produces: 'text/plain; version=0.0.4; charset=utf-8',
  handler: async (_body, { katas, metrics }) => {
    if (Date.now() - counted.at > LIVE_KATAS_MS) counted = { at: Date.now(), live: (await katas.listLive()).length };
    metrics.katasLive.set(counted.live);
    return metrics.registry.metrics();
  },
});
