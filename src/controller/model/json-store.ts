import type { KeyValue, Store, TxnOp } from '../../store/index.js';

/**
 * JSON records over the store. Reads return the value with the mod revision it was read at, so the
 * write that follows can compare on it (optimistic concurrency, etcd-style).
 */
export interface Versioned<T> {
  value: T;
  mod: number;
}

export function parse<T>(kv: KeyValue | undefined): Versioned<T> | undefined {
  return kv ? { value: JSON.parse(kv.value) as T, mod: kv.modRevision } : undefined;
}

export async function getJson<T>(store: Store, key: string): Promise<Versioned<T> | undefined> {
  return parse<T>(await store.get(key));
}

export async function listJson<T>(store: Store, prefix: string): Promise<T[]> {
  const r = await store.range(prefix, { prefix: true });
  return r.kvs.map((kv) => JSON.parse(kv.value) as T);
}

/** Many keys in one round trip (a txn of reads), chunked under etcd's default 128-op limit. */
export async function getMany<T>(store: Store, keys: string[]): Promise<(T | undefined)[]> {
  const chunks: string[][] = [];
  for (let i = 0; i < keys.length; i += 100) chunks.push(keys.slice(i, i + 100));
  // Chunks are independent reads: in flight together, one round trip's latency on etcd.
  const results = await Promise.all(chunks.map((chunk) => store.txn({ compare: [], success: chunk.map((key): TxnOp => ({ type: 'range', key })) })));
  return results.flatMap((r) =>
    r.results.map((res) => {
      const kv = res.type === 'range' ? res.kvs[0] : undefined;
      return kv ? (JSON.parse(kv.value) as T) : undefined;
    }),
  );
}

export const put = (key: string, value: unknown): TxnOp => ({ type: 'put', key, value: JSON.stringify(value) });
export const del = (key: string, prefix = false): TxnOp => ({ type: 'delete', key, prefix });
