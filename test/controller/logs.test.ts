import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startController } from '../../src/controller/index.js';
import { LogHub, SqliteLogStore } from '../../src/controller/services/logs.js';
import { syslogFrame } from '../../src/controller/drains/syslog.js';
import { createLogger } from '../../src/domain/log.js';
import { keys } from '../../src/domain/keys.js';
import { openStore, type Store } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { apiHarness, type Harness } from './harness.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-logs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('log storage', () => {
  let store: Store;
  beforeAll(() => {
    store = openStore('memory://');
  });
  afterAll(() => store.close());

  it('keeps lines across closing and reopening the hub on the same file, owner-only, in WAL mode', () => {
    const path = join(dir, 'survive', 'logs.db');
    const first = new LogHub(store, new SqliteLogStore({ path }));
    // Same timestamp on purpose: order comes from the append order, not the clock.
    const time = '2024-01-01T00:00:00.000Z';
    for (const message of ['one', 'two', 'three']) first.append('app-1', { source: 'app', dyno: 'web.1', message, time });
    first.append('app-2', { source: 'berth', dyno: 'router', message: 'other app' });
    first.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();

    const second = new LogHub(store, new SqliteLogStore({ path }));
    expect(second.recent('app-1', 10).map((l) => l.message)).toEqual(['one', 'two', 'three']);
    expect(second.recent('app-1', 10)[0]).toEqual({ time, source: 'app', dyno: 'web.1', message: 'one' });
    expect(second.recent('app-2', 10).map((l) => l.message)).toEqual(['other app']);
    second.forget('app-1');
    second.close();
    const third = new LogHub(store, new SqliteLogStore({ path }));
    expect(third.recent('app-1', 10)).toEqual([]);
    expect(third.recent('app-2', 10)).toHaveLength(1);
    third.close();
  });

  it('keeps only the newest N lines per app, however the appends were batched', () => {
    const path = join(dir, 'bound.db');
    const lines = new SqliteLogStore({ path, retain: 50 });
    const hub = new LogHub(store, lines);
    for (let i = 0; i < 120; i++) {
      hub.append('busy', { source: 'app', dyno: 'web.1', message: `line ${i}` });
      // A read commits what is queued: batches of different sizes, each trimmed.
      if (i % 37 === 0) hub.recent('busy', 1);
    }
    hub.append('quiet', { source: 'app', dyno: 'web.1', message: 'kept' });
    const kept = hub.recent('busy', 1000);
    expect(kept).toHaveLength(50);
    expect(kept[0]?.message).toBe('line 70');
    expect(kept.at(-1)?.message).toBe('line 119');
    expect(hub.recent('quiet', 1000)).toHaveLength(1);
    hub.close();
    const raw = new Database(path, { readonly: true });
    expect(raw.prepare('SELECT count(*) AS n FROM lines').get()).toEqual({ n: 51 });
    raw.close();
  });

  it('filters by source, process type (web matches web.1 but not webhook.1) and dyno, newest n', () => {
    const hub = new LogHub(store);
    const add = (source: string, dyno: string, message: string): boolean => hub.append('f', { source, dyno, message });
    add('app', 'web.1', 'w1-a');
    add('app', 'webhook.1', 'hook');
    add('app', 'web.2', 'w2-a');
    add('berth', 'web.1', 'state');
    add('app', 'worker.1', 'job');
    add('berth', 'router', 'GET /');
    add('app', 'web.1', 'w1-b');
    expect(hub.recent('f', 100, { dyno: 'web' }).map((l) => l.message)).toEqual(['w1-a', 'w2-a', 'state', 'w1-b']);
    expect(hub.recent('f', 2, { dyno: 'web' }).map((l) => l.message)).toEqual(['state', 'w1-b']);
    expect(hub.recent('f', 100, { dyno: 'web.1', source: 'app' }).map((l) => l.message)).toEqual(['w1-a', 'w1-b']);
    expect(hub.recent('f', 100, { dyno: 'router' }).map((l) => l.message)).toEqual(['GET /']);
    expect(hub.recent('f', 100, { source: 'berth' }).map((l) => l.message)).toEqual(['state', 'GET /']);
    expect(hub.recent('f', 0)).toEqual([]);
    hub.close();
  });

  it('keeps lines across a restart of the controller given a log db', async () => {
    const logDb = join(dir, 'controller', 'logs.db');
    const log = createLogger('test', { level: 'silent' });
    const start = (): ReturnType<typeof startController> => startController({ store, log, host: '127.0.0.1', port: 0, settings: { domain: 'berth.test', apiUrl: 'http://127.0.0.1' }, logDb });
    const a = await start();
    a.services.logs.append('restarted', { source: 'app', dyno: 'web.1', message: 'before the restart' });
    await a.close();
    const b = await start();
    expect(b.services.logs.recent('restarted', 10).map((l) => l.message)).toEqual(['before the restart']);
    await b.close();
  });
});

describe('log sessions', () => {
  let h: Harness;
  let appId: string;
  beforeAll(async () => {
    h = await apiHarness();
    appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'filtered' })).body.id as string;
    const add = (source: string, dyno: string, message: string): boolean => h.services.logs.append(appId, { source, dyno, message });
    add('app', 'web.1', 'web one first');
    add('app', 'web.2', 'web two');
    add('app', 'worker.1', 'working');
    add('berth', 'router', 'at=info method=GET path="/"');
    add('berth', 'web.1', 'State changed from starting to up');
    add('app', 'web.1', 'web one last');
  });
  afterAll(() => h.close());

  const read = async (body: Record<string, unknown>): Promise<string[]> => {
    const session = await h.call(h.tokens.alice, 'POST', '/apps/filtered/log-sessions', body);
    expect(session.status).toBe(201);
    const text = (await h.call(undefined, 'GET', new URL(session.body.logplex_url as string).pathname)).body as string;
    return text.split('\n').filter(Boolean);
  };

  it('takes the heroku CLI\'s -p (type), -d (dyno), -s (source) and -n', async () => {
    expect((await read({ dyno: 'web', lines: 100 })).map((l) => l.replace(/^\S+ /, ''))).toEqual([
      'app[web.1]: web one first',
      'app[web.2]: web two',
      'berth[web.1]: State changed from starting to up',
      'app[web.1]: web one last',
    ]);
    expect(await read({ dyno: 'web', lines: 2 })).toHaveLength(2);
    expect((await read({ dyno: 'web.1', source: 'app' })).map((l) => l.split(': ')[1])).toEqual(['web one first', 'web one last']);
    expect((await read({ dyno: 'router' })).join()).toMatch(/berth\[router\]: at=info/);
    // `heroku logs -s heroku` means the platform's own lines.
    expect(await read({ source: 'heroku' })).toHaveLength(2);
    expect((await read({ lines: 1 }))[0]).toMatch(/app\[web\.1\]: web one last$/);
    // Newer heroku CLIs also send the process type as `type`.
    expect(await read({ type: 'worker' })).toHaveLength(1);
  });

  it('tails: the newest matching lines, then only new matching lines, each once', async () => {
    await h.api.listen({ host: '127.0.0.1', port: 0 });
    const { port } = h.api.server.address() as { port: number };
    const session = await h.call(h.tokens.alice, 'POST', '/apps/filtered/log-sessions', { dyno: 'web', lines: 1, tail: true });
    const abort = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}${new URL(session.body.logplex_url as string).pathname}`, { signal: abort.signal, headers: { accept: 'text/event-stream' } });
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (pattern: RegExp): Promise<void> => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${pattern}`);
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil(/web one last/);
    h.services.logs.append(appId, { source: 'app', dyno: 'worker.1', message: 'not for this tail' });
    h.services.logs.append(appId, { source: 'app', dyno: 'web.2', message: 'tailed line' });
    await readUntil(/tailed line/);
    abort.abort();
    const data = text.split('\n').filter((l) => l.startsWith('data: '));
    expect(data).toHaveLength(2);
    expect(data[0]).toMatch(/app\[web\.1\]: web one last$/);
    expect(data[1]).toMatch(/app\[web\.2\]: tailed line$/);
    expect(text).not.toContain('not for this tail');
  });
});

/** A syslog receiver on loopback that splits RFC 6587 octet-counted frames. */
class Receiver {
  readonly frames: string[] = [];
  readonly sockets = new Set<Socket>();
  connections = 0;
  private server: Server | undefined;
  port = 0;

  async listen(port = 0): Promise<void> {
    const server = createServer((socket) => {
      this.connections++;
      this.sockets.add(socket);
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          const space = buf.indexOf(0x20);
          if (space < 0) break;
          const len = Number(buf.subarray(0, space).toString());
          if (!Number.isInteger(len) || len <= 0) throw new Error(`bad frame header in ${buf.toString()}`);
          if (buf.length < space + 1 + len) break;
          this.frames.push(buf.subarray(space + 1, space + 1 + len).toString('utf8'));
          buf = buf.subarray(space + 1 + len);
        }
      });
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

const RFC5424 = /^<190>1 (\S+) (d\.[0-9a-f-]{36}) (\S+) (\S+) - - (.*)$/;

describe('log drains', () => {
  let h: Harness;
  let appId: string;
  let receiver: Receiver;
  beforeAll(async () => {
    h = await apiHarness();
    await h.services.drainForwarder.start();
    appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'drained' })).body.id as string;
    receiver = new Receiver();
    await receiver.listen();
  });
  afterAll(async () => {
    await h.close();
    await receiver.stop();
  });

  it('frames a line as octet-counted RFC 5424, as Heroku drains do', () => {
    const frame = syslogFrame('d.0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', { time: '2024-01-01T00:00:00.000Z', source: 'app', dyno: 'web.1', message: 'héllo wörld' });
    const [len, ...rest] = frame.split(' ');
    expect(Number(len)).toBe(Buffer.byteLength(rest.join(' ')));
    expect(rest.join(' ')).toBe('<190>1 2024-01-01T00:00:00.000Z d.0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f app web.1 - - héllo wörld');
  });

  it('adds a syslog drain and forwards every appended line to it', async () => {
    const added = await h.call(h.tokens.admin, 'POST', '/apps/drained/log-drains', { url: `syslog://127.0.0.1:${receiver.port}` });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ url: `syslog://127.0.0.1:${receiver.port}`, addon: null, app: { id: appId, name: 'drained' } });
    expect(added.body.token).toMatch(/^d\.[0-9a-f-]{36}$/);
    expect(Object.keys(added.body).sort()).toEqual(['addon', 'app', 'created_at', 'id', 'token', 'updated_at', 'url']);
    const list = await h.call(h.tokens.alice, 'GET', '/apps/drained/log-drains');
    expect(list.body).toEqual([added.body]);
    expect((await h.call(h.tokens.alice, 'GET', `/apps/drained/log-drains/${added.body.token as string}`)).body.id).toBe(added.body.id);

    h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: 'hello drain' });
    h.services.logs.append(appId, { source: 'berth', dyno: 'web.1', message: 'State changed from starting to up' });
    h.services.logs.append('some-other-app', { source: 'app', dyno: 'web.1', message: 'not this app' });
    await until('two frames', () => receiver.frames.length >= 2);
    const parsed = receiver.frames.map((f) => RFC5424.exec(f));
    expect(parsed.every(Boolean)).toBe(true);
    expect(parsed.map((m) => [m![2], m![3], m![4], m![5]])).toEqual([
      [added.body.token, 'app', 'web.1', 'hello drain'],
      [added.body.token, 'berth', 'web.1', 'State changed from starting to up'],
    ]);
    expect(new Date(parsed[0]![1]!).getTime()).not.toBeNaN();
    expect((await h.call(h.tokens.admin, 'POST', '/apps/drained/log-drains', { url: `syslog://127.0.0.1:${receiver.port}` })).status).toBe(422);
  });

  it('reconnects when the drain\'s server restarts', async () => {
    const before = receiver.frames.length;
    await receiver.stop();
    const stats = (): { connected: boolean; connections: number } => Object.values(h.services.drainForwarder.stats())[0]!;
    await until('the drain to notice', () => !stats().connected);
    await receiver.listen(receiver.port);
    await until('a reconnect', () => stats().connected && stats().connections === 2);
    h.services.logs.append(appId, { source: 'app', dyno: 'web.2', message: 'after the restart' });
    await until('the frame after the restart', () => receiver.frames.length > before);
    expect(RFC5424.exec(receiver.frames.at(-1)!)?.slice(3)).toEqual(['app', 'web.2', 'after the restart']);
  });

  it('removes a drain by URL, closing its connection', async () => {
    expect(receiver.sockets.size).toBe(1);
    const removed = await h.call(h.tokens.alice, 'DELETE', `/apps/drained/log-drains/${encodeURIComponent(`syslog://127.0.0.1:${receiver.port}`)}`);
    expect(removed.status).toBe(200);
    expect(removed.body.url).toBe(`syslog://127.0.0.1:${receiver.port}`);
    expect(h.services.drainForwarder.stats()).toEqual({});
    await until('the connection to close', () => receiver.sockets.size === 0);
    expect((await h.call(h.tokens.alice, 'GET', '/apps/drained/log-drains')).body).toEqual([]);
    expect((await h.call(h.tokens.alice, 'DELETE', '/apps/drained/log-drains/nope')).status).toBe(404);
  });

  it('follows drains written through another controller, and drops them with their app', async () => {
    const other = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'elsewhere' })).body.id as string;
    const now = new Date().toISOString();
    // What another node's API writes: this controller learns of it from the store alone. An
    // admin's drain (`internal`): a tenant's may not reach this host's loopback receiver.
    const drain = { id: '1c0ffee0-0000-4000-8000-000000000001', url: `syslog://127.0.0.1:${receiver.port}`, token: 'd.1c0ffee0-0000-4000-8000-00000000000a', internal: true, created_at: now, updated_at: now };
    await h.store.put(keys.drain(other, drain.id), JSON.stringify(drain));
    await until('the drain from the store', () => h.services.drainForwarder.stats()[drain.id]?.connected);
    h.services.logs.append(other, { source: 'app', dyno: 'worker.1', message: 'from elsewhere' });
    await until('its frame', () => receiver.frames.some((f) => f.endsWith('from elsewhere') && f.includes(drain.token)));
    expect((await h.call(h.tokens.alice, 'DELETE', '/apps/elsewhere')).status).toBe(200);
    await until('the drain to go with its app', () => Object.keys(h.services.drainForwarder.stats()).length === 0);
    await until('the connection to close', () => receiver.sockets.size === 0);
  });

  it('accepts only syslog://host:port, answering 422 {id, message}', async () => {
    for (const url of ['https://logs.example.com/drain', 'syslog+tls://logs.example.com:6514', 'syslog://logs.example.com', 'syslog://user:pw@logs.example.com:514', 'not a url', 'syslog://logs.example.com:99999']) {
      const r = await h.call(h.tokens.alice, 'POST', '/apps/drained/log-drains', { url });
      expect(r.status, url).toBe(422);
      expect(r.body.id).toBe('invalid_params');
      expect(typeof r.body.message).toBe('string');
    }
    expect((await h.call(h.tokens.alice, 'POST', '/apps/drained/log-drains', {})).body.id).toBe('invalid_params');
  });

  it("refuses a tenant's drain to this host, link-local or unspecified addresses; an admin may", async () => {
    for (const url of ['syslog://127.0.0.1:2379', 'syslog://localhost:5000', 'syslog://[::1]:514', 'syslog://169.254.169.254:80', 'syslog://0.0.0.0:514', 'syslog://[::ffff:127.0.0.1]:514']) {
      const r = await h.call(h.tokens.alice, 'POST', '/apps/drained/log-drains', { url });
      expect(r.status, url).toBe(422);
      expect(r.body.message).toMatch(/internal address/);
    }
    expect((await h.call(h.tokens.alice, 'GET', '/apps/drained/log-drains')).body).toEqual([]);
  });

  it('is 404 to a user who cannot see the app', async () => {
    const url = `syslog://127.0.0.1:${receiver.port}`;
    // An internal address is an admin's to add (see below); bob still cannot see the app.
    const added = await h.call(h.tokens.admin, 'POST', '/apps/drained/log-drains', { url });
    expect(added.status).toBe(201);
    for (const [method, path, body] of [
      ['GET', '/apps/drained/log-drains', undefined],
      ['POST', '/apps/drained/log-drains', { url: 'syslog://127.0.0.1:1' }],
      ['DELETE', `/apps/drained/log-drains/${added.body.id as string}`, undefined],
    ] as const) {
      const r = await h.call(h.tokens.bob, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body.id).toBe('not_found');
    }
    expect((await h.call(h.tokens.alice, 'GET', '/apps/drained/log-drains')).body).toHaveLength(1);
  });
});
