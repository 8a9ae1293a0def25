// Every function there is. The host mounts all of those of its API, or those
// RUNNER_FUNCTIONS names.
import type { RunnerFunction } from '../lib/function.ts';
import alive from './alive/index.ts';
import avatarExists from './avatar_exists/index.ts';
import avatarNew from './avatar_new/index.ts';
import avatarOld from './avatar_old/index.ts';
import imagePull from './image_pull/index.ts';
import imagePulled from './image_pulled/index.ts';
import kataExists from './kata_exists/index.ts';
import kataNew from './kata_new/index.ts';
import kataOld from './kata_old/index.ts';
import metrics from './metrics/index.ts';
import dashboard from './dashboard/index.ts';
import dashboardData from './dashboard_data/index.ts';
import playground from './playground/index.ts';
import { alive as cyberDojoAlive, ready as cyberDojoReady, sha as cyberDojoSha } from './cyber_dojo_probes/index.ts';
import pullImage from './pull_image/index.ts';
import runCyberDojoSh from './run_cyber_dojo_sh/index.ts';
import ready from './ready/index.ts';
import reap from './reap/index.ts';
import run from './run/index.ts';
import sha from './sha/index.ts';
import startPoints from './start_points/index.ts';

export const functions: RunnerFunction[] = [
  alive,
  ready,
  sha,
  startPoints,
  kataNew,
  kataOld,
  kataExists,
  avatarNew,
  avatarOld,
  avatarExists,
  run,
  imagePulled,
  imagePull,
  reap,
  metrics,
  playground,
  dashboard,
  dashboardData,
  // Today's cyber-dojo runner API (RUNNER_API=cyber-dojo).
  cyberDojoAlive,
  cyberDojoReady,
  cyberDojoSha,
  pullImage,
  runCyberDojoSh,
];
