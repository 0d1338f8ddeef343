import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, startController, type Controller } from '../../src/controller/index.js';
import { ClusterTokens } from '../../src/controller/services/cluster.js';
import { put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { storePeers } from '../../src/domain/peers.js';
import { codecs } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';

/**
 * Three servers in one process, each a real API on loopback with a data dir of its own, on one
 * memory store: what `/berth/servers/` and the machine credentials say is what they go by.
 */
interface Server {
  id: string;
  dir: string;
  port: number;
  url: string;
  credential: string;
  controller: Controller;
  /** Requests to /internal/log-lines this server answered, by method and query. */
  seen: { method: string; url: string }[];
}

const log = createLogger('test', { level: 'silent' });
let store: Store;
let tokens: ClusterTokens;
let root: string;
let user: string;
const servers: Record<string, Server> = {};

async function startServer(id: string, given?: { port: number; dir: string }): Promise<Server> {
  const port = given?.port ?? (await freePort());
  const dir = given?.dir ?? join(root, id);
  const url = `http://127.0.0.1:${port}`;
  const credential = await tokens.issue(id, id, 'server');
  await put(store, keys.server(id), codecs.server, { id, name: id, address: '127.0.0.1', api_url: url, join_url: `https://127.0.0.1:${port + 1}`, etcd: null, started_at: new Date().toISOString() });
  const services = createServices(store, log, { domain: 'berth.test', apiUrl: url }, {
    logDb: join(dir, 'logs.db'),
    peers: storePeers(store, id, credential),
    logCluster: { fanout: { intervalMs: 50, refreshMs: 100, minBackoffMs: 50, maxBackoffMs: 300, timeoutMs: 2000 }, catchUp: { settleMs: 0, timeoutMs: 2000 } },
  });
  const seen: Server['seen'] = [];
  const count = (api: FastifyInstance): void => {
    api.addHook('onRequest', async (req) => {
      if (req.url.startsWith('/internal/log-lines')) seen.push({ method: req.method, url: req.url });
    });
  };
  const controller = await startController({ services, host: '127.0.0.1', port, routes: [count] });
  const server = { id, dir, port, url, credential, controller, seen };
  servers[id] = server;
  return server;
}

/** The machine dies: its connections go with it (a peer's pooled, unused socket would hold a graceful close for 30 s). */
async function stopServer(s: Server, { forgetRecord }: { forgetRecord: boolean }): Promise<void> {
  const closing = s.controller.close();
  s.controller.api.server.closeAllConnections();
  await closing;
  // What the lease's expiry does when a machine dies.
  if (forgetRecord) await store.delete(keys.server(s.id));
}

const api = (s: Server, token: string, method: string, path: string, body?: unknown): Promise<Response> =>
  fetch(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/vnd.heroku+json; version=3', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });

/** `heroku logs -n N` through server `s`: the messages, in the order shown. */
async function logs(s: Server, app: string, lines = 1500): Promise<string[]> {
  const session = (await (await api(s, user, 'POST', `/apps/${app}/log-sessions`, { lines })).json()) as { logplex_url: string };
  const text = await (await fetch(session.logplex_url)).text();
  return text.split('\n').filter(Boolean).map((l) => l.replace(/^\S+ [a-z]+\[[^\]]+\]: /, ''));
}

/** `heroku logs --tail` through server `s`, from now on. */
async function tail(s: Server, app: string): Promise<{ text: () => string; until: (pattern: RegExp) => Promise<void>; close: () => void }> {
  const session = (await (await api(s, user, 'POST', `/apps/${app}/log-sessions`, { lines: 0, tail: true })).json()) as { logplex_url: string };
  const abort = new AbortController();
  const res = await fetch(session.logplex_url, { signal: abort.signal });
  const reader = res.body!.getReader();
  let text = '';
  return {
    text: () => text,
    async until(pattern) {
      const deadline = setTimeout(() => abort.abort(), 10_000);
      try {
        while (!pattern.test(text)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the tail ended before ${pattern}`);
          text += new TextDecoder().decode(value);
        }
      } finally {
        clearTimeout(deadline);
      }
    },
    close: () => abort.abort(),
  };
}

const messages = (s: Server, appId: string): string[] => s.controller.services.logs.recent(appId, 5000).map((l) => l.message);
const createApp = async (s: Server, name: string): Promise<string> => ((await (await api(s, user, 'POST', '/apps', { name })).json()) as { id: string }).id;

let app: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'berth-log-cluster-'));
  store = openStore('memory://');
  tokens = new ClusterTokens(store);
  for (const id of ['a', 'b', 'c']) await startServer(id);
  user = (await servers.a!.controller.services.users.create('alice@example.com')).token;
  app = await createApp(servers.a!, 'shared');
  // Every server knows the other two before a test sends anything.
  await until('each server to know two peers', () => Object.values(servers).every((s) => Object.keys(s.controller.services.logs.fanoutStats()).length === 2));
});

afterAll(async () => {
  for (const s of Object.values(servers)) await stopServer(s, { forgetRecord: false }).catch(() => undefined);
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('log lines across servers', () => {
  it('shows a line appended on one server in logs and live tails through the others, drained only at its origin', async () => {
    const { a, b, c } = servers as Record<string, Server>;
    const tails = await Promise.all([tail(b!, 'shared'), tail(c!, 'shared')]);
    const tapped: string[] = [];
    const untap = b!.controller.services.logs.tap((_app, l) => tapped.push(l.message));
    a!.controller.services.logs.append(app, { source: 'app', dyno: 'web.1', message: 'hello from a' });
    await Promise.all(tails.map((t) => t.until(/app\[web\.1\]: hello from a\n/)));
    for (const t of tails) t.close();
    expect(await logs(b!, 'shared')).toContain('hello from a');
    expect(await logs(c!, 'shared')).toContain('hello from a');
    untap();
    // B only received it: drains (taps) and further fan-out are the origin's.
    expect(tapped).toEqual([]);
    expect(b!.controller.services.logs.fanoutStats().c?.sent).toBe(0);
    expect(a!.controller.services.logs.fanoutStats().c?.sent).toBeGreaterThan(0);
  });

  it('shows lines from every server in time order, not in the order they arrived', async () => {
    const { a, b, c } = servers as Record<string, Server>;
    const appId = await createApp(a!, 'ordered');
    const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 3));
    // "first" and "third" travel in one batch from A, "second" in another from B.
    a!.controller.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: 'first' });
    await pause();
    b!.controller.services.logs.append(appId, { source: 'app', dyno: 'web.2', message: 'second' });
    await pause();
    a!.controller.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: 'third' });
    await until('three lines on C', () => messages(c!, appId).includes('second') && messages(c!, appId).includes('third'));
    // Creating the app logged its initial release (at A) before these.
    for (const s of [a!, b!, c!]) expect((await logs(s, 'ordered')).slice(1)).toEqual(['first', 'second', 'third']);
  });

  it('fans out what a berth agent posts to one server, and sends a batch per peer per interval, not a request per line', async () => {
    const { a, b, c } = servers as Record<string, Server>;
    const agent = await tokens.issue('agent-1', 'agent-1', 'agent');
    const before = b!.seen.length;
    const lines = Array.from({ length: 1000 }, (_, i) => ({ app_id: app, source: 'app', dyno: 'worker.1', message: `agent line ${i}` }));
    const res = await api(a!, agent, 'POST', '/internal/logs', { lines });
    expect(res.status).toBe(204);
    await until('the agent\'s last line on B and C', () => [b!, c!].every((s) => messages(s, app).includes('agent line 999')));
    expect(messages(b!, app).filter((m) => m.startsWith('agent line '))).toHaveLength(1000);
    expect(b!.seen.length - before).toBeLessThanOrEqual(3);
  });

  it('drops a line it already has, in the store and in tails', async () => {
    const { a, b } = servers as Record<string, Server>;
    const t = await tail(b!, 'shared');
    const line = { id: '0190000000000000000000abcd', app_id: app, time: new Date().toISOString(), source: 'app', dyno: 'web.3', message: 'sent twice' };
    for (const expected of [1, 0]) {
      const res = await api(b!, a!.credential, 'POST', '/internal/log-lines', { lines: [line] });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ stored: expected });
    }
    const marker = { ...line, id: '0190000000000000000000abce', message: 'after the duplicate' };
    expect((await api(b!, a!.credential, 'POST', '/internal/log-lines', { lines: [marker] })).status).toBe(200);
    await t.until(/after the duplicate/);
    t.close();
    expect(t.text().match(/sent twice/g)).toHaveLength(1);
    expect(messages(b!, app).filter((m) => m === 'sent twice')).toHaveLength(1);
  });

  it('refuses a bad batch whole, 422/400/413 {id, message}, storing nothing of it', async () => {
    const { a, b } = servers as Record<string, Server>;
    const good = { id: '0190000000000000000000beef', app_id: app, time: new Date().toISOString(), source: 'app', dyno: 'web.1', message: 'good line of a bad batch' };
    const bad: [unknown, number][] = [
      [{ lines: [good, { ...good, id: 'not-an-id' }] }, 422],
      [{ lines: [good, { ...good, id: '0190000000000000000000bee0', dyno: 'web 1]: forged' }] }, 422],
      [{ lines: [good, { ...good, id: '0190000000000000000000bee1', app_id: '../etc' }] }, 422],
      [{ lines: [good], extra: true }, 422],
      [{ lines: [{ ...good, message: 'x'.repeat(70_000) }] }, 422],
      ['{"lines": [', 400],
      [{ lines: Array.from({ length: 30 }, (_, i) => ({ ...good, id: `01900000000000000000${i.toString(16).padStart(6, '0')}`, message: 'y'.repeat(60_000) })) }, 413],
    ];
    for (const [body, status] of bad) {
      const res = await api(b!, a!.credential, 'POST', '/internal/log-lines', body);
      expect(res.status).toBe(status);
      const answer = (await res.json()) as { id: unknown; message: unknown };
      expect(typeof answer.id).toBe('string');
      expect(typeof answer.message).toBe('string');
    }
    expect(messages(b!, app)).not.toContain('good line of a bad batch');
    const q = await api(b!, a!.credential, 'GET', '/internal/log-lines?app=nope');
    expect(q.status).toBe(422);
  });

  it('takes log lines between servers only: an agent\'s credential, a user\'s token or none is refused', async () => {
    const { b } = servers as Record<string, Server>;
    const agent = await tokens.issue('agent-2', 'agent-2', 'agent');
    const line = { id: '0190000000000000000000cafe', app_id: app, time: new Date().toISOString(), source: 'app', dyno: 'web.1', message: 'from an agent' };
    expect((await api(b!, agent, 'POST', '/internal/log-lines', { lines: [line] })).status).toBe(403);
    expect((await api(b!, agent, 'GET', `/internal/log-lines?app=${app}`)).status).toBe(403);
    expect((await api(b!, user, 'POST', '/internal/log-lines', { lines: [line] })).status).toBe(401);
    expect((await fetch(`${b!.url}/internal/log-lines?app=${app}`)).status).toBe(401);
    expect(messages(b!, app)).not.toContain('from an agent');
  });

  it('retries a server that is down, and delivers once it is back', async () => {
    const { a } = servers as Record<string, Server>;
    const c = servers.c!;
    await stopServer(c, { forgetRecord: false });
    a!.controller.services.logs.append(app, { source: 'app', dyno: 'web.1', message: 'while c was down' });
    await until('a failed send to C', () => (a!.controller.services.logs.fanoutStats().c?.failures ?? 0) > 0);
    const back = await startServer('c', { port: c.port, dir: c.dir });
    await until('the line on C', () => messages(back, app).includes('while c was down'), { context: () => JSON.stringify(a!.controller.services.logs.fanoutStats()) });
  });
});

describe('a server lost or restarted', () => {
  it('keeps the newest 1,500 lines on the others after the origin and its data dir are gone', async () => {
    const { a, b } = servers as Record<string, Server>;
    const appId = await createApp(b!, 'busy');
    const append = (from: number, to: number): void => {
      for (let i = from; i < to; i++) a!.controller.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: `busy ${i}` });
    };
    // An app's lines enter at 1,000 at once and 500 a second after (past that, L10): the rest later.
    append(0, 1000);
    await new Promise((r) => setTimeout(r, 1500));
    append(1000, 1600);
    await until('the last line on B', () => messages(b!, appId).includes('busy 1599'));
    await stopServer(a!, { forgetRecord: true });
    rmSync(a!.dir, { recursive: true, force: true });
    const shown = await logs(b!, 'busy');
    expect(shown).toHaveLength(1500);
    expect(shown[0]).toBe('busy 100');
    expect(shown.at(-1)).toBe('busy 1599');
  });

  it('catches a restarted server up per app on first read, once', async () => {
    const { b } = servers as Record<string, Server>;
    const c = servers.c!;
    const quiet = await createApp(b!, 'quiet');
    b!.controller.services.logs.append(quiet, { source: 'app', dyno: 'web.1', message: 'never read on C' });
    // C dies with its data dir; the others stop sending to it when its record goes.
    await stopServer(c, { forgetRecord: true });
    rmSync(c.dir, { recursive: true, force: true });
    await until('B to drop C', () => !('c' in b!.controller.services.logs.fanoutStats()));
    b!.controller.services.logs.append(app, { source: 'app', dyno: 'web.1', message: 'while c was gone' });
    const restarted = await startServer('c', { port: c.port, dir: c.dir });
    expect(messages(restarted, app)).toEqual([]);
    const earlier = b!.seen.length;
    // One catch-up may take several pages (`before=`); count catch-ups.
    const asked = (): string[] => b!.seen.slice(earlier).filter((r) => r.method === 'GET' && !r.url.includes('before=')).map((r) => r.url);
    const first = await logs(restarted, 'shared');
    expect(first).toContain('while c was gone');
    expect(first).toContain('hello from a');
    expect(asked().filter((u) => u.includes(app))).toHaveLength(1);
    // Synced once: the next read is local; an app nobody read on C was never asked for.
    await logs(restarted, 'shared');
    expect(asked().filter((u) => u.includes(app))).toHaveLength(1);
    expect(asked().filter((u) => u.includes(quiet))).toHaveLength(0);
    expect(await logs(restarted, 'quiet')).toEqual([expect.stringMatching(/^Initial release/), 'never read on C']);
    expect(asked().filter((u) => u.includes(quiet))).toHaveLength(1);
  });

  it('forgets a destroyed app\'s lines on every server', async () => {
    const { b } = servers as Record<string, Server>;
    const c = servers.c!;
    const doomed = await createApp(b!, 'doomed');
    b!.controller.services.logs.append(doomed, { source: 'app', dyno: 'web.1', message: 'doomed line' });
    await until('the line on C', () => messages(c, doomed).includes('doomed line'));
    expect((await api(b!, user, 'DELETE', '/apps/doomed')).status).toBe(200);
    await until('C to forget it', () => messages(c, doomed).length === 0);
  });
});
