import { StoreError, StoreErrorCode } from './errors.js';
import { MAX_VALUE_BYTES, type TxnRequest } from './types.js';

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

/** Lease ids are etcd's int64s, written in decimal; anything else names no lease. */
export function checkLeaseId(lease: string): void {
  if (lease !== '0' && !/^[1-9][0-9]{0,18}$/.test(lease)) {
    throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${JSON.stringify(lease)} not found (lease ids are decimal integers)`);
  }
}

/** etcd's default --max-txn-ops; both backends hold to it so code that works on one works on both. */
export const MAX_TXN_OPS = 128;

/**
 * The transaction rules etcd enforces, checked up front on every backend: at most 128 ops per
 * branch, and within a branch no key written twice — neither two puts, nor a put inside a range the
 * same branch deletes. Both branches are checked, whichever one will run.
 */
export function checkTxn(request: TxnRequest): void {
  for (const c of request.compare) checkKey(c.key);
  for (const branch of [request.success, request.failure ?? []]) {
    if (branch.length > MAX_TXN_OPS) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `a transaction branch holds ${branch.length} operations; the limit is ${MAX_TXN_OPS}`);
    }
    const puts = new Set<string>();
    const deletes: { start: Buffer; end: Buffer | null | undefined }[] = [];
    for (const op of branch) {
      if (op.type === 'put') {
        checkKey(op.key);
        checkValue(op.key, op.value);
        if (op.lease) checkLeaseId(op.lease);
        if (puts.has(op.key)) throw new StoreError(StoreErrorCode.InvalidArgument, `duplicate key given in txn request: ${op.key}`);
        puts.add(op.key);
      } else {
        const r = byteRange(op.key, op);
        if (op.type === 'delete') deletes.push(r);
      }
    }
    for (const key of puts) {
      const k = Buffer.from(key, 'utf8');
      for (const d of deletes) {
        const inside = d.end === undefined ? k.equals(d.start) : Buffer.compare(k, d.start) >= 0 && (d.end === null || Buffer.compare(k, d.end) < 0);
        if (inside) throw new StoreError(StoreErrorCode.InvalidArgument, `duplicate key given in txn request: ${key} is both put and deleted`);
      }
    }
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
  // etcd's spellings: an empty end is the single key, a zero byte is "to the end of the keyspace".
  if (options.end === '\0') return { start, end: null };
  if (options.end !== undefined && options.end !== '') return { start, end: Buffer.from(options.end, 'utf8') };
  if (options.end === '') {
    checkKey(key);
    return { start, end: undefined };
  }
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
