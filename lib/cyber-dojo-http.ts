// How today's cyber-dojo runner API is spoken over HTTP (RUNNER_API=cyber-dojo): any
// method, a body on a GET too (web sends run_cyber_dojo_sh so), an empty body is {}, and
// errors as its dispatcher answers them: 400 for a bad request, 500 otherwise, with
// {"exception": {path, body, class, message, backtrace}} (no backtrace: nothing internal
// leaves the runner).
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { CyberDojoError, RunnerError } from './errors.ts';

export const ANY = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
const BODY = Symbol('the request body, as sent');

const pathOf = (url: string) => new URL(url, 'http://runner').pathname.replace(/\?+$/, '');

async function rawBody(request: FastifyRequest, limit: number): Promise<string> {
  if (typeof request.body === 'string') return request.body;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new CyberDojoError(400, `body is over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// The call's arguments, parsed as its dispatcher does.
export async function argsOf(request: FastifyRequest, limit: number): Promise<Record<string, unknown>> {
  const text = await rawBody(request, limit);
  (request as unknown as Record<symbol, string>)[BODY] = text;
  if (text === '') return {};
  let args: unknown;
  try {
    args = JSON.parse(text);
  } catch {
    throw new CyberDojoError(400, 'body is not JSON');
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new CyberDojoError(400, 'body is not JSON Hash');
  return args as Record<string, unknown>;
}

export function cyberDojoFace(app: FastifyInstance): void {
  // Bodies are read as text, whatever their content type, and parsed by argsOf.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));
  const fail = (request: FastifyRequest, status: number, message: string) => ({
    exception: { path: pathOf(request.url), body: (request as unknown as Record<symbol, string>)[BODY] ?? '', class: 'Runner', message, backtrace: [] },
  });
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error instanceof CyberDojoError ? error.status : error instanceof RunnerError && error.status < 500 ? error.status : error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 400 : 500;
    const message = error instanceof CyberDojoError ? error.message : error instanceof RunnerError ? error.code : status === 400 ? 'body is too large' : 'server error';
    if (status >= 500) request.log.error({ err: error }, 'failed');
    else request.log.info({ message }, 'refused');
    return reply.status(status).send(fail(request, status, message));
  });
  app.setNotFoundHandler((request, reply) => reply.status(400).send(fail(request, 400, 'unknown path')));
}
