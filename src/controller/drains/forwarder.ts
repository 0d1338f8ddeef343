import { LOGPLEX_DYNO } from '../../agent/log-limiter.js';
import { decodeAll, list, tryDecode } from '../../domain/codec.js';
import { errorMessage } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import { codecs } from '../../domain/records.js';
import { follow, type Following } from '../../store/follow.js';
import type { Store, TxnOp, WatchBatch } from '../../store/index.js';
import { parseDrainUrl, type DrainRecord } from '../services/drains.js';
import type { LogHub, LogLine } from '../services/logs.js';
import { SyslogSender, syslogFrame, type SyslogSenderOptions } from './syslog.js';

export interface DrainForwarderOptions {
  store: Store;
  hub: LogHub;
  log: Logger;
  sender?: Pick<SyslogSenderOptions, 'queueMax' | 'queueBytes' | 'minBackoffMs' | 'maxBackoffMs'>;
  /** What tenants' drains may connect to (the cluster's own addresses refused too). */
  guard?: SyslogSenderOptions['guard'];
}

interface Active {
  record: DrainRecord;
  sender: SyslogSender;
}

const APPS = keys.allAppKeys();
const DRAIN_KEY = new RegExp(`^${APPS}([^/]+)/drains/([^/]+)$`);
const APP_KEY = new RegExp(`^${APPS}([^/]+)$`);

/**
 * Sends every line this node's LogHub receives to the app's drains. The drain set comes from the
 * store and is followed by a watch on `/berth/apps/` (not a timer): a drain added through any
 * controller starts forwarding here within one watch round trip, and a removed drain or app closes
 * its connection at once. The API also applies its own changes directly (`changed`), so the
 * controller that took the request forwards from the next line on, without waiting for the watch.
 */
export class DrainForwarder {
  private readonly drains = new Map<string, Map<string, Active>>();
  private following: Following | undefined;
  private untap: (() => void) | undefined;
  private closed = false;

  constructor(private readonly o: DrainForwarderOptions) {}

  async start(): Promise<void> {
    if (this.untap || this.closed) return;
    this.untap = this.o.hub.tap((appId, line) => this.forward(appId, line));
    const revision = await this.reload();
    if (this.closed) return;
    this.following = follow(this.o.store, APPS, revision + 1, {
      onBatch: (batch) => this.apply(batch),
      onGap: () => this.reload(),
    });
  }

  /** The drains of an app changed through this controller's API: apply it without waiting for the watch. */
  async changed(appId: string): Promise<void> {
    if (!this.untap || this.closed) return;
    const seen = new Set<string>();
    for (const { value: d } of await list(this.o.store, keys.drains(appId), codecs.drain, { onMalformed: this.malformed })) {
      seen.add(d.id);
      this.upsert(appId, d);
    }
    for (const id of this.drains.get(appId)?.keys() ?? []) if (!seen.has(id)) this.remove(appId, id);
  }

  /** Connection state per drain id, for tests and operators. */
  stats(): Record<string, ReturnType<SyslogSender['stats']> & { app_id: string; url: string }> {
    const out: Record<string, ReturnType<SyslogSender['stats']> & { app_id: string; url: string }> = {};
    for (const [appId, byId] of this.drains) for (const [id, a] of byId) out[id] = { app_id: appId, url: a.record.url, ...a.sender.stats() };
    return out;
  }

  close(): void {
    this.closed = true;
    this.untap?.();
    this.following?.close();
    for (const appId of [...this.drains.keys()]) this.removeApp(appId);
  }

  private forward(appId: string, line: LogLine): void {
    const byId = this.drains.get(appId);
    if (!byId) return;
    for (const a of byId.values()) a.sender.send(syslogFrame(a.record.token, line));
  }

  /**
   * Every drain of every app, read at one revision per chunk of apps. The returned revision is the
   * app-name read's: following from just after it replays anything newer, and applying a drain
   * twice is harmless.
   */
  private async reload(): Promise<number> {
    const names = await this.o.store.range(keys.appNames(), { prefix: true });
    const appIds = decodeAll(codecs.appId, names.kvs).map((e) => e.value);
    const found = new Map<string, DrainRecord[]>();
    for (let i = 0; i < appIds.length; i += 100) {
      const chunk = appIds.slice(i, i + 100);
      const r = await this.o.store.txn({ compare: [], success: chunk.map((id): TxnOp => ({ type: 'range', key: keys.drains(id), prefix: true })) });
      r.results.forEach((res, j) => {
        if (res.type === 'range' && res.kvs.length > 0) found.set(chunk[j]!, decodeAll(codecs.drain, res.kvs, this.malformed).map((e) => e.value));
      });
    }
    if (this.closed) return names.revision;
    for (const appId of [...this.drains.keys()]) if (!found.has(appId)) this.removeApp(appId);
    for (const [appId, list] of found) {
      const ids = new Set(list.map((d) => d.id));
      for (const id of [...(this.drains.get(appId)?.keys() ?? [])]) if (!ids.has(id)) this.remove(appId, id);
      for (const d of list) this.upsert(appId, d);
    }
    return names.revision;
  }

  private apply(batch: WatchBatch): void {
    if (this.closed) return;
    for (const ev of batch.events) {
      const drain = DRAIN_KEY.exec(ev.kv.key);
      if (drain) {
        const [, appId, id] = drain as unknown as [string, string, string];
        const record = ev.type === 'put' ? tryDecode(codecs.drain, ev.kv) : undefined;
        if (record) this.upsert(appId, record);
        else {
          // Deleted, or no longer readable: as a reload would, it stops.
          if (ev.type === 'put') this.malformed(ev.kv.key);
          this.remove(appId, id);
        }
        continue;
      }
      // A destroyed app: its drain keys go in the same revision, and so do its lines on every node.
      const app = APP_KEY.exec(ev.kv.key);
      if (app && ev.type === 'delete') {
        this.removeApp(app[1]!);
        this.o.hub.forget(app[1]!);
      }
    }
  }

  /** A drain record that does not decode is skipped with a warning; the app's other drains go on. */
  private readonly malformed = (key: string): void => this.o.log.warn({ key }, 'ignoring a malformed drain record');

  private upsert(appId: string, record: DrainRecord): void {
    const byId = this.drains.get(appId) ?? new Map<string, Active>();
    const current = byId.get(record.id);
    if (current && current.record.url === record.url && current.record.token === record.token && current.record.internal === record.internal) return;
    current?.sender.close();
    let target: { host: string; port: number };
    try {
      target = parseDrainUrl(record.url);
    } catch (err) {
      this.o.log.warn({ app_id: appId, drain: record.id, err: errorMessage(err) }, 'ignoring a drain with an unusable URL');
      return;
    }
    const notice = (message: string): string => syslogFrame(record.token, { time: new Date().toISOString(), source: 'berth', dyno: LOGPLEX_DYNO, message });
    const sender = new SyslogSender({ ...target, ...this.o.sender, notice, allowInternal: record.internal === true, ...(this.o.guard ? { guard: this.o.guard } : {}), log: this.o.log.child({ app_id: appId, drain: record.id }) });
    byId.set(record.id, { record, sender });
    this.drains.set(appId, byId);
  }

  private remove(appId: string, id: string): void {
    const byId = this.drains.get(appId);
    byId?.get(id)?.sender.close();
    byId?.delete(id);
    if (byId?.size === 0) this.drains.delete(appId);
  }

  private removeApp(appId: string): void {
    for (const a of this.drains.get(appId)?.values() ?? []) a.sender.close();
    this.drains.delete(appId);
  }
}
