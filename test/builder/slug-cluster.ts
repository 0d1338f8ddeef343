import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { SlugReplicator, type SlugReplicatorOptions } from '../../src/builder/replication.js';
import { registerSlugBlobRoutes, registerSlugCopyRoutes } from '../../src/builder/slug-routes.js';
import { SlugStore } from '../../src/builder/slugs.js';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { get, put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import type { Logger } from '../../src/domain/log.js';
import { storePeers, type ClusterPeers } from '../../src/domain/peers.js';
import { codecs, type SlugRecord } from '../../src/domain/records.js';
import type { Store } from '../../src/store/index.js';
import { freePort } from '../support/ports.js';

/** What a test server's slug side is made of: by default a bare slug store and replicator. */
export interface SlugParts {
  slugs: SlugStore;
  replicator: SlugReplicator;
  find?: (slugId: string) => Promise<SlugRecord | undefined>;
}

/**
 * One server of a test cluster, in this process: its own data dir, the real API (cluster
 * authentication and all) on a loopback port with the builder's slug routes, a machine credential
 * of its own, and a live-server record other servers and agents find it by.
 */
export interface SlugServer extends SlugParts {
  id: string;
  url: string;
  dir: string;
  credential: string;
  peers: ClusterPeers;
  services: Services;
  api: FastifyInstance;
  /** Its server record: present (a live server) or not (a dead one, as far as others know). */
  up(): Promise<void>;
  down(): Promise<void>;
  close(): Promise<void>;
}

export interface SlugServerOptions {
  store: Store;
  log: Logger;
  root: string;
  id: string;
  replication?: Omit<SlugReplicatorOptions, 'store' | 'log' | 'slugs' | 'peers'>;
  /** Builds the slug side from the server's peers and data dir (a whole builder, for builds). */
  parts?: (peers: ClusterPeers, dir: string) => SlugParts;
}

export async function startSlugServer(o: SlugServerOptions): Promise<SlugServer> {
  const { store, log, id } = o;
  const dir = join(o.root, id);
  mkdirSync(dir, { recursive: true });
  const credential = await new ClusterTokens(store).issue(id, id, 'server');
  const peers = storePeers(store, id, credential);
  const parts: SlugParts =
    o.parts?.(peers, dir) ??
    (() => {
      const slugs = new SlugStore(store, join(dir, 'slugs'), undefined, id);
      return { slugs, replicator: new SlugReplicator({ store, log: log.child({ server: id }), slugs, peers, ...o.replication }) };
    })();
  const find = parts.find ?? (async (slugId: string) => (await get(store, keys.slug(slugId), codecs.slug))?.value);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const services = createServices(store, log, { domain: 'test.local', apiUrl: url });
  const api = buildApi(services, log, [
    (app) => {
      registerSlugBlobRoutes(app, { store, log, access: services.gitAccess, find, slugs: parts.slugs, replicator: parts.replicator });
      registerSlugCopyRoutes(app, { slugs: parts.slugs, replicator: parts.replicator });
    },
  ]);
  await api.listen({ host: '127.0.0.1', port });
  const up = async () => {
    await put(store, keys.server(id), codecs.server, { id, name: id, address: '127.0.0.1', api_url: url, join_url: `https://127.0.0.1:${port}`, etcd: null, started_at: new Date().toISOString() });
  };
  await up();
  return {
    id,
    url,
    dir,
    credential,
    peers,
    services,
    api,
    ...parts,
    up,
    async down() {
      await store.delete(keys.server(id));
    },
    async close() {
      await store.delete(keys.server(id));
      await parts.replicator.stop();
      // As startController does: a connection that never sent a request must not hold close().
      const cut = setTimeout(() => api.server.closeAllConnections(), 1000);
      await api.close();
      clearTimeout(cut);
      await services.close();
    },
  };
}

/** The hex SHA-256 of a file's bytes. */
export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function hexOf(slug: SlugRecord): string {
  return slug.checksum.replace(/^SHA256:/, '');
}

/** Whether `server` holds `slug` as it should: the blob, intact, and its copy record. */
export async function holds(store: Store, server: SlugServer, slug: SlugRecord): Promise<boolean> {
  const hex = hexOf(slug);
  const path = server.slugs.blobPath(hex);
  return existsSync(path) && sha256(path) === hex && (await store.get(keys.slugCopy(hex, server.id))) !== undefined;
}

/** Whether `server` has neither the blob nor a copy record of it. */
export async function lacks(store: Store, server: SlugServer, slug: SlugRecord): Promise<boolean> {
  const hex = hexOf(slug);
  return !existsSync(server.slugs.blobPath(hex)) && (await store.get(keys.slugCopy(hex, server.id))) === undefined;
}

/** A source dir with one file, packed into a slug by `slugs` (distinct content → distinct checksum). */
export async function makeSlug(slugs: SlugStore, root: string, appId: string, content: string): Promise<SlugRecord> {
  const src = join(root, `src-${createHash('sha256').update(content).digest('hex').slice(0, 12)}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'file.txt'), content);
  return slugs.create(appId, src, { processTypes: { web: 'true' }, commit: null, buildpack: null });
}
