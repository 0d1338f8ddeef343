import { StoreError, StoreErrorCode } from './errors.js';
import { MAX_VALUE_BYTES } from './types.js';

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StoreError(StoreErrorCode.InvalidArgument, 'a store key must be a non-empty string');
  }
}

export function checkValue(key: string, value: string): void {
  if (typeof value !== 'string') {
    throw new StoreError(StoreErrorCode.InvalidArgument, `the value for ${key} must be a string`);
  }
  const size = Buffer.byteLength(value, 'utf8');
  if (size > MAX_VALUE_BYTES) {
    throw new StoreError(
      StoreErrorCode.ValueTooLarge,
      `value for ${key} is ${size} bytes; the store accepts at most ${MAX_VALUE_BYTES} bytes (1.5 MiB)`,
    );
  }
}

export function checkTtl(ttl: number): void {
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 9_000_000_000) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `lease TTL must be a whole number of seconds ≥ 1, got ${ttl}`);
  }
}

export function checkRevision(name: string, revision: number | undefined): void {
  if (revision !== undefined && (!Number.isSafeInteger(revision) || revision < 0)) {
    throw new StoreError(StoreErrorCode.InvalidArgument, `${name} must be a non-negative integer, got ${revision}`);
  }
}

/**
 * The byte range a (key, prefix, end) selection covers, etcd-style: `end` undefined means the single
 * key; a prefix's end is the prefix with its last byte below 0xff incremented; `null` means "to the
 * end of the keyspace".
 */
export function byteRange(
  key: string,
  options: { prefix?: boolean; end?: string } = {},
): { start: Buffer; end: Buffer | null | undefined } {
  if (options.prefix && options.end !== undefined) {
    throw new StoreError(StoreErrorCode.InvalidArgument, 'a range takes either prefix or end, not both');
  }
  const start = Buffer.from(key, 'utf8');
  if (options.end !== undefined) return { start, end: Buffer.from(options.end, 'utf8') };
  if (!options.prefix) {
    checkKey(key);
    return { start, end: undefined };
  }
  for (let i = start.length - 1; i >= 0; i--) {
    const byte = start[i];
    if (byte !== undefined && byte < 0xff) {
      const end = Buffer.from(start.subarray(0, i + 1));
      end[i] = byte + 1;
      return { start, end };
    }
  }
  return { start, end: null };
}
