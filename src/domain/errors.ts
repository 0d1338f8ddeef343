/**
 * Coded errors for the whole domain. Components throw these; only the API edge maps a code to an HTTP
 * status. `retryable` tells a caller whether trying the same call again can succeed (etcd3's
 * RecoverableError and Fastify's error codes are the models).
 */
export class BerthError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BerthError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export function isBerthError(err: unknown, code?: string): err is BerthError {
  return err instanceof BerthError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Domain error codes shared by every component; the API edge maps each to an HTTP status. */
export const ErrorCode = {
  NotFound: 'not_found',
  InvalidParams: 'invalid_params',
  Conflict: 'conflict',
  Forbidden: 'forbidden',
  Unauthorized: 'unauthorized',
  RateLimit: 'rate_limit',
} as const;

export const notFound = (what: string): BerthError => new BerthError(ErrorCode.NotFound, `Couldn't find that ${what}.`);
export const invalid = (message: string): BerthError => new BerthError(ErrorCode.InvalidParams, message);
export const conflict = (message: string): BerthError => new BerthError(ErrorCode.Conflict, message);
export const forbidden = (message: string): BerthError => new BerthError(ErrorCode.Forbidden, message);
export const unauthorized = (message: string): BerthError => new BerthError(ErrorCode.Unauthorized, message);
