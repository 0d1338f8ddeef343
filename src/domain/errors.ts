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
