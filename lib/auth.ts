// Token auth: with tokens configured, every request but the open functions' (/alive,
// /ready) needs `Authorization: Bearer <token>`. Tokens are compared as SHA-256 digests
// with timingSafeEqual, so the time taken says nothing of how much of one matched, and
// they are never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from './errors.ts';

const digest = (text: string) => createHash('sha256').update(text).digest();

export function requireToken(app: FastifyInstance, tokens: string[], open: Set<string>): void {
  if (!tokens.length) return;
  const known = tokens.map(digest);
  const valid = (request: FastifyRequest) => {
    const header = request.headers.authorization ?? '';
    const given = digest(header.startsWith('Bearer ') ? header.slice(7) : '');
    // Every token is compared, whichever matches: the time taken is the same.
    return known.reduce((found, token) => timingSafeEqual(token, given) || found, false);
  };
  app.addHook('onRequest', async (request) => {
    const path = new URL(request.url, 'http://runner').pathname.replace(/^\/+|\?+$/g, '');
    if (open.has(path) || valid(request)) return;
    throw errors.tokenInvalid();
  });
}

export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);
