import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildRequest, BuiltSlug, SlugBuilder, SlugCommand, SlugRunner } from '../../src/builder/ports.js';
import { createServices, type Services } from '../../src/controller/index.js';
import { BerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import type { BuildRecord, SlugRecord, UserRecord } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';

/**
 * The builder's ports, for real but without buildpacks: a "build" stores a slug record with the
 * process types (and app.json postdeploy) the test says the source has.
 */
class FakeSlugBuilder implements SlugBuilder {
  unavailable: string | undefined = undefined;
  source: { processTypes: Record<string, string>; postdeploy?: string; fail?: string } = { processTypes: { web: 'node server.js' } };
  readonly collected: Set<string>[] = [];

  constructor(private readonly store: Store) {}

  async build({ app, source, output }: BuildRequest): Promise<BuiltSlug> {
    output('-----> Building on the Heroku-style stack\n');
    if (this.source.fail) throw new BerthError('build_failed', this.source.fail);
    const now = new Date().toISOString();
    const slug: SlugRecord = {
      id: randomUUID(),
      app_id: app.id,
      checksum: `SHA256:${'0'.repeat(64)}`,
      size: 1,
      process_types: this.source.processTypes,
      commit: source.commit,
      commit_description: null,
      buildpack_provided_description: 'fake',
      stack: { name: 'heroku-22' },
      created_at: now,
      updated_at: now,
    };
    await this.store.put(keys.slug(slug.id), JSON.stringify(slug));
    return { slug, buildpacks: ['fake'], ...(this.source.postdeploy ? { postdeploy: this.source.postdeploy } : {}) };
  }

  async collect(_appId: string, keep: Set<string>): Promise<number> {
    this.collected.push(keep);
    return 0;
  }
}

/** Runs nothing: records each command and answers with the exit the test chose for its dyno. */
class FakeRunner implements SlugRunner {
  readonly ran: SlugCommand[] = [];
  ok: Record<string, boolean> = {};

  async run(command: SlugCommand): Promise<boolean> {
    this.ran.push(command);
    command.output(`ran ${command.command}\n`);
    return this.ok[command.dyno] ?? true;
  }
}

let store: Store;
let services: Services;
let slugs: FakeSlugBuilder;
let runner: FakeRunner;
let user: UserRecord;

beforeEach(async () => {
  store = openStore('memory://');
  slugs = new FakeSlugBuilder(store);
  runner = new FakeRunner();
  services = createServices(store, createLogger('test', { level: 'silent' }), { domain: 'berth.test', apiUrl: 'http://api.berth.test' }, { builder: { slugs, runner } });
  user = (await services.users.create('dev@example.com')).user;
});
afterEach(async () => {
  await services.deploys.idle();
  await services.close();
  await store.close();
});

let commits = 0;
async function push(appName: string): Promise<{ ok: boolean; output: string }> {
  const app = await services.gitAccess.resolveApp(user, appName);
  let output = '';
  const commit = (++commits).toString(16).padStart(40, 'a');
  const ok = await services.deploys.deploy(user, app, { commit, objects: {} }, (t) => (output += t));
  return { ok, output };
}

async function state(appName: string) {
  const access = await services.apps.resolve(user, appName);
  const releases = await services.releases.list(access.app.id);
  const formation = await services.formations.list(access);
  const builds = (await store.range(keys.builds(access.app.id), { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as BuildRecord);
  const lines = services.logs.recent(access.app.id, 100).map((l) => l.message);
  return { app: access.app, releases, formation, builds, lines };
}

describe('Deploys', () => {
  it('releases the slug, scales web to 1 on the first deploy only, and says so in the app log', async () => {
    await services.apps.create(user, 'first');
    const one = await push('first');
    expect(one.ok, one.output).toBe(true);
    expect(one.output).toMatch(/-----> Scaled web to 1 \(first deploy\)/);
    expect(one.output).toMatch(/Released v2\n/);
    let s = await state('first');
    expect(s.releases.map((r) => [r.version, r.status])).toEqual([
      [1, 'succeeded'],
      [2, 'succeeded'],
    ]);
    expect(s.releases[1]?.description).toMatch(/^Deploy [0-9a-f]{8}$/);
    expect(s.app.current_version).toBe(2);
    expect(s.formation.map((f) => [f.type, f.quantity])).toEqual([['web', 1]]);
    expect(s.builds).toEqual([expect.objectContaining({ status: 'succeeded', slug: { id: s.releases[1]?.slug_id }, release: { id: s.releases[1]?.id }, buildpacks: [{ url: 'fake', name: 'fake' }] })]);
    expect(s.lines).toEqual([expect.stringMatching(/^Deploy [0-9a-f]{7} by user dev@example\.com$/), 'Release v2 created by user dev@example.com']);
    // Collected in the background, after the verdict.
    await services.deploys.idle();
    expect(slugs.collected.at(-1)).toEqual(new Set([s.releases[1]?.slug_id]));

    // Scaled down by hand, a second deploy leaves the formation alone.
    await services.formations.update(user, await services.apps.resolve(user, 'first'), [{ type: 'web', quantity: 0 }]);
    const two = await push('first');
    expect(two.ok, two.output).toBe(true);
    expect(two.output).not.toMatch(/Scaled web/);
    s = await state('first');
    expect(s.releases.map((r) => r.version)).toEqual([1, 2, 3]);
    expect(s.formation.map((f) => [f.type, f.quantity])).toEqual([['web', 0]]);
  });

  it('does not scale an app whose slug has no web process', async () => {
    await services.apps.create(user, 'worker-only');
    slugs.source = { processTypes: { worker: 'node worker.js' } };
    expect((await push('worker-only')).ok).toBe(true);
    expect((await state('worker-only')).formation).toEqual([]);
  });

  it('a failed release phase marks the release failed, keeps the previous one current and does not scale; the push stands', async () => {
    await services.apps.create(user, 'phased');
    slugs.source = { processTypes: { web: 'node server.js', release: 'migrate' }, postdeploy: 'seed' };
    runner.ok = { 'release.1': false };
    const r = await push('phased');
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toMatch(/-----> Running release command\.\.\.\nran migrate\n ! {5}Release command failed: v2 is marked failed/);
    expect(r.output).toMatch(/Release v2 failed in its release phase; the previous release keeps running/);
    expect(r.output).not.toMatch(/Scaled web|postdeploy|Released v2/);
    const s = await state('phased');
    expect(s.releases.map((x) => [x.version, x.status])).toEqual([
      [1, 'succeeded'],
      [2, 'failed'],
    ]);
    expect(s.app.current_version).toBe(1);
    expect(s.formation).toEqual([]);
    expect(s.builds.map((b) => b.status)).toEqual(['succeeded']);
    expect(runner.ran.map((c) => [c.dyno, c.command, c.slugId])).toEqual([['release.1', 'migrate', s.releases[1]?.slug_id]]);

    // Fixed: the release phase passes, and this is still the first deploy that released.
    runner.ok = {};
    const again = await push('phased');
    expect(again.ok, again.output).toBe(true);
    expect((await state('phased')).app.current_version).toBe(3);
  });

  it('runs app.json postdeploy on the first deploy only, with the release config, after scaling', async () => {
    const app = await services.apps.create(user, 'seeded');
    await services.releases.setConfig(user, await services.apps.resolve(user, app.id), { DATABASE_URL: 'postgres://db' });
    slugs.source = { processTypes: { web: 'node server.js' }, postdeploy: 'node seed.js' };
    const one = await push('seeded');
    expect(one.ok, one.output).toBe(true);
    expect(one.output).toMatch(/Scaled web to 1 \(first deploy\)\n-----> Running postdeploy script \(app.json, first release only\)\.\.\.\nran node seed.js\n {7}postdeploy succeeded\n/);
    expect(runner.ran).toEqual([expect.objectContaining({ appId: app.id, dyno: 'postdeploy', command: 'node seed.js', config: { DATABASE_URL: 'postgres://db' } })]);
    const two = await push('seeded');
    expect(two.ok, two.output).toBe(true);
    expect(two.output).not.toMatch(/postdeploy/);
    expect(runner.ran).toHaveLength(1);
  });

  it('a failed postdeploy leaves the release standing', async () => {
    await services.apps.create(user, 'seed-fails');
    slugs.source = { processTypes: { web: 'x' }, postdeploy: 'false' };
    runner.ok = { postdeploy: false };
    const r = await push('seed-fails');
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(/ ! {5}postdeploy failed; the release stands\.\n/);
    expect((await state('seed-fails')).app.current_version).toBe(2);
  });

  it('a failed build rejects the push: no release, the build recorded as failed', async () => {
    await services.apps.create(user, 'broken');
    slugs.source = { processTypes: {}, fail: 'Build exited 3' };
    const r = await push('broken');
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/\n ! {5}Build exited 3\n ! {5}Push rejected, failed to compile broken\.\n$/);
    const s = await state('broken');
    expect(s.releases.map((x) => x.version)).toEqual([1]);
    expect(s.builds.map((b) => b.status)).toEqual(['failed']);
    expect(services.deploys.running(s.builds[0]?.id ?? '')).toBeUndefined();
  });
});
