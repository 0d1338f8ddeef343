import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerList, SlugSource } from '../../src/agent/slug-source.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { codecs, type SlugRecord } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';

/** An agent's slug cache: a cached file whose bytes are not the slug's is deleted and fetched again, never handed out. */

const blob = Buffer.from(`not really a tarball, but bytes with a checksum ${randomUUID()}`.repeat(1000));
const hex = createHash('sha256').update(blob).digest('hex');
let dir: string;
let store: Store;
let server: Server;
let served = 0;
let slug: SlugRecord;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-slug-cache-'));
  store = openStore('memory://');
  server = createServer((req, res) => {
    if (req.url === `/internal/slugs/${slug.id}/blob`) {
      served++;
      res.end(blob);
    } else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const now = new Date().toISOString();
  slug = { id: randomUUID(), app_id: randomUUID(), checksum: `SHA256:${hex}`, size: blob.length, process_types: {}, commit: null, commit_description: null, buildpack_provided_description: null, stack: { name: 'heroku-22' }, created_at: now, updated_at: now };
  await put(store, keys.slug(slug.id), codecs.slug, slug);
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("an agent's slug cache", () => {
  it('hands out a cached slug only while its bytes hash to the checksum', async () => {
    const log = createLogger('test', { level: 'silent' });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const source = new SlugSource({ store, log, cacheDir: join(dir, 'cache'), servers: new ServerList(url, log), headers: () => ({}) });
    const file = await source.path(slug.id);
    expect(served).toBe(1);
    // Unchanged: served from the cache, not downloaded again.
    expect(await source.path(slug.id)).toBe(file);
    expect(served).toBe(1);
    // Same size, other bytes.
    const bad = Buffer.from(blob);
    bad[100] = (bad[100] ?? 0) ^ 0xff;
    writeFileSync(file, bad);
    const again = await source.path(slug.id);
    expect(served).toBe(2);
    expect(createHash('sha256').update(readFileSync(again)).digest('hex')).toBe(hex);
  });
});
