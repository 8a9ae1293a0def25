// Every error the runner answers with, in one place. The message is the contract's
// stable `<arg>:<reason>` code that callers switch on; the status goes with it.

export class RunnerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    // Internal detail for the log; never sent to the caller.
    readonly detail?: string,
    // Seconds after which the caller may try again (the Retry-After header).
    readonly retryAfter?: number,
  ) {
    super(code);
    this.name = 'RunnerError';
  }
}

export const malformed = (arg: string, detail?: string) => new RunnerError(400, `${arg}:malformed`, detail);

export const errors = {
  jsonMalformed: (detail?: string) => malformed('json', detail),
  jsonTooLarge: () => new RunnerError(413, 'json:too_large'),
  functionNotFound: () => new RunnerError(404, 'function:!exists'),
  kataNotFound: () => new RunnerError(404, 'kata_id:!exists'),
  kataExists: () => new RunnerError(409, 'kata_id:exists'),
  avatarNotFound: () => new RunnerError(404, 'avatar_name:!exists'),
  avatarExists: () => new RunnerError(409, 'avatar_name:exists'),
  imageNotFound: (detail?: string) => new RunnerError(404, 'image_name:!exists', detail),
  engineUnavailable: (detail?: string) => new RunnerError(503, 'engine:unavailable', detail),
  // Too many runs waiting (429), or one waited longer than its share (503): Retry-After says when to try again.
  runBusy: (status: 429 | 503, retryAfter: number, detail?: string) => new RunnerError(status, 'run:busy', detail, retryAfter),
  // This process is over its limits (event-loop delay, memory): /ready says so.
  runnerBusy: (detail?: string) => new RunnerError(503, 'runner:busy', detail, 5),
  // A token is configured and the request's is missing or wrong.
  tokenInvalid: () => new RunnerError(401, 'token:!valid'),
  server: (detail?: string) => new RunnerError(500, 'server:error', detail),
};

// An error of today's cyber-dojo API: its callers read the message, written as theirs.
export class CyberDojoError extends Error {
  constructor(
    readonly status: 400 | 500,
    message: string,
  ) {
    super(message);
    this.name = 'CyberDojoError';
  }
}

// Is e the contract's error `like` (the same code)?
export const isError = (e: unknown, like: RunnerError): e is RunnerError => e instanceof RunnerError && e.code === like.code;

// Raised by the engine client; the functions turn them into the contract's errors,
// because only they know whether a missing thing is a kata, an avatar or an image.
export class EngineError extends Error {
  constructor(
    // forbidden: a proxy in front of the engine refused the call (a deployment's choice).
    readonly kind: 'not_found' | 'conflict' | 'invalid' | 'unavailable' | 'forbidden' | 'failed',
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export const isEngineError = (e: unknown, kind?: EngineError['kind']): e is EngineError =>
  e instanceof EngineError && (kind === undefined || e.kind === kind);
