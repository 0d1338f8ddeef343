import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fitJson } from '../../src/builder/output.js';
import type { BuildRequest, BuiltSlug, SlugBuilder, SlugCommand, SlugRunner } from '../../src/builder/ports.js';
import { createServices, type Services } from '../../src/controller/index.js';
import { Deploys, type DeploysOptions } from '../../src/controller/services/deploys.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import type { BuildRecord, SlugRecord, UserRecord } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';

/**
 * What a push leaves behind and when it is tidied: the running release's slug and config are
 * never collected however many releases failed after it, collection runs after the pusher has
 * its verdict and writes in batches, build records are pruned and bounded in bytes.
 */

/** Stores a slug record per "build" (printing what the test says) and records each collection. */
class Slugs implements SlugBuilder {
  unavailable: string | undefined = undefined;
  processTypes: Record<string, string> = { web: 'x', release: 'migrate' };
  print = '';
  readonly collected: Set<string>[] = [];
  /** While set, a collection waits for it. */
  hold: Promise<void> | undefined;

  constructor(private readonly store: Store) {}

  async build({ app, source, output }: BuildRequest): Promise<BuiltSlug> {
    if (this.print) output(this.print);
    const now = new Date().toISOString();
    const slug: SlugRecord = {
      id: randomUUID(),
      app_id: app.id,
      checksum: `SHA256:${'0'.repeat(64)}`,
      size: 1,
      process_types: this.processTypes,
      commit: source.commit,
      commit_description: null,
      buildpack_provided_description: 'fake',
      stack: { name: 'heroku-22' },
      created_at: now,
      updated_at: now,
    };
    await this.store.put(keys.slug(slug.id), JSON.stringify(slug));
    return { slug, buildpacks: ['fake'] };
  }

  async collect(_appId: string, keep: Set<string>): Promise<number> {
    await this.hold;
    this.collected.push(keep);
    return 0;
  }
}

class Runner implements SlugRunner {
  ok = true;
  async run(_c: SlugCommand): Promise<boolean> {
    return this.ok;
  }
}

let store: Store;
let services: Services;
let slugs: Slugs;
let runner: Runner;
let user: UserRecord;

beforeEach(async () => {
  store = openStore('memory://');
  slugs = new Slugs(store);
  runner = new Runner();
  services = createServices(store, createLogger('test', { level: 'silent' }), { domain: 'berth.test', apiUrl: 'http://api.berth.test' }, { builder: { slugs, runner } });
  user = (await services.users.create('dev@example.com')).user;
});
afterEach(async () => {
  await services.deploys.idle();
  await services.close();
  await store.close();
});

function deploys(o: Partial<DeploysOptions> = {}): Deploys {
  const { apps, releases, formations, logs, settings } = services;
  return new Deploys({ store, log: services.log, settings, apps, releases, formations, logs, builder: { slugs, runner }, ...o });
}

let commits = 0;
async function push(d: Deploys, name: string): Promise<boolean> {
  const app = await services.gitAccess.resolveApp(user, name);
  return d.deploy(user, app, { commit: (++commits).toString(16).padStart(40, 'c'), objects: {} }, () => undefined);
}

async function builds(appId: string): Promise<BuildRecord[]> {
  return (await store.range(keys.builds(appId), { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as BuildRecord);
}

describe('collection after a push', () => {
  it('keeps the current release slug and config however many newer releases failed their phase', async () => {
    const d = deploys({ retainReleases: 3 });
    const app = await services.apps.create(user, 'kept');
    await services.releases.setConfig(user, await services.apps.resolve(user, 'kept'), { A: '1' });
    expect(await push(d, 'kept')).toBe(true); // v3, current
    runner.ok = false;
    for (let i = 0; i < 12; i++) expect(await push(d, 'kept')).toBe(true); // v4..v15, failed
    await d.idle();
    const access = await services.apps.resolve(user, 'kept');
    expect(access.app.current_version).toBe(3);
    const list = await services.releases.list(app.id);
    const v3 = list.find((r) => r.version === 3);
    expect(slugs.collected.at(-1)?.has(v3?.slug_id ?? '')).toBe(true);
    expect(v3).toMatchObject({ status: 'succeeded', config: { A: '1' } });
    expect(v3?.config_pruned).toBeFalsy();
    // What runs on a restart is still all there.
    expect(list.filter((r) => r.config_pruned).map((r) => r.version)).toEqual([1, 2]);
    // Even told that no slug is live, pruning never touches the current release or a newer one.
    await services.releases.pruneConfigs(app.id, new Set(), 1);
    expect((await services.releases.list(app.id)).filter((r) => r.config_pruned).map((r) => r.version)).toEqual([1, 2]);
  });

  it('the pusher has its verdict before old slugs are collected', async () => {
    const d = deploys();
    await services.apps.create(user, 'quick');
    let let_go!: () => void;
    slugs.hold = new Promise((r) => (let_go = r));
    const verdict = await Promise.race([push(d, 'quick'), new Promise((r) => setTimeout(() => r('still waiting'), 3000))]);
    expect(verdict).toBe(true);
    expect(slugs.collected).toHaveLength(0);
    let_go();
    await d.idle();
    expect(slugs.collected).toHaveLength(1);
  });

  it('prunes old configs in batches, a few writes instead of one per release', async () => {
    const app = await services.apps.create(user, 'many');
    for (let i = 0; i < 210; i++) await services.releases.setConfig(user, await services.apps.resolve(user, 'many'), { N: String(i) });
    const before = await store.currentRevision();
    expect(await services.releases.pruneConfigs(app.id, new Set(), 3)).toBe(208);
    expect((await store.currentRevision()) - before).toBe(Math.ceil(208 / 64));
    const list = await services.releases.list(app.id);
    expect(list.filter((r) => !r.config_pruned).map((r) => r.version)).toEqual([209, 210, 211]);
  });

  it('keeps the newest builds only, each record bounded in bytes whatever it printed', async () => {
    const d = deploys({ retainBuilds: 5 });
    const app = await services.apps.create(user, 'chatty');
    runner.ok = true;
    // Control characters cost six bytes each in JSON: 256 K of them kept as characters was 1.5 MiB.
    slugs.print = `start\n${'\u0001'.repeat(1024 * 1024)}\nthe end\n`;
    for (let i = 0; i < 23; i++) expect(await push(d, 'chatty')).toBe(true);
    await d.idle();
    const kept = await builds(app.id);
    expect(kept.length).toBeGreaterThanOrEqual(5);
    expect(kept.length).toBeLessThan(15);
    const last = (await services.releases.list(app.id)).at(-1);
    expect(kept.map((b) => b.release?.id)).toContain(last?.id);
    for (const b of kept) {
      expect(b.status).toBe('succeeded');
      expect(Buffer.byteLength(JSON.stringify(b))).toBeLessThan(300 * 1024);
      expect(b.output).toMatch(/^start\n/);
      expect(b.output).toMatch(/Launching\.\.\./);
    }
  });
});

describe('fitJson', () => {
  it('fits control characters and astral characters in the bytes given, pairs whole', () => {
    for (const text of ['\u0001'.repeat(300_000), '😀'.repeat(200_000), `a"\\\n${'é'.repeat(300_000)}z`]) {
      const fit = fitJson(text, 64 * 1024);
      expect(Buffer.byteLength(JSON.stringify(fit))).toBeLessThanOrEqual(64 * 1024);
      expect(fit.length).toBeGreaterThan(8 * 1024);
      expect(JSON.stringify(fit)).not.toMatch(/\\ud[89a-f]/);
      expect(fit.slice(-1)).toBe(text.slice(-1));
    }
    expect(fitJson('short', 100)).toBe('short');
  });
});
