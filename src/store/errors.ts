import { BerthError } from '../domain/errors.js';

/**
 * Every failure a store backend can report. Callers switch on `code`, never on message text or on the
 * backend's own error classes, so swapping sqlite for etcd changes nothing above the store.
 */
export const StoreErrorCode = {
  /** A watch or read asked for a revision that compaction has removed. */
  Compacted: 'compacted',
  /** A read asked for a revision that does not exist yet. */
  FutureRevision: 'future_revision',
  ValueTooLarge: 'value_too_large',
  LeaseNotFound: 'lease_not_found',
  InvalidUrl: 'invalid_store_url',
  /** An etcd URL without TLS and client certificates, not explicitly accepted as insecure. */
  Insecure: 'store_insecure',
  /** The store refused the caller: unknown user, or a role without access to the key. Not retryable. */
  PermissionDenied: 'store_permission_denied',
  InvalidArgument: 'invalid_argument',
  /** The backend cannot be reached (etcd down, network). Retryable. */
  Unavailable: 'store_unavailable',
  /** The database file is not a Berth store or is damaged. */
  Corrupt: 'store_corrupt',
  /** The database file or its directory cannot be written. */
  ReadOnly: 'store_read_only',
  Closed: 'store_closed',
  /** An election operation on a candidacy that no longer holds (lease gone, resigned). */
  NotLeader: 'not_leader',
} as const;
export type StoreErrorCode = (typeof StoreErrorCode)[keyof typeof StoreErrorCode];

export class StoreError extends BerthError {
  declare readonly code: StoreErrorCode;
  /** For `compacted`: the revision the store is compacted to. */
  readonly compactRevision?: number;

  constructor(
    code: StoreErrorCode,
    message: string,
    options: { retryable?: boolean; cause?: unknown; compactRevision?: number } = {},
  ) {
    super(code, message, { retryable: options.retryable ?? code === StoreErrorCode.Unavailable, cause: options.cause });
    this.name = 'StoreError';
    if (options.compactRevision !== undefined) this.compactRevision = options.compactRevision;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
