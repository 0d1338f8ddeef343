import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tryDecode } from '../domain/codec.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs } from '../domain/records.js';
import { ControlLoop } from '../loop/index.js';
import type { Store, WatchBatch } from '../store/index.js';

export interface BuildCachesOptions {
  store: Store;
  log: Logger;
  /** Where this server keeps each app's build cache (`<work>/cache/<app id>`). */
  dir: string;
  /** A full re-read this often (default 1 h): catches a cache saved by a build that outlived its app. */
  repairMs?: number;
}

/** The names `saveCache` gives app caches; anything else in the directory is not an app's. */
const APP_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/**
 * Removes an app's build cache from this server once the app is destroyed. A cache can be as big
 * as the build disk (2 GiB) and lives outside any volume, so create, build, destroy, repeated,
 * would otherwise fill the disk. Follows the app-name index (small: a name and an id per app, and
 * deleted by `apps:destroy`): a name that goes is checked against its app record, since a rename
 * also drops a name. At start and on the repair timer, caches of apps that no longer exist go.
 */
export class BuildCaches {
  private loop: ControlLoop | undefined;
  /** Each app name's id, to know whose app a deleted name was. */
  private names = new Map<string, string>();
  /** Apps whose name went: their cache goes if their record has gone too. */
  private readonly candidates = new Set<string>();
  /** Apps a full read found gone. */
  private gone = new Set<string>();

  constructor(private readonly o: BuildCachesOptions) {}

  async start(): Promise<void> {
    const prefix = keys.appNames();
    this.loop = new ControlLoop({
      store: this.o.store,
      log: this.o.log,
      prefix,
      load: async () => {
        const r = await this.o.store.range(prefix, { prefix: true });
        const names = new Map<string, string>();
        for (const kv of r.kvs) {
          const id = tryDecode(codecs.appId, kv);
          if (id !== undefined) names.set(kv.key.slice(prefix.length), id);
        }
        const live = new Set(names.values());
        // A store with no app at all while caches are here looks like the wrong store, not like
        // every app destroyed: nothing is removed on its word.
        const gone = names.size === 0 ? [] : this.cached().filter((id) => !live.has(id));
        return {
          revision: r.revision,
          commit: () => {
            this.names = names;
            this.gone = new Set(gone);
          },
        };
      },
      apply: (batch) => this.apply(prefix, batch),
      pass: () => this.pass(),
      debounceMs: 100,
      repairMs: this.o.repairMs ?? 3_600_000,
    });
    await this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** A pass now (tests). */
  async settle(): Promise<void> {
    await this.loop?.kick();
  }

  private apply(prefix: string, batch: WatchBatch): boolean {
    let changed = false;
    for (const e of batch.events) {
      const name = e.kv.key.slice(prefix.length);
      if (e.type === 'put') {
        const id = tryDecode(codecs.appId, e.kv);
        if (id !== undefined) this.names.set(name, id);
        continue;
      }
      const id = this.names.get(name);
      this.names.delete(name);
      if (id !== undefined) {
        this.candidates.add(id);
        changed = true;
      }
    }
    return changed;
  }

  private async pass(): Promise<void> {
    const doomed = [...this.gone];
    this.gone.clear();
    for (const id of this.candidates) {
      this.candidates.delete(id);
      if (!APP_ID.test(id) || !existsSync(join(this.o.dir, id))) continue;
      // Renamed, not destroyed: the record is still there.
      if (!(await this.o.store.get(keys.app(id)))) doomed.push(id);
    }
    for (const id of doomed) {
      if (!APP_ID.test(id)) continue;
      await rm(join(this.o.dir, id), { recursive: true, force: true }).then(
        () => this.o.log.info({ app: id }, 'removed the build cache of a destroyed app'),
        (err: unknown) => this.o.log.warn({ app: id, err: errorMessage(err) }, 'could not remove the build cache of a destroyed app'),
      );
    }
  }

  /** App ids with a cache on this server. */
  private cached(): string[] {
    if (!existsSync(this.o.dir)) return [];
    return readdirSync(this.o.dir).filter((f) => APP_ID.test(f));
  }
}
