import { decodeAll, tryDecode } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs, type AppRecord, type Formation, type MemoryLimits, type Restarts, type StatusRecord } from '../domain/records.js';
import { routersBehind } from '../domain/routers.js';
import type { Loaded } from '../loop/index.js';
import type { KeyValue, Store, WatchBatch } from '../store/index.js';
import type { AppView, Assignment, MachineView, StateView } from './types.js';
import { appView, machineView, part, releaseView, wantedVersion } from './view.js';

const PER_APP = ['formation', 'tags', 'limits', 'restarts'] as const;
/**
 * Apps read at once in a full read. Thousands of reads in flight together queue every other
 * call of this process behind them: on a three-member etcd an API request waited 0.7 s while a
 * new leader read 1,000 apps. A few dozen in flight keep the store busy without a queue.
 */
const READ_CONCURRENCY = 8;

/** `fn` over `items`, at most `limit` at a time. */
async function pooled<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
type PerApp = (typeof PER_APP)[number];

/**
 * The leader's picture of the cluster, fed by its watch (Nomad's state store, in memory): read in
 * full on election, after a watch gap and on the slow repair timer; otherwise each event updates
 * one entry, and a pass plans from memory. The only reads a pass makes are for the current
 * release of an app whose `current_version` just changed.
 */
export class ClusterState {
  readonly apps = new Map<string, AppRecord>();
  private readonly parts: { [K in PerApp]: Map<string, unknown> } = { formation: new Map(), tags: new Map(), limits: new Map(), restarts: new Map() };
  /** The current release of each app, as far as it has been read. */
  private readonly releases = new Map<string, { version: number; view: AppView['release'] }>();
  readonly machines = new Map<string, MachineView>();
  /** By store key (`/berth/units/<machine>/<unit>`). */
  readonly units = new Map<string, Assignment>();
  /** By unit key (`shop.web.1@v3`). */
  readonly statuses = new Map<string, StatusRecord>();
  /** Published endpoints: store key → the revision they were published at. */
  readonly services = new Map<string, number>();
  /** Router reports: store key → the revision that router has applied. */
  readonly routers = new Map<string, number>();
  /**
   * Apps with a record that exists but cannot be read (a hand edit, hostile data). Their units are
   * frozen as they are: planning from "absent" would remove every dyno of the app.
   */
  private readonly unreadable = new Map<string, Set<string>>();
  /** Set by a pass that left superseded units waiting on the handshake: then endpoints and router reports matter. */
  awaitingHandshake = false;

  /**
   * Reads everything at one revision into a state of its own; `commit` swaps it in at once, so
   * a pass never plans from a state half read (it would remove the units of every app not read yet).
   */
  async load(store: Store): Promise<Loaded> {
    const next = new ClusterState();
    const revision = await next.read(store);
    return { revision, commit: () => this.adopt(next) };
  }

  private adopt(next: ClusterState): void {
    const pairs: [Map<string, unknown>, Map<string, unknown>][] = [
      [this.apps, next.apps],
      [this.releases, next.releases],
      [this.machines, next.machines],
      [this.units, next.units],
      [this.statuses, next.statuses],
      [this.services, next.services],
      [this.routers, next.routers],
      [this.unreadable, next.unreadable],
      ...PER_APP.map((k): [Map<string, unknown>, Map<string, unknown>] => [this.parts[k], next.parts[k]]),
    ];
    for (const [mine, theirs] of pairs) {
      mine.clear();
      for (const [k, v] of theirs) mine.set(k, v);
    }
  }

  private async read(store: Store): Promise<number> {
    const names = await store.range(keys.appNames(), { prefix: true });
    const revision = names.revision;
    const at = { prefix: true, revision };
    const [machines, units, statuses, services, routers] = await Promise.all([
      store.range(keys.machines(), at),
      store.range(keys.allUnits(), at),
      store.range(keys.statuses(), at),
      store.range(keys.allServices(), at),
      store.range(keys.routers(), at),
    ]);
    for (const kv of machines.kvs) this.onMachine(kv);
    for (const kv of units.kvs) this.onUnit(kv);
    for (const kv of statuses.kvs) this.onStatus(kv);
    for (const kv of services.kvs) this.services.set(kv.key, kv.modRevision);
    for (const kv of routers.kvs) this.onRouter(kv);
    // A value that is not a key segment would make the key builders throw; no app lives there anyway.
    // Apps come from the name index, and from the units: an app whose index entry cannot be read
    // still has its record read (and frozen if that cannot be read either), never dropped.
    const ids = [...new Set([...decodeAll(codecs.appId, names.kvs).map((e) => e.value), ...[...this.units.values()].map((a) => a.unit.appId)])].filter((id) => id.length > 0 && !id.includes('/'));
    await pooled(ids, READ_CONCURRENCY, async (id) => {
      const [app, formation, tags, limits, restarts] = await Promise.all([
        store.get(keys.app(id), { revision }),
        store.get(keys.formation(id), { revision }),
        store.get(keys.appTags(id), { revision }),
        store.get(keys.appLimits(id), { revision }),
        store.get(keys.restarts(id), { revision }),
      ]);
      if (!app) return;
      this.onApp(id, '', '', app.key, app);
      const kvs = { formation, tags, limits, restarts };
      for (const k of PER_APP) if (kvs[k]) this.onApp(id, k, '', `${keys.app(id)}/${k}`, kvs[k]);
    });
    await this.fillReleases(store, revision);
    return revision;
  }

  /** Reads the current release of every app whose current version is not in memory yet. */
  async fillReleases(store: Store, revision?: number): Promise<void> {
    const missing = [...this.apps].filter(([id, app]) => wantedVersion(app) > 0 && this.releases.get(id)?.version !== wantedVersion(app));
    // Many only at a full read; a pass finds one or two (apps whose release just moved).
    await pooled(missing, READ_CONCURRENCY * 5, async ([id, app]) => {
      const version = wantedVersion(app);
      // Null when missing or unreadable: the app is then frozen (see `frozen`), not emptied.
      const view = releaseView(tryDecode(codecs.release, await store.get(keys.release(id, version), revision ? { revision } : undefined)));
      // An event may have moved the app on while this read was in flight.
      if (this.apps.get(id) && wantedVersion(this.apps.get(id) as AppRecord) === version) this.releases.set(id, { version, view });
    });
  }

  /** Folds a watch batch in; true when the plan may change. */
  apply(batch: WatchBatch): boolean {
    let relevant = false;
    for (const e of batch.events) {
      const kv = e.type === 'put' ? e.kv : undefined;
      const [kind, a = '', b = '', c = ''] = e.kv.key.slice(keys.all().length).split('/');
      if (kind === 'apps') relevant = this.onApp(a, b, c, e.kv.key, kv) || relevant;
      else if (kind === 'machines') relevant = this.onMachine(kv, e.kv.key) || true;
      else if (kind === 'units') relevant = this.onUnit(kv, e.kv.key) || true;
      else if (kind === 'status') relevant = this.onStatus(kv, e.kv.key) || true;
      else if (kind === 'services') {
        if (kv) this.services.set(kv.key, kv.modRevision);
        else this.services.delete(e.kv.key);
        relevant ||= this.awaitingHandshake;
      } else if (kind === 'routers') {
        this.onRouter(kv, e.kv.key);
        relevant ||= this.awaitingHandshake;
      }
    }
    return relevant;
  }

  private onApp(id: string, sub: string, version: string, key: string, kv: KeyValue | undefined): boolean {
    if (!id) return false;
    if (sub === '') {
      const rec = tryDecode(codecs.app, kv);
      this.mark(id, 'record', kv !== undefined && !rec);
      if (rec) this.apps.set(id, rec);
      else if (!kv) {
        this.apps.delete(id);
        this.releases.delete(id);
        this.unreadable.delete(id);
        for (const m of Object.values(this.parts)) m.delete(id);
      }
      return true;
    }
    if ((PER_APP as readonly string[]).includes(sub) && key === `${keys.app(id)}/${sub}`) {
      const value = part[sub as PerApp](kv);
      this.mark(id, sub, kv !== undefined && value === undefined);
      // An unreadable part keeps the last one that could be read.
      if (value !== undefined || kv === undefined) this.parts[sub as PerApp].set(id, value);
      return true;
    }
    if (sub === 'releases' && version) {
      const app = this.apps.get(id);
      if (!app || Number(version) !== wantedVersion(app)) return false;
      this.releases.set(id, { version: wantedVersion(app), view: releaseView(tryDecode(codecs.release, kv)) });
      return true;
    }
    return false;
  }

  private mark(appId: string, what: string, bad: boolean): void {
    const set = this.unreadable.get(appId) ?? new Set<string>();
    if (bad) set.add(what);
    else set.delete(what);
    if (set.size > 0) this.unreadable.set(appId, set);
    else this.unreadable.delete(appId);
  }

  /** Apps whose units stay exactly as they are: a record of theirs cannot be read, or their current release. */
  frozen(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [id, what] of this.unreadable) out.set(id, [...what]);
    for (const [id, app] of this.apps) {
      const wanted = wantedVersion(app);
      // Not read yet (it moved on during the read) or unreadable: nothing is planned for it this time.
      const entry = this.releases.get(id);
      if (wanted > 0 && (entry?.version !== wanted || entry.view === null)) out.set(id, [...(out.get(id) ?? []), `release v${wanted}`]);
    }
    return out;
  }

  private onMachine(kv: KeyValue | undefined, key = kv?.key ?? ''): boolean {
    const id = key.slice(keys.machines().length);
    const rec = tryDecode(codecs.machine, kv);
    if (rec) this.machines.set(id, machineView(id, rec));
    else this.machines.delete(id);
    return true;
  }

  private onUnit(kv: KeyValue | undefined, key = kv?.key ?? ''): boolean {
    const machine = key.slice(keys.allUnits().length).split('/')[0];
    const unit = tryDecode(codecs.unit, kv);
    if (unit && machine) this.units.set(key, { machine, unit });
    else this.units.delete(key);
    return true;
  }

  private onStatus(kv: KeyValue | undefined, key = kv?.key ?? ''): boolean {
    const unit = key.slice(keys.statuses().length);
    const st = tryDecode(codecs.status, kv);
    if (st) this.statuses.set(unit, st);
    else this.statuses.delete(unit);
    return true;
  }

  private onRouter(kv: KeyValue | undefined, key = kv?.key ?? ''): void {
    if (!kv) return void this.routers.delete(key);
    // A report that cannot be read counts as lagging: it must not let a rollout stop a dyno.
    this.routers.set(key, decodeAll(codecs.router, [kv])[0]?.value.revision ?? 0);
  }

  /** Whether every live router has applied the publication at this key (and it is published). */
  publishedAndRouted(serviceKey: string): boolean {
    const at = this.services.get(serviceKey);
    return at !== undefined && routersBehind(this.routers, at).length === 0;
  }

  /** A consistent snapshot for `plan` (taken synchronously, so no event lands halfway). */
  view(revision?: number, frozen = this.frozen()): StateView {
    const apps: AppView[] = [];
    for (const id of [...frozen.keys()].sort()) {
      apps.push({ id, name: this.apps.get(id)?.name ?? '', release: null, formation: {}, placementTags: {}, memoryLimits: {}, frozen: true });
    }
    for (const id of [...this.apps.keys()].sort()) {
      if (frozen.has(id)) continue;
      const app = this.apps.get(id) as AppRecord;
      const release = wantedVersion(app) > 0 ? (this.releases.get(id)?.view ?? null) : null;
      apps.push(
        appView(id, {
          app,
          release,
          formation: this.parts.formation.get(id) as Formation | undefined,
          tags: this.parts.tags.get(id) as Record<string, string> | undefined,
          limits: this.parts.limits.get(id) as MemoryLimits | undefined,
          restarts: this.parts.restarts.get(id) as Restarts | undefined,
        }),
      );
    }
    return { machines: [...this.machines.values()], apps, assignments: [...this.units.values()], ...(revision !== undefined ? { revision } : {}) };
  }
}

/** The state at one revision, read in full: what a new leader starts from (and what tests read). */
export async function readState(store: Store): Promise<StateView> {
  const state = new ClusterState();
  const loaded = await state.load(store);
  loaded.commit();
  return state.view(loaded.revision);
}
