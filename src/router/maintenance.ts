import { keys } from '../domain/keys.js';
import type { KeyValue, WatchEvent } from '../store/index.js';
import { isSafeId } from './conf-values.js';

/**
 * Which apps are in maintenance mode, kept from the router's watch of /berth/maintenance/ (one
 * small key per app in maintenance, written with the app record's flag): a toggle is one event
 * here and one line-set pushed to nginx's `berth_maintenance` shared dict, never a reload or a
 * read of app records. The ids go into the control server's line protocol, so only plain ids count.
 */
export class MaintenanceSet {
  private ids = new Set<string>();

  /** Replaces what it knows with a full read of the prefix. */
  load(kvs: KeyValue[]): void {
    this.ids = new Set(kvs.map((kv) => this.idOf(kv.key)).filter((id): id is string => id !== undefined));
  }

  /** Folds one watch event in; true when it changed which apps are in maintenance. */
  apply(e: WatchEvent): boolean {
    const id = this.idOf(e.kv.key);
    if (id === undefined) return false;
    // The key's presence is the flag: its value (when it started) is for people, not for routing.
    if (e.type === 'put') {
      if (this.ids.has(id)) return false;
      this.ids.add(id);
    } else if (!this.ids.delete(id)) return false;
    return true;
  }

  /** The control server's body: one app id per line, sorted; a full snapshot. */
  body(): string {
    return [...this.ids].sort().map((id) => `${id}\n`).join('');
  }

  private idOf(key: string): string | undefined {
    if (!key.startsWith(keys.allMaintenance())) return undefined;
    const id = key.slice(keys.allMaintenance().length);
    return isSafeId(id) ? id : undefined;
  }
}
