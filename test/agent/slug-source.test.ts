import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControllerLink } from '../../src/agent/remote.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { codecs, type SlugRecord } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';
import { hexOf, makeSlug, sha256, startSlugServer, type SlugServer } from '../builder/slug-cluster.js';
import { captureLog } from '../support/log.js';
import { freePort } from '../support/ports.js';

const root = mkdtempSync(join(tmpdir(), 'berth-slug-source-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const APP = '00000000-0000-4000-8000-0000000000a1';
let store: Store;
let servers: SlugServer[] = [];
let agentCredential: string;
let cache: string;
let n = 0;

beforeEach(async () => {
  store = openStore('memory://');
  agentCredential = await new ClusterTokens(store).issue('agent-1', 'agent-1', 'agent');
  cache = join(root, `cache-${n++}`);
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  await store.close();
});

async function server(id: string): Promise<SlugServer> {
  const { log } = captureLog('silent');
  const s = await startSlugServer({ store, log, root: join(root, `run-${n}`), id, replication: { copyTimeoutMs: 3000 } });
  servers.push(s);
  return s;
}

/** Release 1 of APP runs `slug`, and a unit of it is assigned to agent-1. */
async function assign(slug: SlugRecord): Promise<void> {
  const now = new Date().toISOString();
  await put(store, keys.release(APP, 1), codecs.release, { id: '00000000-0000-4000-8000-000000000001', version: 1, slug_id: slug.id, config: {}, process_types: { web: 'true' }, description: 'Deploy', user_id: 'u', user_email: 'u@example.com', status: 'succeeded', created_at: now, updated_at: now });
  await put(store, keys.unit('agent-1', 'app.web.1'), codecs.unit, { name: 'app.web.1', appId: APP, appName: 'app', type: 'web', index: 1, release: 1, memoryBytes: 1 << 29 });
}

describe("an agent machine's slugs", () => {
  it('come from a live server holding them when the join URL is dead; checked, cached, one download for many callers', async () => {
    const a = await server('srv-a');
    const slug = await makeSlug(a.slugs, root, APP, 'served by a');
    await assign(slug);
    const { log, lines } = captureLog('info');
    const link = new ControllerLink(`http://127.0.0.1:${await freePort()}`, agentCredential, log);
    const slugPath = link.slugPath(store, cache);
    const paths = await Promise.all([slugPath(slug.id), slugPath(slug.id), slugPath(slug.id)]);
    expect(new Set(paths)).toEqual(new Set([join(cache, `${hexOf(slug)}.tgz`)]));
    expect(sha256(paths[0] as string)).toBe(hexOf(slug));
    expect(lines.filter((l) => l.msg === 'slug cached')).toHaveLength(1);
    expect(lines.find((l) => l.msg === 'slug cached')?.from).toBe(a.url);
    // Cached: no server is asked again, even with none left.
    await a.close();
    servers = [];
    expect(await slugPath(slug.id)).toBe(paths[0]);
    expect(lines.filter((l) => l.msg === 'slug cached')).toHaveLength(1);
  });

  it('refuses a tampered download and takes the slug from another server', async () => {
    const a = await server('srv-a');
    const b = await server('srv-b');
    const slug = await makeSlug(a.slugs, root, APP, 'tampered on a');
    await b.replicator.ensure(hexOf(slug));
    await assign(slug);
    const blob = a.slugs.blobPath(hexOf(slug));
    const bytes = readFileSync(blob);
    bytes[0] = (bytes[0] as number) ^ 0xff;
    writeFileSync(blob, bytes);
    const { log, lines } = captureLog('info');
    // A is the URL it joined through: asked first.
    const link = new ControllerLink(a.url, agentCredential, log);
    const path = await link.slugPath(store, cache)(slug.id);
    expect(sha256(path)).toBe(hexOf(slug));
    expect(lines.find((l) => l.msg === 'slug download failed; trying another server' && l.from === a.url)?.err).toMatch(/checksum/);
    expect(lines.find((l) => l.msg === 'slug cached')?.from).toBe(b.url);
    expect(readdirSync(cache).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('prefers a server that holds the blob over the join URL; one that lacks it fetches it first', async () => {
    const a = await server('srv-a');
    const b = await server('srv-b');
    const slug = await makeSlug(a.slugs, root, APP, 'held by a only');
    await assign(slug);
    const { log, lines } = captureLog('info');
    const link = new ControllerLink(b.url, agentCredential, log);
    await link.slugPath(store, cache)(slug.id);
    expect(lines.find((l) => l.msg === 'slug cached')?.from).toBe(a.url);
    expect(existsSync(b.slugs.blobPath(hexOf(slug)))).toBe(false);
    // Asked directly, B (which lacks it) fetches it from a holder before answering: with A's
    // server record gone there is none, with A back there is.
    await a.down();
    const direct = await fetch(`${b.url}/internal/slugs/${slug.id}/blob`, { headers: { authorization: `Bearer ${agentCredential}` } });
    // No holder live: unavailable for now (503, slug_unavailable), not a server fault.
    expect(direct.status).toBe(503);
    expect(((await direct.json()) as { id: string }).id).toBe('slug_unavailable');
    await a.up();
    const served = await fetch(`${b.url}/internal/slugs/${slug.id}/blob`, { headers: { authorization: `Bearer ${agentCredential}` } });
    expect(served.status).toBe(200);
    await served.arrayBuffer();
    expect(sha256(b.slugs.blobPath(hexOf(slug)))).toBe(hexOf(slug));
  });

  it('gets nothing it is not assigned, from any server', async () => {
    const a = await server('srv-a');
    const slug = await makeSlug(a.slugs, root, APP, 'not for agent-1');
    const { log } = captureLog('silent');
    const link = new ControllerLink(a.url, agentCredential, log);
    await expect(link.slugPath(store, cache)(slug.id)).rejects.toThrow(/could not be downloaded from any server.*HTTP 404/);
    expect(readdirSync(cache)).toEqual([]);
  });
});
