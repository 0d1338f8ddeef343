import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBuilder, type BuilderComponent } from '../../src/builder/index.js';
import { isBerthError } from '../../src/domain/errors.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { OverlayNetwork } from '../../src/network/index.js';
import { defaultSourceAddress } from '../../src/node/network.js';
import { openStore, type Store } from '../../src/store/index.js';
import { captureLog } from '../support/log.js';
import { testNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';
import { testSandbox } from '../support/sandbox.js';
import { until } from '../support/until.js';
import { hexOf, holds, lacks, sha256, startSlugServer, type SlugServer } from './slug-cluster.js';

const APP = '00000000-0000-4000-8000-0000000000d1';
let dir: string;
let store: Store;
let network: OverlayNetwork;
const net = testNetwork();
const { log } = captureLog('silent');
const servers: SlugServer[] = [];
const builders = new Map<string, BuilderComponent>();
let commit: string;

/** A server whose slug side is a whole builder (`createBuilder`), with the cluster's peers. */
async function server(id: string): Promise<SlugServer> {
  const s = await startSlugServer({
    store,
    log,
    root: dir,
    id,
    parts: (peers, data) => {
      const b = createBuilder({ store, log, dataDir: data, sandbox: testSandbox(), network, peers, replication: { copyTimeoutMs: 3000, collectGraceMs: 0 } });
      builders.set(id, b);
      return { slugs: b.builder.slugs, replicator: b.replicator, find: b.slug };
    },
  });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-replicated-build-'));
  chmodSync(dir, 0o755);
  store = openStore('memory://');
  mkdirSync(join(dir, 'network'), { recursive: true, mode: 0o711 });
  network = new OverlayNetwork({ store, log, machine: 'replicated-build', dir: join(dir, 'network'), name: net.name, publicIp: (await defaultSourceAddress()) ?? '127.0.0.1', request: { network: net.overlay, backend: net.backend }, publicPorts: [], internalAddresses: [] });
  await network.start();
  await store.put(keys.app(APP), JSON.stringify({ id: APP, name: 'replicated' }));
  for (const id of ['srv-a', 'srv-b', 'srv-c']) await server(id);
  // The pushed commit, in A's repository for the app (as git receive would leave it).
  const work = join(dir, 'work');
  mkdirSync(work);
  writeFileSync(join(work, 'Procfile'), 'web: python3 -m http.server $PORT\n');
  const git = (args: string[], cwd = work) => execFileSync('git', args, { cwd, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } }).toString().trim();
  git(['init', '--quiet', '--initial-branch=main']);
  git(['add', '.']);
  git(['commit', '--quiet', '-m', 'one']);
  commit = git(['rev-parse', 'HEAD']);
  const repo = (builders.get('srv-a') as BuilderComponent).repos.path(APP);
  execFileSync('git', ['init', '--bare', '--quiet', repo]);
  git(['push', '--quiet', repo, 'main']);
}, 60_000);

afterAll(async () => {
  for (const s of servers) await s.close();
  await network?.stop();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

function build(id: string) {
  let output = '';
  const b = builders.get(id) as BuilderComponent;
  return b.slugs.build({ app: { id: APP, name: 'replicated' }, source: { commit, objects: {} }, config: {}, output: (t) => (output += t) }).then(
    (r) => ({ ...r, output }),
    (err: unknown) => ({ err, output }),
  );
}

describe('a build on a server with peers', () => {
  it('returns only once a peer holds a verified copy of its slug', async () => {
    const [a, b, c] = servers as [SlugServer, SlugServer, SlugServer];
    // Only A follows the records: B and C get a copy only by being asked.
    await a.replicator.start();
    const r = await build('srv-a');
    if (!('slug' in r)) throw Object.assign(new Error(r.output), { cause: r.err });
    expect(r.output).toMatch(/Copied to srv-[bc]/);
    expect(await holds(store, a, r.slug)).toBe(true);
    const copies = await Promise.all([holds(store, b, r.slug), holds(store, c, r.slug)]);
    expect(copies.some(Boolean)).toBe(true);
    // The other peer gets its copy in the background.
    await until('both peers hold it', async () => (await holds(store, b, r.slug)) && holds(store, c, r.slug));
  }, 60_000);

  it('fails, and leaves no slug, when peers exist but none can take a copy', async () => {
    const [a, b, c] = servers as [SlugServer, SlugServer, SlugServer];
    await b.down();
    await c.down();
    const dead = await freePort();
    await put(store, keys.server('srv-dead'), codecs.server, { id: 'srv-dead', name: 'srv-dead', address: '127.0.0.1', api_url: `http://127.0.0.1:${dead}`, join_url: `https://127.0.0.1:${dead}`, etcd: null, started_at: new Date().toISOString() });
    // A new commit, so a new blob that only A has.
    const work = join(dir, 'work');
    writeFileSync(join(work, 'extra.txt'), 'two');
    execFileSync('git', ['add', '.'], { cwd: work });
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '--quiet', '-m', 'two'], { cwd: work });
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: work }).toString().trim();
    execFileSync('git', ['push', '--quiet', (builders.get('srv-a') as BuilderComponent).repos.path(APP), 'main'], { cwd: work });
    const r = await build('srv-a');
    expect('err' in r && isBerthError(r.err, 'slug_replication_failed')).toBe(true);
    // Its record is gone (only the first build's is left), and A's replicator removes its blob.
    const [first, ...others] = (await store.range(keys.slugs(), { prefix: true })).kvs;
    expect(others).toEqual([]);
    const kept = hexOf(codecs.slug.decode(first?.value as string));
    await until('A removed the blob no record points at', () => [...a.slugs.local()].join() === kept);
    await store.delete(keys.server('srv-dead'));
    await b.up();
    await c.up();
  }, 60_000);

  it("a server agent's slugPath fetches a slug its server lacks", async () => {
    const [a, , c] = servers as [SlugServer, SlugServer, SlugServer];
    const [kv] = (await store.range(keys.slugs(), { prefix: true })).kvs;
    const slug = codecs.slug.decode(kv?.value as string);
    rmSync(c.slugs.blobPath(hexOf(slug)), { force: true });
    await c.slugs.unrecord(hexOf(slug));
    expect(await lacks(store, c, slug)).toBe(true);
    const path = await (builders.get('srv-c') as BuilderComponent).slugPath(slug.id);
    expect(path).toBe(c.slugs.blobPath(hexOf(slug)));
    expect(sha256(path)).toBe(hexOf(slug));
    expect(await holds(store, c, slug)).toBe(true);
    expect(existsSync(a.slugs.blobPath(hexOf(slug)))).toBe(true);
  });

  it("a server's slugPath never hands out a blob that fails its checksum: it is deleted and fetched again", async () => {
    const [, , c] = servers as [SlugServer, SlugServer, SlugServer];
    const [kv] = (await store.range(keys.slugs(), { prefix: true })).kvs;
    const slug = codecs.slug.decode(kv?.value as string);
    const path = c.slugs.blobPath(hexOf(slug));
    // Same size, other bytes: a disk fault, or a file changed behind the server's back.
    const bytes = readFileSync(path);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff;
    writeFileSync(path, bytes);
    expect(sha256(path)).not.toBe(hexOf(slug));
    expect(await (builders.get('srv-c') as BuilderComponent).slugPath(slug.id)).toBe(path);
    expect(sha256(path)).toBe(hexOf(slug));
    expect(await holds(store, c, slug)).toBe(true);
  });
});
