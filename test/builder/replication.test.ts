import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SlugReplicator } from '../../src/builder/replication.js';
import { SlugStore } from '../../src/builder/slugs.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { isBerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { put } from '../../src/domain/codec.js';
import { openStore, type Store } from '../../src/store/index.js';
import { captureLog } from '../support/log.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';
import { hexOf, holds, lacks, makeSlug, sha256, startSlugServer, type SlugServer } from './slug-cluster.js';

let root: string;
let store: Store;
const { log, lines } = captureLog('debug');
const open: SlugServer[] = [];

const APP = '00000000-0000-4000-8000-0000000000a1';
const OTHER_APP = '00000000-0000-4000-8000-0000000000b1';
const fast = { copyTimeoutMs: 3000, collectGraceMs: 0, repairMs: 0 };

async function server(id: string, start = true): Promise<SlugServer> {
  const s = await startSlugServer({ store, log, root, id, replication: fast });
  open.push(s);
  if (start) await s.replicator.start();
  return s;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'berth-replication-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await store?.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('a build waits for a second copy', () => {
  it('returns only once a peer holds a verified copy; peers not asked hold nothing', async () => {
    store = openStore('memory://');
    // Peers with routes but no loops of their own: a copy can only come from being asked.
    const a = await server('srv-a', false);
    const b = await server('srv-b', false);
    const c = await server('srv-c', false);
    const slug = await makeSlug(a.slugs, root, APP, 'wait for a copy');
    expect(await holds(store, a, slug)).toBe(true);
    expect((await lacks(store, b, slug)) && (await lacks(store, c, slug))).toBe(true);
    const peer = await a.replicator.spread(slug);
    const copied = [b, c].find((s) => s.id === peer);
    expect(copied).toBeDefined();
    // Returned, so on disk, checked and recorded there already: nothing to wait for.
    expect(await holds(store, copied as SlugServer, slug)).toBe(true);
  });

  it('fails with a coded error when peers exist but none can copy; alone it needs none', async () => {
    store = openStore('memory://');
    const a = await server('srv-a', false);
    const slug = await makeSlug(a.slugs, root, APP, 'alone');
    expect(await a.replicator.spread(slug)).toBeUndefined();
    // A live server record whose API does not answer: the copy cannot be made there.
    const dead = await freePort();
    await put(store, keys.server('srv-dead'), codecs.server, { id: 'srv-dead', name: 'srv-dead', address: '127.0.0.1', api_url: `http://127.0.0.1:${dead}`, join_url: `https://127.0.0.1:${dead}`, etcd: null, started_at: new Date().toISOString() });
    const started = Date.now();
    const err = await a.replicator.spread(slug).catch((e: unknown) => e);
    expect(isBerthError(err, 'slug_replication_failed')).toBe(true);
    expect(String((err as Error).message)).toMatch(/srv-dead/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    // Once the dead server's record is gone (its lease expired), one copy is all there can be.
    await store.delete(keys.server('srv-dead'));
    expect(await a.replicator.spread(slug)).toBeUndefined();
  });
});

describe('fetching from holders', () => {
  it('refuses a tampered copy, and fetches from another holder; the bad holder replaces its blob', async () => {
    store = openStore('memory://');
    const a = await server('srv-a', false);
    const b = await server('srv-b', false);
    const c = await server('srv-c', false);
    const slug = await makeSlug(a.slugs, root, APP, 'tamper with me');
    const hex = hexOf(slug);
    await b.replicator.ensure(hex);
    expect(await holds(store, b, slug)).toBe(true);
    // B's disk goes bad: same size, other bytes; its copy record still claims the blob.
    const good = readFileSync(b.slugs.blobPath(hex));
    const bad = Buffer.from(good);
    bad[bad.length >> 1] = (bad[bad.length >> 1] as number) ^ 0xff;
    writeFileSync(b.slugs.blobPath(hex), bad);
    // With A away, B is the only holder C can ask: its copy is refused and nothing is kept.
    await a.down();
    const refused = await c.replicator.ensure(hex).catch((e: unknown) => e);
    expect(isBerthError(refused, 'slug_unavailable')).toBe(true);
    expect(String((refused as Error).message)).toMatch(/srv-b: .*checksum/);
    expect(existsSync(c.slugs.blobPath(hex))).toBe(false);
    // B found its own blob bad while serving it: gone with its copy record.
    await until('B drops its bad blob', async () => lacks(store, b, slug));
    await a.up();
    expect(await c.replicator.ensure(hex)).toBe(c.slugs.blobPath(hex));
    expect(sha256(c.slugs.blobPath(hex))).toBe(hex);
    expect(await holds(store, c, slug)).toBe(true);
    expect(lines.some((l) => l.msg === 'slug copy refused; trying another holder' && l.from === 'srv-b')).toBe(true);
  });

  it('a returning server fetches what it lacks and drops what was collected while it was away', async () => {
    store = openStore('memory://');
    const a = await server('srv-a');
    const b = await server('srv-b');
    const c = await server('srv-c');
    const old = await makeSlug(a.slugs, root, APP, 'collected while away');
    await a.replicator.spread(old);
    await until('C holds the old slug', () => holds(store, c, old));
    // C goes away (its process stops; its server record lapses).
    await c.replicator.stop();
    await c.down();
    const fresh = await Promise.all(['new one', 'new two', 'new three'].map((t) => makeSlug(a.slugs, root, APP, t)));
    for (const s of fresh) expect(await a.replicator.spread(s)).toBe('srv-b');
    await until('A has indexed the new slugs', () => fresh.every((f) => a.replicator.knows(f.id)));
    expect(await a.replicator.collect(APP, new Set(fresh.map((s) => s.id)))).toBe(1);
    await until('A and B dropped the old blob', async () => (await lacks(store, a, old)) && lacks(store, b, old));
    // C still has it, and lacks the new ones.
    expect(existsSync(c.slugs.blobPath(hexOf(old)))).toBe(true);
    for (const s of fresh) expect(existsSync(c.slugs.blobPath(hexOf(s)))).toBe(false);
    // C comes back with the same data dir: a new process, a full read.
    const slugs = new SlugStore(store, join(c.dir, 'slugs'), undefined, 'srv-c');
    const back = new SlugReplicator({ store, log, slugs, peers: c.peers, ...fast });
    await c.up();
    await back.start();
    try {
      for (const s of fresh) await until(`C fetched ${s.id}`, async () => existsSync(slugs.blobPath(hexOf(s))) && sha256(slugs.blobPath(hexOf(s))) === hexOf(s) && (await store.get(keys.slugCopy(hexOf(s), 'srv-c'))) !== undefined);
      // The old blob was older than the read: collected while away, removed now with its record.
      await until('C dropped the old blob', async () => !existsSync(slugs.blobPath(hexOf(old))) && (await store.get(keys.slugCopy(hexOf(old), 'srv-c'))) === undefined);
    } finally {
      await back.stop();
    }
  });
});

describe('collection across servers', () => {
  it('removes a blob and its copy records on every server once no slug record points at it', async () => {
    store = openStore('memory://');
    const servers = [await server('srv-a'), await server('srv-b'), await server('srv-c')];
    const [a] = servers as [SlugServer];
    const s1 = await makeSlug(a.slugs, root, APP, 'release one');
    const s2 = await makeSlug(a.slugs, root, APP, 'release two');
    // Another app built the same bytes as s1: one blob, two records.
    const twin = await makeSlug(a.slugs, root, OTHER_APP, 'release one');
    expect(twin.checksum).toBe(s1.checksum);
    for (const s of [s1, s2]) await a.replicator.spread(s);
    await until('every server holds both', async () => (await Promise.all(servers.flatMap((srv) => [holds(store, srv, s1), holds(store, srv, s2)]))).every(Boolean));
    await until('A has indexed the slugs', () => [s1, s2, twin].every((x) => a.replicator.knows(x.id)));
    expect(await a.replicator.collect(APP, new Set([s2.id]))).toBe(1);
    expect(await store.get(keys.slug(s1.id))).toBeUndefined();
    // The twin still points at the blob: it stays everywhere.
    await new Promise((r) => setTimeout(r, 300));
    for (const srv of servers) expect(await holds(store, srv, s1)).toBe(true);
    expect(await a.replicator.collect(OTHER_APP, new Set())).toBe(1);
    await until('every server dropped the blob and its copy record', async () => (await Promise.all(servers.map((srv) => lacks(store, srv, s1)))).every(Boolean));
    for (const srv of servers) expect(await holds(store, srv, s2)).toBe(true);
  });

  it('keeps slugs younger than the grace: another server may be about to release one', async () => {
    store = openStore('memory://');
    const s = await startSlugServer({ store, log, root, id: 'srv-a', replication: { ...fast, collectGraceMs: 60_000 } });
    open.push(s);
    await s.replicator.start();
    const young = await makeSlug(s.slugs, root, APP, 'young');
    await until('indexed', () => s.replicator.knows(young.id));
    expect(await s.replicator.collect(APP, new Set())).toBe(0);
    expect(await store.get(keys.slug(young.id))).toBeDefined();
  });
});

describe('who may download a slug', () => {
  it('serves an agent only the slugs of releases assigned to it; a server any', async () => {
    store = openStore('memory://');
    const a = await server('srv-a', false);
    const mine = await makeSlug(a.slugs, root, APP, 'assigned');
    const theirs = await makeSlug(a.slugs, root, OTHER_APP, 'not assigned');
    const agent = await new ClusterTokens(store).issue('agent-1', 'agent-1', 'agent');
    await put(store, keys.release(APP, 3), codecs.release, {
      id: '00000000-0000-4000-8000-000000000003',
      version: 3,
      slug_id: mine.id,
      config: {},
      process_types: { web: 'true' },
      description: 'Deploy',
      user_id: 'u',
      user_email: 'u@example.com',
      status: 'succeeded',
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    });
    await put(store, keys.unit('agent-1', 'app.web.1@3'), codecs.unit, { name: 'app.web.1', appId: APP, appName: 'app', type: 'web', index: 1, release: 3, memoryBytes: 512 * 1024 * 1024 });
    // Bodies read whole, so no connection outlives the test.
    const get = async (path: string, credential: string) => {
      const res = await fetch(`${a.url}${path}`, { headers: { authorization: `Bearer ${credential}` } });
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
    };
    const own = await get(`/internal/slugs/${mine.id}/blob`, agent);
    expect(own.status).toBe(200);
    expect(own.body.equals(readFileSync(a.slugs.blobPath(hexOf(mine))))).toBe(true);
    expect((await get(`/internal/slugs/${theirs.id}/blob`, agent)).status).toBe(404);
    // The unit moves away: the agent loses access to its slug too.
    await store.delete(keys.unit('agent-1', 'app.web.1@3'));
    expect((await get(`/internal/slugs/${mine.id}/blob`, agent)).status).toBe(404);
    // A server may fetch any slug; nobody may without a credential.
    expect((await get(`/internal/slugs/${theirs.id}/blob`, a.credential)).status).toBe(200);
    expect((await get(`/internal/slugs/${theirs.id}/blob`, 'nobody.0000')).status).toBe(401);
    // An agent may not use the server-to-server copy routes at all.
    expect((await get(`/internal/slug-copies/${hexOf(theirs)}/blob`, agent)).status).toBe(403);
  });
});
