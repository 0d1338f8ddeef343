import { timingSafeEqual } from 'node:crypto';
import { keys } from '../../domain/keys.js';
import type { Store } from '../../store/index.js';
import { hashToken, newToken } from './users.js';

/**
 * The cluster join token: what a `berth agent` on another machine presents to join. Like API
 * tokens, only its SHA-256 is in the store; the plain token lives in the first node's data dir.
 * It is one secret for the whole cluster (fleet's model), not per machine: anyone holding it can
 * run dynos for every app, so it is as sensitive as the store itself.
 */
export class ClusterTokens {
  constructor(private readonly store: Store) {}

  /** Makes the token if the cluster has none; returns it only to the caller that made it. */
  async create(given?: string): Promise<string | undefined> {
    const token = given ?? newToken();
    const r = await this.store.txn({
      compare: [{ key: keys.clusterToken(), target: 'create', op: '=', value: 0 }],
      success: [{ type: 'put', key: keys.clusterToken(), value: JSON.stringify({ sha256: hashToken(token), created_at: new Date().toISOString() }) }],
    });
    return r.succeeded ? token : undefined;
  }

  async verify(token: string | undefined): Promise<boolean> {
    if (!token) return false;
    const kv = await this.store.get(keys.clusterToken());
    if (!kv) return false;
    const want = Buffer.from((JSON.parse(kv.value) as { sha256: string }).sha256, 'hex');
    const got = Buffer.from(hashToken(token), 'hex');
    return want.length === got.length && timingSafeEqual(want, got);
  }
}
