/**
 * The store contract: etcd v3 semantics, not CRUD. Every backend (sqlite, etcd, memory) implements
 * exactly this and passes the same conformance suite (test/store/conformance.ts).
 *
 * - Every write gets the next global revision; a transaction's writes share one revision.
 * - Each key carries createRevision / modRevision / version as etcd defines them.
 * - Watches deliver every event from a start revision in revision order, whole revisions at a time.
 * - Keys attached to a lease are deleted, with delete events, when the lease expires or is revoked.
 */

/** Values are capped at 1.5 MiB, etcd's default request limit. */
export const MAX_VALUE_BYTES = 1.5 * 1024 * 1024;

export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the put that created this incarnation of the key. */
  createRevision: number;
  /** Revision of the last put to this key. */
  modRevision: number;
  /** Number of puts since the key was created (1 after creation). */
  version: number;
  /** Lease id the key is attached to, or '0' for none. */
  lease: string;
}

export interface RangeOptions {
  /** Match every key starting with `key`. */
  prefix?: boolean;
  /** Match keys in [key, end). Exclusive with `prefix`. */
  end?: string;
  /** At most this many keys (0 or absent: no limit). `more` says whether some were left out. */
  limit?: number;
  /** Read the store as it was at this revision (0 or absent: now). */
  revision?: number;
  /** Return only the count. */
  countOnly?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** Keys matching, ignoring the limit. */
  count: number;
  more: boolean;
  /** The store revision the read was served at. */
  revision: number;
}

export interface PutOptions {
  /** Attach the key to this lease; absent or '0' detaches it. */
  lease?: string;
}

export interface PutResult {
  revision: number;
  /** The key as it was before, if it existed. */
  prevKv?: KeyValue;
}

export interface DeleteOptions {
  prefix?: boolean;
  end?: string;
}

export interface DeleteResult {
  revision: number;
  deleted: number;
  prevKvs: KeyValue[];
}

export type CompareTarget = 'value' | 'mod' | 'create' | 'version' | 'lease';
export type CompareOp = '=' | '!=' | '<' | '>';

/**
 * A compare on one key. A missing key has version/create/mod 0, lease '0', and fails every value
 * compare (as in etcd).
 */
export interface Compare {
  key: string;
  target: CompareTarget;
  op: CompareOp;
  /** A string for `value` and `lease`, a number for revisions and version. */
  value: string | number;
}

export type TxnOp =
  | { type: 'put'; key: string; value: string; lease?: string }
  | { type: 'delete'; key: string; prefix?: boolean; end?: string }
  | { type: 'range'; key: string; prefix?: boolean; end?: string; limit?: number };

export type TxnOpResult =
  | { type: 'put'; prevKv?: KeyValue }
  | { type: 'delete'; deleted: number; prevKvs: KeyValue[] }
  | { type: 'range'; kvs: KeyValue[]; count: number; more: boolean };

export interface TxnRequest {
  compare: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The revision after the transaction (unchanged if it wrote nothing). */
  revision: number;
  results: TxnOpResult[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  /** For deletes: key, modRevision = the delete's revision, empty value. */
  kv: KeyValue;
}

/** All the events of one or more whole revisions, in order. */
export interface WatchBatch {
  events: WatchEvent[];
  /** The revision of the last event in the batch. */
  revision: number;
}

export interface WatchOptions {
  prefix?: boolean;
  end?: string;
  /** First revision to deliver. Absent: changes after the watch is established. */
  startRevision?: number;
}

/**
 * A live watch. Iterate it for batches; iteration throws a StoreError (`compacted`, `store_closed`…)
 * when the watch cannot go on. A consumer resumes after any failure by watching again from
 * `lastRevision + 1`: no gap, no duplicate.
 */
export interface Watch extends AsyncIterable<WatchBatch> {
  close(): void;
}

export interface Lease {
  id: string;
  /** The TTL granted, in seconds (a backend may round up to its minimum). */
  ttl: number;
}

export interface LeaseInfo extends Lease {
  /** Seconds left, or -1 if the lease no longer exists. */
  remaining: number;
  keys: string[];
}

export interface Store {
  /** What this store is, for logs and messages (the URL without credentials). */
  readonly description: string;

  get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined>;
  range(key: string, options?: RangeOptions): Promise<RangeResult>;
  put(key: string, value: string, options?: PutOptions): Promise<PutResult>;
  delete(key: string, options?: DeleteOptions): Promise<DeleteResult>;
  txn(request: TxnRequest): Promise<TxnResult>;

  /** Resolves once the watch is established: every later write will be seen. */
  watch(key: string, options?: WatchOptions): Promise<Watch>;

  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Refreshes the lease to its full TTL; fails with `lease_not_found` if it has expired. */
  keepAliveOnce(leaseId: string): Promise<number>;
  /** Revokes the lease, deleting its keys. Revoking an unknown lease fails with `lease_not_found`. */
  revokeLease(leaseId: string): Promise<void>;
  leaseInfo(leaseId: string): Promise<LeaseInfo>;

  /** Discards history before `revision`; reads and watches below it then fail with `compacted`. */
  compact(revision: number): Promise<void>;
  currentRevision(): Promise<number>;
  close(): Promise<void>;
}
