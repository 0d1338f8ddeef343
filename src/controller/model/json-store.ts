import { decode, get, putOp, untypedJson, type Entry } from '../../domain/codec.js';
import type { Store, TxnOp } from '../../store/index.js';

/**
 * @deprecated Untyped reads and writes, left only for releases.ts until its restructuring moves it
 * to codec.ts (`get`/`list`/`putOp` with `codecs.release`, `codecs.app`, `codecs.config`); delete
 * this file then. Everything else reads the store through src/domain/codec.ts with a record's codec.
 */
export async function getJson<T>(store: Store, key: string): Promise<Pick<Entry<T>, 'value' | 'mod'> | undefined> {
  const e = await get(store, key, untypedJson);
  return e && { value: e.value as T, mod: e.mod };
}

/** @deprecated See getJson. */
export async function listJson<T>(store: Store, prefix: string): Promise<T[]> {
  return (await store.range(prefix, { prefix: true })).kvs.map((kv) => decode(untypedJson, kv) as T);
}

/** @deprecated See getJson. */
export const put = (key: string, value: unknown): TxnOp => putOp(key, untypedJson, value);
