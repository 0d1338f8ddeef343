import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { decodeAll, put, tryDecode } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import type { Logger } from '../../src/domain/log.js';
import { codecs } from '../../src/domain/records.js';
import { routersCaughtUp } from '../../src/domain/routers.js';
import { ControlLoop, Registration } from '../../src/loop/index.js';
import type { Store, WatchBatch } from '../../src/store/index.js';
import { silentLog } from './log.js';
import { until } from './until.js';

export interface Reply {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
  /** The certificate the server presented (HTTPS). */
  cert?: PeerCertificate;
}

export interface Call {
  /** The router's HTTP (or HTTPS) port on loopback. */
  port: number;
  /** The Host header (and SNI name) to send: which app the router should pick. */
  host: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** HTTPS with SNI = host, trusting only `ca`. */
  tls?: { ca: string };
}

/**
 * A request through a router to an app by hostname: the one helper every suite that talks to nginx
 * uses. node:http(s), not fetch: fetch will not send a Host header of our choosing, nor SNI to
 * 127.0.0.1. A fresh connection each time (no keep-alive), so a reload's old workers are not reused.
 */
export function call(c: Call): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port: c.port, path: c.path ?? '/', method: c.method ?? 'GET', headers: { host: c.host, ...c.headers }, agent: false as const };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      const cert = c.tls ? (res.socket as TLSSocket).getPeerCertificate() : undefined;
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers, ...(cert ? { cert } : {}) }));
    };
    const req = c.tls ? httpsRequest({ ...options, servername: c.host, ca: c.tls.ca }, onResponse) : httpRequest(options, onResponse);
    req.on('error', reject);
    req.end(c.body);
  });
}

export interface TestRouterOptions {
  store: Store;
  id: string;
  log?: Logger;
  /** How long applying a change takes before the router reports it (nginx's update, say). */
  delayMs?: number;
  /** Lease TTL in seconds (default 2). */
  ttl?: number;
  /** Told each revision just before it is reported: a test's timeline of the handshake. */
  onReport?: (revision: number) => void;
}

/**
 * The router's side of the rollout handshake without nginx, for in-process tests of the agent and
 * scheduler: it follows `/berth/`, keeps the published endpoints in memory, and after each change
 * to them (and a configurable delay, the time an update takes) reports at `/berth/routers/<id>`,
 * under its lease, the revision it has applied — as `src/router/router.ts` does, on the same
 * primitive (`ControlLoop`, `Registration`).
 */
export class TestRouter {
  /** Endpoints by service key, as applied. */
  readonly endpoints = new Map<string, string>();
  /** The revision last reported. */
  reported = 0;
  /** Set to hold reports back (a wedged router) until it is false again. */
  paused = false;
  private seen = 0;
  private loop: ControlLoop | undefined;
  private registration: Registration | undefined;
  private readonly pending = new Map<string, string | undefined>();

  constructor(private readonly o: TestRouterOptions) {}

  async start(): Promise<this> {
    const { store } = this.o;
    const log = this.o.log ?? silentLog();
    this.loop = new ControlLoop({
      store,
      log,
      prefix: keys.all(),
      load: async () => {
        const r = await store.range(keys.allServices(), { prefix: true });
        return {
          revision: r.revision,
          commit: () => {
            this.pending.clear();
            this.endpoints.clear();
            for (const e of decodeAll(codecs.endpoint, r.kvs)) this.endpoints.set(e.key, e.value);
            this.seen = Math.max(this.seen, r.revision);
          },
        };
      },
      apply: (batch) => this.applyBatch(batch),
      pass: () => this.pass(),
      debounceMs: 5,
      maxWaitMs: 50,
    });
    await this.loop.start();
    await this.loop.kick();
    this.registration = await Registration.start({
      store,
      log,
      ttl: this.o.ttl ?? 2,
      register: async (lease) => {
        this.reported = 0;
        await this.report(Math.max(this.seen, 1), lease);
      },
    });
    return this;
  }

  /** The router's lease (revoke it to make the router vanish as a dead one does). */
  get leaseId(): string | undefined {
    return this.registration?.leaseId;
  }

  private applyBatch(batch: WatchBatch): boolean {
    let relevant = false;
    for (const e of batch.events) {
      if (!e.kv.key.startsWith(keys.allServices())) continue;
      this.pending.set(e.kv.key, e.type === 'put' ? e.kv.value : undefined);
      relevant = true;
    }
    // Only what it serves moves the revision it can claim (its own reports must not).
    if (relevant) this.seen = batch.revision;
    return relevant;
  }

  private async pass(): Promise<void> {
    const revision = this.seen;
    const changes = [...this.pending];
    this.pending.clear();
    if (this.o.delayMs) await new Promise((r) => setTimeout(r, this.o.delayMs));
    for (const [key, value] of changes) {
      if (value === undefined) this.endpoints.delete(key);
      else this.endpoints.set(key, value);
    }
    while (this.paused) await new Promise((r) => setTimeout(r, 10));
    await this.report(revision);
  }

  private async report(revision: number, lease = this.registration?.leaseId): Promise<void> {
    if (!lease || revision <= this.reported) return;
    this.o.onReport?.(revision);
    await put(this.o.store, keys.router(this.o.id), codecs.router, { id: this.o.id, revision, http_port: 80, https_port: null, updated_at: new Date().toISOString() }, { lease });
    this.reported = revision;
  }

  async stop(): Promise<void> {
    this.paused = false;
    await this.loop?.stop();
    await this.registration?.stop();
  }
}

/** Waits until every live router has reported `revision` (or the one named, if given) applied. */
export async function routersAt(store: Store, revision: number, o: { id?: string; timeoutMs?: number } = {}): Promise<void> {
  await until(
    o.id ? `router ${o.id} at revision ${revision}` : `the routers at revision ${revision}`,
    async () => {
      if (!o.id) return routersCaughtUp(store, revision);
      const report = tryDecode(codecs.router, await store.get(keys.router(o.id)));
      return report !== undefined && report.revision >= revision;
    },
    o.timeoutMs ?? 10_000,
  );
}
