import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { type BerthError, conflict, errorMessage, invalid, notFound } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import type { KeyValue, Store, TxnResult } from '../../store/index.js';
import { type AppAccess, type Apps, releaseKey } from './apps.js';
import type { SlugRunner } from '../../builder/ports.js';
import { decode, get, list, putOp } from '../../domain/codec.js';
import { codecs } from '../../domain/records.js';
import { PhaseSlots, type PhaseWait } from './phase-slots.js';
import type { AppRecord, ReleaseRecord, UserRecord } from './types.js';

const CONFIG_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MAX_CONFIG_BYTES = 64 * 1024;

export type ConfigChanges = Record<string, string | null>;

/** Heroku's release descriptions: "Set FOO, BAR config vars", "Remove FOO config var". */
function describeConfig(changes: ConfigChanges): string {
  const set = Object.keys(changes).filter((k) => changes[k] !== null);
  const removed = Object.keys(changes).filter((k) => changes[k] === null);
  const part = (verb: string, names: string[]): string => `${verb} ${names.join(', ')} config var${names.length === 1 ? '' : 's'}`;
  return [set.length ? part('Set', set) : '', removed.length ? part('Remove', removed) : ''].filter(Boolean).join(' and ');
}

export function validateConfig(changes: ConfigChanges, current: Record<string, string>): Record<string, string> {
  const next = { ...current };
  for (const [k, v] of Object.entries(changes)) {
    if (k === '__proto__') throw invalid('Invalid config var name "__proto__".');
    if (!CONFIG_KEY.test(k)) throw invalid(`Invalid config var name "${k}": use letters, digits and underscores, not starting with a digit.`);
    if (v === null) delete next[k];
    else if (typeof v !== 'string') throw invalid(`Config var ${k} must be a string or null.`);
    else next[k] = v;
  }
  const size = Buffer.byteLength(JSON.stringify(next), 'utf8');
  if (size > MAX_CONFIG_BYTES) throw invalid(`Config vars would total ${size} bytes; the limit is ${MAX_CONFIG_BYTES} bytes (64 KiB).`);
  return next;
}

/** A compare-and-swap that lost to another server's write tries again, up to this many times... */
const MAX_ATTEMPTS = 20;
/** ...after a random pause of up to 5 ms, doubling per attempt up to this (full jitter). */
const MAX_BACKOFF_MS = 100;

/** Releases rewritten per transaction when pruning (two operations each: well within etcd's 128). */
const PRUNE_BATCH = 64;

/** What a push (or the app's log) is told while its release phase waits, by why it waits. */
function waitLine(why: PhaseWait, appName: string, perOwner: number): string {
  if (why === 'app') return `-----> Waiting for an earlier release phase of ${appName} to finish...\n`;
  if (why === 'owner') return `-----> Waiting for a release phase of another app with the same owner to finish (${perOwner} at a time per owner on this server)...\n`;
  return '-----> Waiting for a free release phase slot on this server (other apps are running theirs)...\n';
}

const backoff = (attempt: number): Promise<void> => new Promise((r) => setTimeout(r, Math.random() * Math.min(MAX_BACKOFF_MS, 5 * 2 ** attempt)));

/** The key of each range in a read-only txn, in order. */
function rangesOf(r: TxnResult): (KeyValue | undefined)[] {
  return r.results.map((res) => (res.type === 'range' ? res.kvs[0] : undefined));
}

/** What the next release is built from: the app as it is now, its latest release and its config. */
interface Snapshot {
  access: AppAccess;
  latest: ReleaseRecord;
  config: Record<string, string>;
}

interface NewRelease {
  slug_id: string | null;
  process_types: Record<string, string>;
  config: Record<string, string>;
  description: string;
}

/**
 * Releases are immutable and numbered: every config change, build and rollback appends vN+1 with a
 * full copy of the config, in the same transaction that bumps the app record and rewrites the
 * current config. Concurrent changes to one app are serialised by the compare on the app record.
 */
export class Releases {
  private readonly runner: SlugRunner | undefined;
  private readonly onPhaseOutput: (app: AppRecord, text: string) => void;
  /** The tail of each app's queue of release writes on this server (see `serial`). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** One release phase per app at a time, a few per node (`PhaseSlots`). */
  private readonly phases: PhaseSlots;
  private readonly log: Logger | undefined;

  /**
   * `runner` runs a release's `release:` process (migrations and the like) in its slug, sandboxed;
   * without one (no builder on this node) releases succeed at once. `onPhaseOutput` hears the
   * release phase of config changes and rollbacks, which nobody waits for. `maxPhases` release
   * phases run on this node at once (default: one per core), at most `maxPhasesPerOwner` of them
   * for one owner's apps (default: half, at least one). `log` hears background phases that could
   * not be recorded (the app was destroyed meanwhile).
   */
  constructor(
    private readonly store: Store,
    private readonly apps: Apps,
    options: { runner?: SlugRunner; onPhaseOutput?: (app: AppRecord, text: string) => void; maxPhases?: number; maxPhasesPerOwner?: number; log?: Logger } = {},
  ) {
    this.runner = options.runner;
    this.onPhaseOutput = options.onPhaseOutput ?? (() => undefined);
    this.phases = new PhaseSlots(Math.max(1, options.maxPhases ?? availableParallelism()), options.maxPhasesPerOwner);
    this.log = options.log;
  }

  /** Release phases running on this node now. */
  get phasesRunning(): number {
    return this.phases.active;
  }

  /**
   * Runs a pending release's release phase and records the outcome: succeeded releases become
   * current, failed ones leave the previous release running. A phase waits for the app's running
   * one and for a node slot (shared fairly between owners, pushes first: `PhaseSlots`); a newer
   * release asking meanwhile replaces it (`superseded_by`), and it is recorded failed without
   * running. `background`: nobody waits on it (config changes, rollbacks).
   */
  async runPhase(app: AppRecord, release: ReleaseRecord, output: (text: string) => void, background = false): Promise<ReleaseRecord & { superseded_by?: number }> {
    if (release.status !== 'pending' || !this.runner) return release;
    const turn = await this.phases.turn(app.id, release.version, { owner: app.owner_id, background }, (why) => output(waitLine(why, app.name, this.phases.perOwner)));
    if (!turn.run) {
      output(` !     v${release.version} was superseded by v${turn.by} before its release phase ran; v${turn.by} runs instead.\n`);
      return { ...(await this.complete(app.id, release.version, false)), superseded_by: turn.by };
    }
    let ok = false;
    try {
      ok = await this.phase(this.runner, app, release, output);
    } catch (err) {
      output(` !     Release phase could not run: ${(err as Error).message}\n`);
    } finally {
      turn.done();
    }
    return this.complete(app.id, release.version, ok);
  }

  /** The release's `release:` command in its slug with its config; true when it exited 0. */
  private async phase(runner: SlugRunner, app: AppRecord, release: ReleaseRecord, output: (text: string) => void): Promise<boolean> {
    const command = release.process_types.release;
    if (!command || !release.slug_id) return true;
    output(`-----> Running release command...\n`);
    const ok = await runner.run({ appId: app.id, slugId: release.slug_id, config: release.config, command, dyno: 'release.1', output });
    output(ok ? '       Release command succeeded\n' : ` !     Release command failed: v${release.version} is marked failed; the previous release keeps running.\n`);
    return ok;
  }

  private async complete(appId: string, version: number, ok: boolean): Promise<ReleaseRecord> {
    return this.serial(appId, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const [appKv, relKv] = rangesOf(await this.store.txn({ compare: [], success: [{ type: 'range', key: keys.app(appId) }, { type: 'range', key: releaseKey(appId, version) }] }));
        if (!appKv || !relKv) throw notFound('release');
        const app = decode(codecs.app, appKv);
        const release: ReleaseRecord = { ...decode(codecs.release, relKv), status: ok ? 'succeeded' : 'failed', updated_at: new Date().toISOString() };
        const current = ok && version > (app.current_version ?? 0) ? version : (app.current_version ?? app.release_version);
        const r = await this.store.txn({
          compare: [
            { key: keys.app(appId), target: 'mod', op: '=', value: appKv.modRevision },
            { key: releaseKey(appId, version), target: 'mod', op: '=', value: relKv.modRevision },
          ],
          success: [putOp(keys.app(appId), codecs.app, { ...app, current_version: current }), putOp(releaseKey(appId, version), codecs.release, release)],
        });
        if (r.succeeded) return release;
        await backoff(attempt);
      }
      throw conflict('Too many concurrent changes while recording the release phase; try again.');
    });
  }

  /**
   * Runs `fn` after every release write to the same app that this server started before it.
   * Requests on one server then never race each other's compare-and-swap on the app record (ten
   * PATCHes to one app would otherwise retry each other into 409s); only another server's write
   * can still make one retry, after a random pause.
   */
  private serial<T>(appId: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(appId) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.queues.set(appId, tail);
    void tail.then(() => {
      if (this.queues.get(appId) === tail) this.queues.delete(appId);
    });
    return run;
  }

  /**
   * Drops the config copy of old releases: those older than the newest `retain` whose slug is not
   * among `liveSlugs` (collected, so they can never run again), and never the current release or
   * a newer one. The store then holds one config per kept release instead of one per release ever
   * made, and compaction frees the rest. Written in batches, each write conditional on the release
   * being as read. Returns how many were pruned.
   */
  async pruneConfigs(appId: string, liveSlugs: Set<string>, retain: number): Promise<number> {
    return this.serial(appId, async () => {
      const [appKv] = rangesOf(await this.store.txn({ compare: [], success: [{ type: 'range', key: keys.app(appId) }] }));
      if (!appKv) return 0;
      const app = decode(codecs.app, appKv);
      const current = app.current_version ?? app.release_version;
      const r = await this.store.range(keys.releases(appId), { prefix: true });
      const kvs = [...r.kvs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const writes: { kv: KeyValue; next: ReleaseRecord }[] = [];
      for (const kv of kvs.slice(0, Math.max(0, kvs.length - Math.max(1, retain)))) {
        const release = decode(codecs.release, kv);
        if (release.version >= current || release.config_pruned || (release.slug_id !== null && liveSlugs.has(release.slug_id))) continue;
        writes.push({ kv, next: { ...release, config: {}, config_pruned: true } });
      }
      let pruned = 0;
      for (let i = 0; i < writes.length; i += PRUNE_BATCH) {
        const batch = writes.slice(i, i + PRUNE_BATCH);
        const put = (w: (typeof batch)[number]) => ({
          compare: [{ key: w.kv.key, target: 'mod' as const, op: '=' as const, value: w.kv.modRevision }],
          success: [putOp(w.kv.key, codecs.release, w.next)],
        });
        const t = await this.store.txn({ compare: batch.flatMap((w) => put(w).compare), success: batch.flatMap((w) => put(w).success) });
        if (t.succeeded) {
          pruned += batch.length;
          continue;
        }
        // One of them changed since it was read: the others, one by one.
        for (const w of batch) if ((await this.store.txn(put(w))).succeeded) pruned++;
      }
      return pruned;
    });
  }

  async list(appId: string): Promise<ReleaseRecord[]> {
    return (await list(this.store, keys.releases(appId), codecs.release)).map((e) => e.value);
  }

  async current(access: AppAccess): Promise<ReleaseRecord> {
    const r = await get(this.store, releaseKey(access.app.id, access.app.release_version), codecs.release);
    if (!r) throw notFound('release');
    return r.value;
  }

  /** By version number or release id. */
  async get(access: AppAccess, versionOrId: string | number): Promise<ReleaseRecord> {
    const v = typeof versionOrId === 'number' ? versionOrId : /^v?\d+$/.test(versionOrId) ? Number(versionOrId.replace(/^v/, '')) : NaN;
    if (Number.isSafeInteger(v) && v > 0) {
      const r = await get(this.store, releaseKey(access.app.id, v), codecs.release);
      if (!r) throw notFound('release');
      return r.value;
    }
    const found = (await this.list(access.app.id)).find((r) => r.id === versionOrId);
    if (!found) throw notFound('release');
    return found;
  }

  async config(access: AppAccess): Promise<Record<string, string>> {
    return (await get(this.store, keys.config(access.app.id), codecs.config))?.value ?? {};
  }

  async setConfig(user: UserRecord, access: AppAccess, changes: ConfigChanges): Promise<{ config: Record<string, string>; release: ReleaseRecord }> {
    if (Object.keys(changes).length === 0) throw invalid('No config vars given.');
    return this.append(user, access, (snap) => ({
      slug_id: snap.latest.slug_id,
      process_types: snap.latest.process_types,
      config: validateConfig(changes, snap.config),
      description: describeConfig(changes),
    })).then((release) => {
      this.phaseInBackground(access.app, release);
      return { config: release.config, release };
    });
  }

  /** Config changes and rollbacks answer at once; their release phase runs on, into the app's logs. */
  private phaseInBackground(app: AppRecord, release: ReleaseRecord): void {
    if (release.status !== 'pending') return;
    // Nobody awaits it: recording its outcome fails when the app was destroyed while it waited.
    this.runPhase(app, release, (t) => this.onPhaseOutput(app, t), true).catch((err: unknown) =>
      this.log?.warn({ app: app.name, release: release.version, err: errorMessage(err) }, 'could not record a release phase'),
    );
  }

  async rollback(user: UserRecord, access: AppAccess, target: string | number): Promise<ReleaseRecord> {
    const to = await this.get(access, target);
    if (to.config_pruned) throw invalid(`Release v${to.version} is too old to roll back to: its build and config have been pruned.`);
    // A release from before the first build has no code: rolling back to it would stop the app.
    if (!to.slug_id && (await this.current(access)).slug_id) throw invalid(`Release v${to.version} has no build to run; roll back to a release made after a deploy.`);
    // Slugs are kept for the newest releases only (collection): a rollback to one whose slug went
    // would make a release no dyno can start. Checked again in the write (collection may be running).
    const slugGone = (): BerthError => invalid(`Release v${to.version}'s build is no longer kept; roll back to one of the newest 10 releases or push again.`);
    if (to.slug_id && !(await this.store.get(keys.slug(to.slug_id)))) throw slugGone();
    const release = await this.append(
      user,
      access,
      () => ({ slug_id: to.slug_id, process_types: to.process_types, config: to.config, description: `Rollback to v${to.version}` }),
      to.slug_id ? { key: keys.slug(to.slug_id), gone: slugGone } : undefined,
    );
    this.phaseInBackground(access.app, release);
    return release;
  }

  /** For deploys: a new release of a slug with the app's current config. */
  async deploy(user: UserRecord, access: AppAccess, slug: { id: string; process_types: Record<string, string>; commit: string | null }): Promise<ReleaseRecord> {
    return this.append(user, access, (snap) => ({
      slug_id: slug.id,
      process_types: slug.process_types,
      config: snap.config,
      description: `Deploy ${slug.commit ? slug.commit.slice(0, 8) : slug.id.slice(0, 8)}`,
    }));
  }

  /**
   * Appends the next release: reads the app, its latest release and its config in one round
   * trip, writes vN+1 if the app is still as read, and otherwise reads again and retries.
   * `needs`: a key that must still exist for the write (else `gone()` is thrown).
   */
  private async append(user: UserRecord, access: AppAccess, build: (snap: Snapshot) => NewRelease, needs?: { key: string; gone: () => Error }): Promise<ReleaseRecord> {
    return this.serial(access.app.id, async () => {
      let version = access.app.release_version;
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const snap = await this.snapshot(access, version);
        if ('movedTo' in snap) {
          // A release was appended since `access` was read: read again at the number it has now.
          version = snap.movedTo;
          continue;
        }
        const next = build(snap);
        const fresh = snap.access;
        const now = new Date().toISOString();
        const number = version + 1;
        // A slug with a release process runs it before the release may become current.
        const pending = Boolean(this.runner && next.slug_id && next.process_types.release);
        const release: ReleaseRecord = { id: randomUUID(), version: number, ...next, user_id: user.id, user_email: user.email, status: pending ? 'pending' : 'succeeded', created_at: now, updated_at: now };
        const app = { ...fresh.app, release_version: number, current_version: pending ? (fresh.app.current_version ?? fresh.app.release_version) : number, released_at: now, updated_at: now };
        const r = await this.store.txn({
          compare: [
            { key: keys.app(app.id), target: 'mod', op: '=', value: fresh.mod },
            { key: releaseKey(app.id, number), target: 'create', op: '=', value: 0 },
            ...(needs ? [{ key: needs.key, target: 'create' as const, op: '>' as const, value: 0 }] : []),
          ],
          success: [putOp(keys.app(app.id), codecs.app, app), putOp(releaseKey(app.id, number), codecs.release, release), putOp(keys.config(app.id), codecs.config, next.config)],
        });
        if (r.succeeded) {
          // An older release's phase still waiting would only run for nothing now.
          this.phases.supersede(app.id, number);
          return release;
        }
        if (needs && !(await this.store.get(needs.key))) throw needs.gone();
        await backoff(attempt);
      }
      throw conflict(`Too many concurrent changes to ${access.app.name}; try again.`);
    });
  }

  /**
   * The app, its release `version` and its config, read at one revision; or, when the app's
   * latest release is no longer `version`, the number it is now.
   */
  private async snapshot(access: AppAccess, version: number): Promise<Snapshot | { movedTo: number }> {
    const id = access.app.id;
    const [appKv, relKv, configKv] = rangesOf(
      await this.store.txn({ compare: [], success: [{ type: 'range', key: keys.app(id) }, { type: 'range', key: releaseKey(id, version) }, { type: 'range', key: keys.config(id) }] }),
    );
    if (!appKv) throw notFound('app');
    const app = decode(codecs.app, appKv);
    if (app.release_version !== version) return { movedTo: app.release_version };
    if (!relKv) throw notFound('release');
    return { access: { app, mod: appKv.modRevision, role: access.role }, latest: decode(codecs.release, relKv), config: configKv ? decode(codecs.config, configKv) : {} };
  }
}
