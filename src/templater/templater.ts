import { exec } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Eta } from 'eta';
import { decode, untypedJson } from '../domain/codec.js';
import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { follow, type Following, type KeyValue, type Store } from '../store/index.js';
import type { TemplateResource } from './resource.js';

export type Outcome = 'unchanged' | 'updated' | 'check_failed' | 'reload_failed' | 'error';

/**
 * What a template sees: the store at one revision, every list sorted by key so the same data
 * always renders the same bytes (and a resync never causes a reload).
 */
export interface TemplateData {
  revision: number;
  get(key: string): string | undefined;
  getv(key: string, fallback?: string): string;
  json<T = unknown>(key: string): T | undefined;
  gets(prefix: string): { key: string; value: string }[];
  getvs(prefix: string): string[];
  /** Immediate children under a prefix: `ls('/berth/apps/')` → app ids. */
  ls(prefix: string): string[];
}

function snapshot(kvs: KeyValue[], revision: number): TemplateData {
  const sorted = [...kvs].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  const byKey = new Map(sorted.map((kv) => [kv.key, kv]));
  const under = (prefix: string): KeyValue[] => sorted.filter((kv) => kv.key.startsWith(prefix));
  return {
    revision,
    get: (key) => byKey.get(key)?.value,
    getv: (key, fallback = '') => byKey.get(key)?.value ?? fallback,
    // A template may read any key, so no record type applies: the codec module's untyped JSON.
    json: <T>(key: string) => {
      const kv = byKey.get(key);
      return kv === undefined ? undefined : (decode(untypedJson, kv) as T);
    },
    gets: (prefix) => under(prefix).map((kv) => ({ key: kv.key, value: kv.value })),
    getvs: (prefix) => under(prefix).map((kv) => kv.value),
    ls: (prefix) => [...new Set(under(prefix).map((kv) => kv.key.slice(prefix.length).split('/')[0] ?? '').filter(Boolean))],
  };
}

function sh(command: string, timeoutMs: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    exec(command, { timeout: timeoutMs }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) || 1 : 0, output: `${stdout}${stderr}`.trim() }));
  });
}

export interface TemplaterOptions {
  store: Store;
  resources: TemplateResource[];
  log: Logger;
  /** Changes arriving within this window render once (default 50 ms). */
  debounceMs?: number;
  /** Everything is re-rendered this often regardless of events (default 60 s). */
  resyncMs?: number;
  /** Called with the store revision every resource has been rendered at. */
  onApplied?: (revision: number) => void;
  /** Fixed values templates see beside the store's (`it.<name>`): ports, paths, the domain. */
  extra?: Record<string, unknown>;
}

/**
 * confd's loop, watch-driven: render → stage beside the destination → check → atomic rename →
 * reload. Identical output writes nothing and reloads nothing; a failing check keeps the old file
 * and is tried again on the next change.
 */
export class Templater {
  private readonly eta = new Eta({ autoEscape: false, autoTrim: false, cache: false });
  private watches: Following[] = [];
  private dirty = new Set<TemplateResource>();
  private timer: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  readonly outcomes = new Map<string, Outcome>();

  constructor(private readonly options: TemplaterOptions) {}

  /** Renders everything once, then follows the store until stop(). */
  async start(): Promise<void> {
    const revision = await this.renderAll();
    const prefixes = [...new Set(this.options.resources.flatMap((r) => r.keys))];
    for (const prefix of prefixes) {
      this.watches.push(
        follow(this.options.store, prefix, revision + 1, {
          onBatch: (batch) => {
            for (const r of this.options.resources) if (r.keys.some((k) => batch.events.some((e) => e.kv.key.startsWith(k)))) this.dirty.add(r);
            clearTimeout(this.timer);
            this.timer = setTimeout(() => {
              const due = this.dirty;
              this.dirty = new Set();
              void this.enqueue(due);
            }, this.options.debounceMs ?? 50);
          },
          // Fell behind a compaction, or the store restarted: render everything, follow from there.
          onGap: () => {
            this.options.log.warn({ prefix }, 'watch ended; resyncing');
            return this.renderAll();
          },
        }),
      );
    }
    this.resync = setInterval(() => void this.enqueue(new Set(this.options.resources)), this.options.resyncMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.resync);
    for (const w of this.watches) w.close();
    await this.running;
  }

  /**
   * Renders every resource at one revision (the current one, or `at`, so a caller can prepare
   * files the output will name from the same data); returns that revision.
   */
  async renderAll(at?: number): Promise<number> {
    let revision = 0;
    await this.enqueue(new Set(this.options.resources), (r) => (revision = r), at);
    return revision;
  }

  /** One render pass at a time, so two passes never race on the same destination. */
  private enqueue(resources: Set<TemplateResource>, atRevision?: (rev: number) => void, at?: number): Promise<void> {
    this.running = this.running.then(async () => {
      if (resources.size === 0) return;
      try {
        const revision = at ?? (await this.options.store.currentRevision());
        for (const r of resources) this.outcomes.set(r.name, await this.process(r, revision));
        atRevision?.(revision);
        this.options.onApplied?.(revision);
      } catch (err) {
        this.options.log.error({ err: errorMessage(err) }, 'render pass failed');
      }
    });
    return this.running;
  }

  async process(r: TemplateResource, revision: number): Promise<Outcome> {
    const log = this.options.log.child({ resource: r.name, dest: r.dest });
    let content: string;
    try {
      const kvs: KeyValue[] = [];
      for (const key of r.keys) kvs.push(...(await this.options.store.range(key, { prefix: true, revision })).kvs);
      content = this.eta.renderString(readFileSync(r.src, 'utf8'), { ...this.options.extra, ...snapshot(kvs, revision) });
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'render failed; keeping the current file');
      return 'error';
    }
    if (existsSync(r.dest) && readFileSync(r.dest, 'utf8') === content) return 'unchanged';
    const stage = join(dirname(r.dest), `.${basename(r.dest)}.berth-${randomBytes(4).toString('hex')}`);
    try {
      writeFileSync(stage, content, { mode: r.mode });
      chmodSync(stage, r.mode);
      if (r.owner) chownSync(stage, r.owner.uid, r.owner.gid);
      if (r.checkCmd) {
        const check = await sh(r.checkCmd.replace(/\{\{\s*\.?src\s*\}\}/g, stage), 30_000);
        if (check.code !== 0) {
          log.error({ output: check.output, revision }, 'check failed; keeping the current file');
          return 'check_failed';
        }
      }
      renameSync(stage, r.dest);
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'could not stage the new file');
      return 'error';
    } finally {
      rmSync(stage, { force: true });
    }
    log.info({ revision }, 'updated');
    if (!r.reloadCmd) return 'updated';
    const reload = await sh(r.reloadCmd, 60_000);
    if (reload.code !== 0) {
      log.error({ output: reload.output }, 'reload failed');
      return 'reload_failed';
    }
    return 'updated';
  }
}
