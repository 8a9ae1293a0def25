// The runner's Prometheus metrics, registered once per process (prom-client's registry
// is one per process; several hosts in one process, as in tests, share them). No label
// carries a kata id or an avatar name: their number has no bound.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

function create() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    runs: new Counter({ name: 'runner_runs_total', help: 'runs answered, by image and colour', labelNames: ['image', 'colour'], registers }),
    runSeconds: new Histogram({ name: 'runner_run_duration_seconds', help: 'a run request, whole, by image and colour', labelNames: ['image', 'colour'], buckets: SECONDS, registers }),
    scriptSeconds: new Histogram({ name: 'runner_run_script_seconds', help: 'cyber-dojo.sh alone, by image', labelNames: ['image'], buckets: SECONDS, registers }),
    queueSeconds: new Histogram({ name: 'runner_run_queue_seconds', help: 'a run waiting for its avatar and a place in its kata', buckets: SECONDS, registers }),
    runsInFlight: new Gauge({ name: 'runner_runs_in_flight', help: 'runs holding a place in their kata now', registers }),
    runsQueued: new Gauge({ name: 'runner_runs_queued', help: 'runs waiting for a place now', registers }),
    katasLive: new Gauge({ name: 'runner_katas_live', help: "this runner's live katas, as the engine lists them (a few seconds old)", registers }),
    katasCreated: new Counter({ name: 'runner_katas_created_total', help: 'katas created (kata_new and resurrections)', registers }),
    katasReaped: new Counter({ name: 'runner_katas_reaped_total', help: 'katas the sweep removed', registers }),
    resurrections: new Counter({ name: 'runner_resurrections_total', help: 'runs that brought their kata or avatar back', registers }),
    oomKills: new Counter({ name: 'runner_oom_kills_total', help: 'runs answered oom_killed', registers }),
    timeouts: new Counter({ name: 'runner_timeouts_total', help: 'runs answered timed_out', registers }),
    engineSeconds: new Histogram({ name: 'runner_engine_call_seconds', help: 'engine calls, by operation', labelNames: ['op'], buckets: SECONDS, registers }),
    engineErrors: new Counter({ name: 'runner_engine_errors_total', help: 'failed engine calls, by operation and kind', labelNames: ['op', 'kind'], registers }),
    httpErrors: new Counter({ name: 'runner_http_errors_total', help: "error answers, by function and the contract's message", labelNames: ['function', 'message'], registers }),
  };
}

export type Metrics = ReturnType<typeof create>;
let metrics: Metrics | undefined;
export const getMetrics = (): Metrics => (metrics ??= create());
