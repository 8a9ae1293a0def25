import { Type } from '@sinclair/typebox';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkFiles, Dictionary, filenameError, MaxSeconds, Text } from '../../lib/args.ts';
import { HOME_FILES, imageNameArg, kataIdOf, MAX_SECONDS, RAG_LAMBDA_FILE, requireArgs, runLimits, SANDBOX_USER, STATUS, target } from '../../lib/cyber-dojo.ts';
import { CyberDojoError, errors, isError, RunnerError } from '../../lib/errors.ts';
import { defineFunction, type Services } from '../../lib/function.ts';
import type { Kata } from '../../lib/katas.ts';
import { runTests, type RunOutcome } from '../../lib/sandbox.ts';
import type { Session } from '../../lib/session.ts';

const EMPTY = { content: '', truncated: false };

const Result = Type.Object({
  stdout: Text,
  stderr: Text,
  status: Type.String({ description: "cyber-dojo.sh's exit status; 141 pulling, 142 timed out, 143 faulty" }),
  outcome: Type.Union(['red', 'amber', 'green', 'timed_out', 'faulty', 'pulling'].map((o) => Type.Literal(o))),
  log: Type.Object({}, { additionalProperties: true, description: 'what went wrong, when faulty' }),
  created: Dictionary(Text, { description: 'text files the run created: at most 16, in name order, each at most 50 KiB' }),
  changed: Dictionary(Text, { description: 'text files the run changed' }),
});
type Result = typeof Result.static;

const answer = (outcome: Result['outcome'], status: string, log: Record<string, unknown> = {}): Result => ({ stdout: EMPTY, stderr: EMPTY, status, outcome, log, created: {}, changed: {} });

function checked(body: unknown) {
  const args = requireArgs(body, ['id', 'files', 'manifest']);
  const { id, files, manifest } = args as { id: unknown; files: unknown; manifest: Record<string, unknown> };
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new CyberDojoError(400, 'id is malformed');
  if (typeof files !== 'object' || files === null || Array.isArray(files) || Object.values(files).some((c) => typeof c !== 'string')) throw new CyberDojoError(400, 'files is malformed');
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) throw new CyberDojoError(400, 'manifest is malformed');
  const { max_seconds: maxSeconds, rag_lambda: ragLambda } = manifest;
  const imageName = imageNameArg(manifest.image_name, 'manifest:image_name');
  if (!Number.isInteger(maxSeconds) || (maxSeconds as number) < MaxSeconds.minimum! || (maxSeconds as number) > MaxSeconds.maximum!) throw new CyberDojoError(400, 'manifest:max_seconds is malformed');
  if (ragLambda !== undefined && typeof ragLambda !== 'string') throw new CyberDojoError(400, 'manifest:rag_lambda is malformed');
  return { id, files: files as Record<string, string>, imageName, maxSeconds: Math.min(MAX_SECONDS, maxSeconds as number), ragLambda };
}

// The id's kata, live: made when it is gone (expired, reaped, the engine restarted).
async function inKata<T>({ katas, sessions, config }: Services, kataId: string, imageName: string, work: (session: Session) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await sessions.with(kataId, work);
    } catch (e) {
      if (!isError(e, errors.kataNotFound()) || attempt >= 3) throw e;
    }
    try {
      await katas.create(imageName, kataId, config.cyberDojoKataSeconds, 'cyber-dojo');
    } catch (e) {
      if (!isError(e, errors.kataExists())) throw e;
      await sleep(200); // another call is making it
    }
  }
}

export default defineFunction({
  name: 'run_cyber_dojo_sh',
  api: 'cyber-dojo',
  method: 'ANY',
  summary: "today's cyber-dojo runner's run: the id's kata, its sandbox made to hold exactly files, runs cyber-dojo.sh as user sandbox within manifest.max_seconds (at most 15)",
  result: Result,
  handler: async (body, services, { log }) => {
    const { id, files, imageName, maxSeconds, ragLambda } = checked(body);
    try {
      checkFiles('files', files, services.config.limits.sandboxFiles);
    } catch (e) {
      const bad = Object.keys(files).find((name) => filenameError(name));
      throw new CyberDojoError(400, bad === undefined ? `files: ${(e as RunnerError).detail}` : `files: ${JSON.stringify(bad)} is ${filenameError(bad)}`);
    }
    if ((await services.puller.pull(imageName)) === 'pulling') return answer('pulling', STATUS.pulling);
    const kataId = kataIdOf(id, imageName);
    const env = [
      `CYBER_DOJO_IMAGE_NAME=${imageName}`,
      `CYBER_DOJO_ID=${id}`,
      `CYBER_DOJO_SANDBOX=${SANDBOX_USER.sandbox}`,
      `HOME=${SANDBOX_USER.home}`,
      `USER=${SANDBOX_USER.name}`,
      `LOGNAME=${SANDBOX_USER.name}`,
    ];
    const request = {
      changed: files,
      deleted: [],
      maxSeconds,
      env,
      limits: runLimits(imageName),
      sync: true,
      cleanHome: services.config.cyberDojoCleanHome,
      bashOnly: true,
      umask: 0o022,
      writable: ['/tmp'],
      homeFiles: HOME_FILES,
    };
    let kata: Kata | undefined;
    const outcome: RunOutcome | 'avatar_missing' = await inKata(services, kataId, imageName, async (session) => {
      kata = session.kata;
      return (await services.runQueue.run(kataId, SANDBOX_USER.name, () => runTests(session, target(services.config.avatarLockSeconds), request, log))).value;
    });
    if (outcome === 'avatar_missing') return answer('faulty', STATUS.faulty, { message: `${imageName} has no user ${SANDBOX_USER.name} (${SANDBOX_USER.uid}:${SANDBOX_USER.gid})` });
    if (outcome.timedOut) return answer('timed_out', STATUS.timed_out);
    if (outcome.fault) return answer('faulty', STATUS.faulty, { stderr: outcome.fault });
    const source = typeof ragLambda === 'string' ? ragLambda : await services.ragLambdas.sourceOf(kata!.imageId, kata!.containerId);
    let outcomeColour: Result['outcome'];
    let info: Record<string, unknown> = {};
    if (source === null) {
      outcomeColour = 'faulty';
      info = { message: `image_name must have ${RAG_LAMBDA_FILE} file` };
    } else {
      const colour = await services.ragLambdas.colour(source, outcome.stdout.content, outcome.stderr.content, outcome.status);
      outcomeColour = 'colour' in colour ? colour.colour : 'faulty';
      if ('fault' in colour) info = { message: colour.fault, lambda_source: source };
    }
    return {
      stdout: outcome.stdout,
      stderr: outcome.stderr,
      status: String(outcome.status),
      outcome: outcomeColour,
      log: info,
      created: outcome.created,
      changed: outcome.changed,
    };
  },
});
