import { Type } from '@sinclair/typebox';
import { setTimeout as sleep } from 'node:timers/promises';
import { Avatar, checkFilenames, checkFiles, Dictionary, Filenames, Files, ImageName, KataId, MaxSeconds, Text, type AvatarName } from '../../lib/args.ts';
import { classify } from '../../lib/colour.ts';
import { errors, isError, malformed } from '../../lib/errors.ts';
import { defineFunction, type Services } from '../../lib/function.ts';
import { avatarIn, avatarPorts, type Kata } from '../../lib/katas.ts';
import { avatarNew, runTests, type RunOutcome } from '../../lib/sandbox.ts';
import type { Session } from '../../lib/session.ts';

const RESURRECTED_LIFETIME_SECONDS = 86400;
// How long a run waits for a kata container that another request is resurrecting to
// start; past katas.ts's grace for unstarted containers, create() replaces it itself.
const JOIN_WAIT_MS = 90_000;

const Body = Type.Object({
  kata_id: KataId,
  avatar_name: Avatar,
  changed_files: Files,
  deleted_filenames: Filenames,
  max_seconds: MaxSeconds,
  image_name: Type.Optional(ImageName),
  unchanged_files: Type.Optional(Files),
});

const Result = Type.Object({
  stdout: Text,
  stderr: Text,
  status: Type.Integer(),
  colour: Type.Union(['red', 'amber', 'green', 'timed_out', 'faulty'].map((c) => Type.Literal(c))),
  timed_out: Type.Boolean(),
  oom_killed: Type.Boolean(),
  created: Dictionary(Text, { description: 'text files the run created: at most 16, each at most 50 KiB' }),
  changed: Dictionary(Text, { description: 'text files the run changed: at most 16, each at most 50 KiB' }),
  deleted: Type.Array(Type.String(), { description: 'files the run deleted' }),
  duration_ms: Type.Integer(),
  resurrected: Type.Boolean(),
});

async function colourOf(outcome: RunOutcome, kata: Kata, { colourRules, log }: Services): Promise<string> {
  if (outcome.timedOut) return 'timed_out';
  if (outcome.fault) {
    log.error({ kataId: kata.kataId, fault: outcome.fault }, 'run faulty');
    return 'faulty';
  }
  const rules = await colourRules.get(kata.imageId);
  if (typeof rules === 'string') return 'faulty';
  const colour = classify(rules, outcome.stdout.content, outcome.stderr.content, outcome.status);
  if (!colour) log.warn({ kataId: kata.kataId, image: kata.imageName, status: outcome.status }, 'no colour rule matched: faulty');
  return colour ?? 'faulty';
}

// A kata this runner may make itself, or one another runner's kata_new makes (config.kataNewUrl).
async function createKata({ katas, config, metrics }: Services, imageName: string, kataId: string): Promise<void> {
  const body = { image_name: imageName, kata_id: kataId, lifetime_seconds: RESURRECTED_LIFETIME_SECONDS };
  if (!config.kataNewUrl) {
    await katas.create(imageName, kataId, RESURRECTED_LIFETIME_SECONDS);
    metrics.katasCreated.inc();
    return;
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (config.tokens[0]) headers.authorization = `Bearer ${config.tokens[0]}`;
  const response = await fetch(config.kataNewUrl, { method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(JOIN_WAIT_MS) });
  if (response.ok) return;
  const message = ((await response.json().catch(() => ({}))) as { exception?: { message?: string } }).exception?.message;
  const known = [errors.kataExists(), errors.imageNotFound(), errors.engineUnavailable()].find((e) => e.code === message);
  throw known ?? errors.server(`${config.kataNewUrl}: ${response.status} ${message}`);
}

export default defineFunction({
  name: 'run',
  method: 'POST',
  summary:
    "the [test] event: writes changed_files, deletes deleted_filenames, runs cyber-dojo.sh as the avatar within max_seconds, and answers its output, colour and the files it created, changed or deleted. With image_name and unchanged_files, a kata or avatar that is gone is resurrected from them.",
  body: Body,
  result: Result,
  handler: async (body, services, { log, elapsedMs }) => {
    const { katas, sessions, config, metrics } = services;
    const maxFiles = config.limits.sandboxFiles;
    checkFiles('changed_files', body.changed_files, maxFiles);
    checkFilenames('deleted_filenames', body.deleted_filenames, maxFiles);
    if (body.deleted_filenames.some((name) => Object.hasOwn(body.changed_files, name))) {
      throw malformed('deleted_filenames', 'a file is both changed and deleted');
    }
    const files = body.unchanged_files && { ...body.unchanged_files, ...body.changed_files };
    if (files) checkFiles('unchanged_files', files, maxFiles);
    const canResurrect = body.image_name !== undefined && files !== undefined;
    const avatar: AvatarName = body.avatar_name;

    let resurrected = false;
    // A resurrected avatar already holds every file: the run then writes and deletes nothing.
    const resurrectAvatar = async (session: Session) => {
      try {
        await avatarNew(session, avatarIn(config, session.kata, avatar), files!);
      } catch (e) {
        if (!isError(e, errors.avatarExists())) throw e;
      }
      resurrected = true;
    };
    // Another request (another avatar's run) may be resurrecting the kata too: its
    // container serves this run as well, once it has started.
    const createOrJoin = async (): Promise<void> => {
      for (const giveUp = Date.now() + JOIN_WAIT_MS; ; await sleep(100)) {
        try {
          await createKata(services, body.image_name!, body.kata_id);
          return;
        } catch (e) {
          if (!isError(e, errors.kataExists())) throw e;
        }
        if ((await katas.find(body.kata_id))?.live) return;
        if (Date.now() > giveUp) throw errors.server(`kata ${body.kata_id} did not start within ${JOIN_WAIT_MS} ms`);
      }
    };
    const resurrectKata = async () => {
      await createOrJoin();
      log.info({ kataId: body.kata_id, avatar }, 'kata resurrected');
      await sessions.with(body.kata_id, resurrectAvatar);
    };
    let queueMs = 0;

    // A kata or avatar that is gone, or goes under the run, is brought back (twice at most).
    for (let attempt = 0; ; attempt++) {
      let ranIn: Kata | undefined;
      let outcome: RunOutcome | 'avatar_missing';
      try {
        outcome = await sessions.with(body.kata_id, async (session) => {
          const kata = (ranIn = session.kata);
          const env = [
            `CYBER_DOJO_KATA_ID=${kata.kataId}`,
            `CYBER_DOJO_AVATAR_NAME=${avatar}`,
            `CYBER_DOJO_IMAGE_NAME=${kata.imageName}`,
            `CYBER_DOJO_SANDBOX=/sandboxes/${avatar}`,
            `CYBER_DOJO_RUNNER=${config.runnerName}`,
            `HOME=/home/${avatar}`,
            `USER=${avatar}`,
            `LOGNAME=${avatar}`,
            `TMPDIR=/home/${avatar}/tmp`,
            `CYBER_DOJO_PORTS=${avatarPorts(avatar).join('-')}`,
          ];
          const request = resurrected
            ? { changed: {}, deleted: [], maxSeconds: body.max_seconds, env, limits: config.limits }
            : { changed: body.changed_files, deleted: body.deleted_filenames, maxSeconds: body.max_seconds, env, limits: config.limits };
          // The clock of max_seconds starts when cyber-dojo.sh does, not while queued.
          const queued = await services.runQueue.run(kata.kataId, avatar, () => runTests(session, avatarIn(config, kata, avatar), request, log));
          queueMs += queued.queueMs;
          return queued.value;
        });
      } catch (e) {
        if (!(isError(e, errors.kataNotFound()) && canResurrect && attempt < 2)) throw e;
        await resurrectKata();
        continue;
      }
      if (outcome === 'avatar_missing') {
        if (!canResurrect || attempt >= 2) throw errors.avatarNotFound();
        await sessions.with(body.kata_id, resurrectAvatar);
        continue;
      }
      const colour = await colourOf(outcome, ranIn!, services);
      const image = ranIn!.imageName;
      metrics.runs.inc({ image, colour });
      metrics.runSeconds.observe({ image, colour }, elapsedMs() / 1000);
      metrics.scriptSeconds.observe({ image }, outcome.durationMs / 1000);
      if (outcome.timedOut) metrics.timeouts.inc();
      if (outcome.oomKilled) metrics.oomKills.inc();
      if (resurrected) metrics.resurrections.inc();
      services.activity.ran(body.kata_id, avatar, { colour, durationMs: outcome.durationMs, stdout: outcome.stdout.content, stderr: outcome.stderr.content });
      log.info(
        {
          function: 'run', kata_id: body.kata_id, avatar, image, colour, status: outcome.status, timed_out: outcome.timedOut, oom_killed: outcome.oomKilled,
          resurrected, queue_ms: Math.round(queueMs), script_ms: outcome.durationMs, total_ms: Math.round(elapsedMs()),
        },
        'run',
      );
      return {
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        status: outcome.status,
        colour,
        timed_out: outcome.timedOut,
        oom_killed: outcome.oomKilled,
        created: outcome.created,
        changed: outcome.changed,
        deleted: outcome.deleted,
        duration_ms: outcome.durationMs,
        resurrected,
      };
    }
  },
});
