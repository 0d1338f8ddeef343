import { randomUUID } from 'node:crypto';
import { fitJson, KeptOutput, StreamCap } from '../../builder/output.js';
import type { AppRef, Deployer, PushSource, SlugBuilder, SlugRunner } from '../../builder/ports.js';
import { get, put } from '../../domain/codec.js';
import { errorMessage } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import { codecs, type BuildRecord, type UserRecord } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import type { Apps } from './apps.js';
import type { Formations } from './formation.js';
import type { LogHub } from './logs.js';
import type { Releases } from './releases.js';
import type { PlatformSettings, ReleaseRecord } from './types.js';

/** A build in progress: its output so far (its start and its end), who is following it, and how to stop it. */
export interface RunningBuild {
  appId: string;
  output: KeptOutput;
  listeners: Set<(text: string) => void>;
  abort: AbortController;
  finished: Promise<void>;
}

export interface DeploysOptions {
  store: Store;
  log: Logger;
  settings: PlatformSettings;
  apps: Apps;
  releases: Releases;
  formations: Formations;
  logs: LogHub;
  /** Source → slug, and commands in a slug (postdeploy); absent on a node that does not build. */
  builder?: { slugs: SlugBuilder; runner: SlugRunner };
  /** Slugs kept per app: those of its newest N releases (default 10), its current one and pending ones. */
  retainSlugs?: number;
  /** Releases past the newest this many drop their config copy once their slug is gone (default 100). */
  retainReleases?: number;
  /** Build records kept per app, the newest (default 50). */
  retainBuilds?: number;
  /**
   * What a build keeps of its output in memory (the first `headChars` and the last `tailChars`,
   * default 64 K and 192 K) and in its record (`recordBytes` as JSON, default 256 KiB), and streams
   * to the pusher (`streamBytes`, 16 MB).
   */
  output?: { headChars?: number; tailChars?: number; recordBytes?: number; streamBytes?: number };
}

/** Build records are deleted in steps of this many, so a push does not read the app's builds each time. */
const BUILD_PRUNE_STEP = 10;
/** Writes (or deletes) per transaction when pruning: well within etcd's 128 operations. */
const BATCH = 64;

/**
 * A push, from built source to running release: the build record (`builds`, its live output and
 * cancel), the slug (by the builder), release vN+1, its release phase, the first deploy's web=1,
 * app.json's postdeploy on the first deploy, the app's "Deploy …" and "Release v… created" log
 * lines, and slug collection. The git transports hand pushes here through the `Deployer` port.
 */
export class Deploys implements Deployer {
  private readonly live = new Map<string, RunningBuild>();
  /** Each app's collection in progress, and whether another push asked for one meanwhile. */
  private readonly tidying = new Map<string, { again: boolean; done: Promise<void> }>();

  constructor(private readonly o: DeploysOptions) {}

  /** A build still running on this node, by id. */
  running(buildId: string): RunningBuild | undefined {
    return this.live.get(buildId);
  }

  async deploy(user: UserRecord, app: AppRef, source: PushSource, write: (text: string) => void): Promise<boolean> {
    const { store, settings, apps, releases, formations, logs } = this.o;
    if (!this.o.builder) {
      write(' !     This node does not build.\n');
      return false;
    }
    const { slugs, runner } = this.o.builder;
    const buildLog = this.o.log.child({ app: app.name, commit: source.commit.slice(0, 8) });
    const now = new Date().toISOString();
    const buildId = randomUUID();
    const record: BuildRecord = {
      id: buildId,
      app: { id: app.id },
      status: 'pending',
      source_blob: { checksum: null, url: null, version: source.commit },
      slug: null,
      release: null,
      buildpacks: [],
      output: '',
      output_stream_url: `${settings.apiUrl}/apps/${app.name}/builds/${buildId}/output`,
      stack: 'heroku-22',
      user: { id: user.id, email: user.email },
      created_at: now,
      updated_at: now,
    };
    let finish!: () => void;
    // A tenant prints the output: what is kept and what the pusher is sent stay bounded however
    // much it prints (the builder stops it past its own limit).
    const o = this.o.output ?? {};
    const kept = new KeptOutput(o.headChars, o.tailChars);
    const toPusher = new StreamCap(write, o.streamBytes);
    const live: RunningBuild = { appId: app.id, output: kept, listeners: new Set(), abort: new AbortController(), finished: new Promise((r) => (finish = r)) };
    this.live.set(record.id, live);
    const out = (text: string): void => {
      kept.append(text);
      toPusher.write(text);
      for (const l of live.listeners) l(text);
    };
    try {
      await saveBuild(store, record);
      const fresh = await apps.resolve(user, app.id);
      const config = await releases.config(fresh);
      const { slug, buildpacks, postdeploy } = await slugs.build({ app, source, config, output: out, signal: live.abort.signal });
      // Asked before this release exists: no earlier release carried a slug.
      const first = firstDeploy(await releases.list(app.id));
      let release: ReleaseRecord & { superseded_by?: number } = await releases.deploy(user, fresh, { id: slug.id, process_types: slug.process_types, commit: source.commit });
      release = await releases.runPhase(fresh.app, release, out);
      if (release.status === 'failed') {
        // As on Heroku: the build stands (the push is accepted), the release does not.
        Object.assign(record, { status: 'succeeded', slug: { id: slug.id }, release: { id: release.id } });
        if (!release.superseded_by) out(` !     Release v${release.version} failed in its release phase; the previous release keeps running.\n`);
        return true;
      }
      // As on Heroku, an app's first deploy with a web process starts one web dyno.
      if (first) {
        const formation = await formations.list(await apps.resolve(user, app.id));
        if (formation.length === 0 && slug.process_types.web) {
          await formations.update(user, await apps.resolve(user, app.id), [{ type: 'web', quantity: 1 }]);
          out('-----> Scaled web to 1 (first deploy)\n');
        }
      }
      if (first && postdeploy) {
        out('-----> Running postdeploy script (app.json, first release only)...\n');
        const ok = await runner.run({ appId: app.id, slugId: slug.id, config: release.config, command: postdeploy, dyno: 'postdeploy', output: out });
        out(ok ? '       postdeploy succeeded\n' : ' !     postdeploy failed; the release stands.\n');
      }
      Object.assign(record, { status: 'succeeded', slug: { id: slug.id }, release: { id: release.id }, buildpacks: buildpacks.map((b) => ({ url: b, name: b })) });
      const types = Object.keys(slug.process_types);
      out(`-----> Discovering process types\n       Procfile declares types -> ${types.length ? types.join(', ') : '(none)'}\n`);
      out(`-----> Launching...\n       Released v${release.version}\n       http://${app.name}.${settings.domain}/ deployed to Berth\n`);
      logs.append(app.id, { source: 'app', dyno: 'api', message: `Deploy ${source.commit.slice(0, 7)} by user ${user.email}` });
      logs.append(app.id, { source: 'app', dyno: 'api', message: `Release v${release.version} created by user ${user.email}` });
      buildLog.info({ release: release.version, slug: slug.id }, 'build succeeded');
      return true;
    } catch (err) {
      record.status = 'failed';
      // A message of several lines (a title, why, the fix) keeps Heroku's ` !` margin on each.
      const lines = errorMessage(err).split('\n').map((l) => (l.trim() === '' ? ' !' : ` !     ${l}`));
      out(`\n${lines.join('\n')}\n !     Push rejected, failed to compile ${app.name}.\n`);
      buildLog.info({ err: errorMessage(err) }, 'build failed');
      return false;
    } finally {
      toPusher.end();
      // Bounded in bytes as stored: a record stays far below the store's value limit whatever was printed.
      record.output = fitJson(kept.text(), o.recordBytes ?? 256 * 1024);
      record.updated_at = new Date().toISOString();
      await saveBuild(store, record).catch((e: unknown) => buildLog.error({ err: e }, 'saving the build record failed'));
      this.live.delete(record.id);
      finish();
      this.tidy(app.id, slugs, buildLog);
    }
  }

  /** Resolves once no collection is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.tidying.size > 0) await Promise.all([...this.tidying.values()].map((t) => t.done));
  }

  /** Collection for one app, in the background: one at a time, pushes meanwhile merging into one more. */
  private tidy(appId: string, slugs: SlugBuilder, log: Logger): void {
    const running = this.tidying.get(appId);
    if (running) {
      running.again = true;
      return;
    }
    const entry = { again: true, done: Promise.resolve() };
    this.tidying.set(appId, entry);
    entry.done = (async () => {
      // Old slugs, configs and builds go once the pusher has its verdict, never while git waits.
      await new Promise((r) => setImmediate(r));
      while (entry.again) {
        entry.again = false;
        await this.collect(appId, slugs).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'collecting old slugs and builds failed'));
      }
      this.tidying.delete(appId);
    })();
  }

  /**
   * Keeps the slugs of the newest `retainSlugs` (10) releases, of the current release and of those
   * whose release phase is still to run; the app's others go, then the config copies of releases
   * past `retainReleases` whose slug went, then all but the newest `retainBuilds` builds.
   */
  private async collect(appId: string, slugs: SlugBuilder): Promise<void> {
    const app = await get(this.o.store, keys.app(appId), codecs.app);
    if (!app) return;
    const current = app.value.current_version ?? app.value.release_version;
    const list = await this.o.releases.list(appId);
    const newest = list.slice(-(this.o.retainSlugs ?? 10));
    const kept = list.filter((r) => newest.includes(r) || r.version === current || r.status === 'pending');
    const keep = new Set(kept.map((r) => r.slug_id).filter((id): id is string => id !== null));
    await slugs.collect(appId, keep);
    // Only now, with their slugs gone, may old releases lose their config copy.
    await this.o.releases.pruneConfigs(appId, keep, this.o.retainReleases ?? 100);
    await this.pruneBuilds(appId);
  }

  /**
   * Deletes all but the app's newest `retainBuilds` build records (each holds up to 256 KiB of
   * output), once there are `BUILD_PRUNE_STEP` more: only then are they all read, in pages.
   */
  private async pruneBuilds(appId: string): Promise<void> {
    const { store } = this.o;
    const retain = this.o.retainBuilds ?? 50;
    const prefix = keys.builds(appId);
    const { count } = await store.range(prefix, { prefix: true, countOnly: true });
    if (count < retain + BUILD_PRUNE_STEP) return;
    // Build ids are random: their age is the revision that created them.
    const ages: { key: string; created: number }[] = [];
    const end = `${prefix.slice(0, -1)}0`;
    for (let from = prefix; ; ) {
      const page = await store.range(from, { end, limit: 8 });
      for (const kv of page.kvs) ages.push({ key: kv.key, created: kv.createRevision });
      const last = page.kvs.at(-1);
      if (!page.more || !last) break;
      from = `${last.key}\0`;
    }
    ages.sort((a, b) => a.created - b.created);
    const doomed = ages.slice(0, Math.max(0, ages.length - retain));
    for (let i = 0; i < doomed.length; i += BATCH) {
      await store.txn({ compare: [], success: doomed.slice(i, i + BATCH).map((d) => ({ type: 'delete' as const, key: d.key })) });
    }
  }
}

/** No release so far carries a slug: this push is the app's first deploy. */
function firstDeploy(releases: Pick<ReleaseRecord, 'slug_id'>[]): boolean {
  return releases.every((r) => r.slug_id === null);
}

async function saveBuild(store: Store, build: BuildRecord): Promise<void> {
  await put(store, keys.build(build.app.id, build.id), codecs.build, build);
}
