import { timingSafeEqual } from 'node:crypto';
import { get, putOp } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs } from '../../domain/records.js';
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
      success: [putOp(keys.clusterToken(), codecs.clusterToken, { sha256: hashToken(token), created_at: new Date().toISOString() })],
    });
    return r.succeeded ? token : undefined;
  }

  async verify(token: string | undefined): Promise<boolean> {
    if (!token) return false;
    const rec = await get(this.store, keys.clusterToken(), codecs.clusterToken);
    if (!rec) return false;
    const want = Buffer.from(rec.value.sha256, 'hex');
    const got = Buffer.from(hashToken(token), 'hex');
    return want.length === got.length && timingSafeEqual(want, got);
  }
}
