import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterTokens } from '../controller/services/cluster.js';
import { Users } from '../controller/services/users.js';
import { putOp } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';

export interface BootstrapOptions {
  dataDir: string;
  adminEmail: string;
  /** The first admin's token instead of a random one. */
  adminToken?: string;
  /** The cluster join token instead of a random one. */
  clusterToken?: string;
}

/**
 * Records the platform once, makes the first admin on an empty store and the cluster join token,
 * each at most once per store. Returns the admin's token on the start that made it (it is also
 * written to `<data-dir>/admin.token`); the join token goes to `<data-dir>/cluster.token`. The
 * store keeps only their hashes.
 */
export async function bootstrap(store: Store, o: BootstrapOptions): Promise<string | undefined> {
  await store.txn({
    compare: [{ key: keys.platform(), target: 'create', op: '=', value: 0 }],
    success: [putOp(keys.platform(), codecs.platform, { created_at: new Date().toISOString() })],
  });
  const created = await new Users(store).bootstrapAdmin(o.adminEmail, o.adminToken);
  // Agents on other machines join with this (`berth agent --token`).
  const cluster = await new ClusterTokens(store).create(o.clusterToken);
  if (cluster) writeFileSync(join(o.dataDir, 'cluster.token'), `${cluster}\n`, { mode: 0o600 });
  if (!created) return undefined;
  writeFileSync(join(o.dataDir, 'admin.token'), `${created.token}\n`, { mode: 0o600 });
  return created.token;
}
