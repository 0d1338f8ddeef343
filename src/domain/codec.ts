import type { z } from 'zod';
import type { KeyValue, RangeOptions, Store, TxnOp } from '../store/index.js';
import { BerthError } from './errors.js';

/**
 * The one place store values are parsed (fleet's `registry/`): every key builder in `keys.ts` is
 * typed to the record it holds (`Key<StatusRecord>`), every record has one codec, and readers go
 * through `get`/`list`/`decode` below. A value that does not fit its record is hostile or stale
 * data, never trusted: a single read fails with `record_malformed`, a list skips it.
 */

declare const VALUE: unique symbol;
declare const VALUES: unique symbol;

/** A key whose value is a `T` (a string at run time; the type exists only for the compiler). */
export type Key<T> = string & { readonly [VALUE]?: T };
/** A prefix under which every key holds a `T`. */
export type Prefix<T> = string & { readonly [VALUES]?: T };

export interface Codec<T> {
  /** The record's name, as docs/keys.md gives it in the Value column. */
  readonly name: string;
  decode(raw: string): T;
  encode(value: T): string;
}

export const RecordMalformed = 'record_malformed';

function malformed(name: string, why: string, key?: string): BerthError {
  return new BerthError(RecordMalformed, `${key ?? 'a store value'} is not a valid ${name}: ${why}`);
}

function parseJson(name: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw malformed(name, 'not JSON');
  }
}

/** A JSON record checked against its schema on every read. */
export function jsonCodec<T>(name: string, schema: z.ZodType<T>): Codec<T> {
  return {
    name,
    decode(raw) {
      const value = parseJson(name, raw);
      const r = schema.safeParse(value);
      if (!r.success) throw malformed(name, r.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; '));
      return r.data;
    },
    encode: (value) => JSON.stringify(value),
  };
}

/**
 * Any JSON, unchecked: only for generic readers that may be pointed at any key, like the
 * templater's `json(key)` (a template names its keys at run time, so no record type applies).
 * Everything that knows what it reads uses that record's codec from records.ts instead.
 */
export const untypedJson: Codec<unknown> = {
  name: 'JSON',
  decode: (raw) => parseJson('JSON', raw),
  encode: (value) => JSON.stringify(value),
};

/** A plain-text value (an id, `host:port`, an nginx setting), optionally checked. */
export function textCodec(name: string, check?: (raw: string) => boolean): Codec<string> {
  return {
    name,
    decode(raw) {
      if (check && !check(raw)) throw malformed(name, `unexpected value "${raw.slice(0, 80)}"`);
      return raw;
    },
    encode: (value) => value,
  };
}

export interface Entry<T> {
  key: string;
  value: T;
  /** Mod revision: what a compare-and-swap on this key compares. */
  mod: number;
  /** Create revision: a create-only or same-incarnation compare. */
  create: number;
  lease: string;
}

function entry<T>(kv: KeyValue, value: T): Entry<T> {
  return { key: kv.key, value, mod: kv.modRevision, create: kv.createRevision, lease: kv.lease };
}

/** Decodes one value read by hand (a watch event, a txn's range); throws `record_malformed`. */
export function decode<T>(codec: Codec<T>, kv: KeyValue): T {
  try {
    return codec.decode(kv.value);
  } catch (err) {
    if (err instanceof BerthError) throw malformed(codec.name, err.message.replace(/^.*?: /, ''), kv.key);
    throw err;
  }
}

/** Like `decode`, but a malformed value is `undefined`: one bad key must not stop a loop. */
export function tryDecode<T>(codec: Codec<T>, kv: KeyValue | undefined): T | undefined {
  if (!kv) return undefined;
  try {
    return codec.decode(kv.value);
  } catch {
    return undefined;
  }
}

/** `tryDecode` for a bare value (a template's snapshot holds values without revisions). */
export function tryDecodeValue<T>(codec: Codec<T>, raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined;
  try {
    return codec.decode(raw);
  } catch {
    return undefined;
  }
}

export async function get<T>(store: Store, key: Key<T>, codec: Codec<T>, options?: { revision?: number }): Promise<Entry<T> | undefined> {
  const kv = await store.get(key, options);
  return kv ? entry(kv, decode(codec, kv)) : undefined;
}

/** Every well-formed record under a prefix, in key order; malformed ones are passed to `onMalformed`. */
export async function list<T>(
  store: Store,
  prefix: Prefix<T>,
  codec: Codec<T>,
  options: Omit<RangeOptions, 'prefix' | 'countOnly'> & { onMalformed?: (key: string) => void } = {},
): Promise<Entry<T>[]> {
  const { onMalformed, ...range } = options;
  const r = await store.range(prefix, { ...range, prefix: true });
  return decodeAll(codec, r.kvs, onMalformed);
}

export function decodeAll<T>(codec: Codec<T>, kvs: KeyValue[], onMalformed?: (key: string) => void): Entry<T>[] {
  const out: Entry<T>[] = [];
  for (const kv of kvs) {
    const value = tryDecode(codec, kv);
    if (value === undefined) onMalformed?.(kv.key);
    else out.push(entry(kv, value));
  }
  return out;
}

/** A put of a record, for a transaction. */
export function putOp<T>(key: Key<T>, codec: Codec<T>, value: T, lease?: string): TxnOp {
  return { type: 'put', key, value: codec.encode(value), ...(lease && lease !== '0' ? { lease } : {}) };
}

/** A delete of one key, or of every key under a prefix, for a transaction. */
export function deleteOp(key: Key<unknown> | Prefix<unknown>, prefix = false): TxnOp {
  return { type: 'delete', key, prefix };
}

export async function put<T>(store: Store, key: Key<T>, codec: Codec<T>, value: T, options?: { lease?: string }): Promise<number> {
  return (await store.put(key, codec.encode(value), options)).revision;
}

/** Many keys in one round trip (a txn of reads), chunked under etcd's default 128-op limit. */
export async function getMany<T>(store: Store, keys: Key<T>[], codec: Codec<T>): Promise<(T | undefined)[]> {
  const chunks: string[][] = [];
  for (let i = 0; i < keys.length; i += 100) chunks.push(keys.slice(i, i + 100));
  // Chunks are independent reads: in flight together, one round trip's latency on etcd.
  const results = await Promise.all(chunks.map((chunk) => store.txn({ compare: [], success: chunk.map((key): TxnOp => ({ type: 'range', key })) })));
  return results.flatMap((r) => r.results.map((res) => tryDecode(codec, res.type === 'range' ? res.kvs[0] : undefined)));
}
