import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EtcdMembers, TOKEN_FILE, caHash, formatToken, removalKeepsQuorum, type MachineCluster } from '../cluster/index.js';
import type { Services } from '../controller/index.js';
import { conflict, forbidden, notFound } from '../domain/errors.js';
import { list } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';

function admin(req: FastifyRequest): void {
  if (!req.user.admin) throw forbidden('Managing the cluster needs an admin account.');
}

/**
 * What only a server can answer, since it holds etcd's root certificate: the etcd members and
 * their health (`berth nodes`), removing a dead server's member (`berth nodes:remove`), and
 * rotating the join token (`berth cluster:rotate-token`). Admins only.
 */
export function clusterRoutes(o: { store: Store; services: Services; cluster: MachineCluster; dataDir: string }): (api: FastifyInstance) => void {
  const members = (): EtcdMembers => new EtcdMembers(o.cluster.state.endpoints, o.cluster.tls);
  return (api) => {
    api.get('/berth/cluster/members', async (req) => {
      admin(req);
      const m = members();
      try {
        const all = await m.list();
        const health = await m.health(all);
        return all.map((x) => {
          const h = health.find((y) => y.id === x.id);
          return { id: x.id, name: x.name, peer_urls: x.peerUrls, client_urls: x.clientUrls, learner: x.learner, reachable: h?.reachable ?? false, leader: h?.leader ?? false, db_size: h?.dbSize ?? null, error: h?.error ?? null };
        });
      } finally {
        m.close();
      }
    });

    // A dead server's member, by its name; refused while that would leave the live voters without a quorum.
    api.delete('/berth/cluster/members/:name', async (req) => {
      admin(req);
      const { name } = req.params as { name: string };
      const m = members();
      try {
        const all = await m.list();
        // By name, or by id for a member that never started (a join abandoned half way has no name).
        const target = all.find((x) => x.name === name) ?? all.find((x) => x.id === name && x.name === '');
        if (!target) throw notFound('etcd member');
        const health = await m.health(all);
        if (health.find((h) => h.id === target.id)?.reachable) throw conflict(`${name}'s etcd member still answers; stop that server first (a live member removed from the cluster would stop on its own).`);
        if (!removalKeepsQuorum(all, health, target.id)) throw conflict(`Removing ${name} would leave the live members without a quorum; bring another server back first.`);
        await m.remove(target.id);
        // The machine's credential goes with it: a removed server joins again with the token.
        const gone = (await list(o.store, keys.machineCredentials(), codecs.machineCredential)).filter((c) => c.value.name === name && c.value.role === 'server').map((c) => c.key.slice(keys.machineCredentials().length));
        for (const id of gone) await o.services.cluster.revoke(id);
        // Its slug copies went with its disk; an admin's one-off action may read them all.
        if (gone.length > 0) {
          const copies = await list(o.store, keys.allSlugCopies(), codecs.slugCopy);
          for (const c of copies) if (gone.includes(c.value.machine)) await o.store.delete(c.key);
        }
        return { id: target.id, name, removed: true };
      } finally {
        m.close();
      }
    });

    // A new secret: the old token stops admitting joins at once; machines already joined keep their credentials.
    api.post('/berth/cluster/token', async (req) => {
      admin(req);
      const secret = await o.services.cluster.rotate();
      const token = formatToken({ caHash: caHash(o.cluster.tls.ca), secret });
      writeFileSync(join(o.dataDir, TOKEN_FILE), `${token}\n`, { mode: 0o600 });
      return { token, token_file: join(o.dataDir, TOKEN_FILE) };
    });
  };
}
