import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LogCatchUp } from '../../src/controller/logs/catch-up.js';
import { LogFanout } from '../../src/controller/logs/fanout.js';
import { LINE_ID, LineIds } from '../../src/controller/logs/ids.js';
import type { WireBatch } from '../../src/controller/logs/wire.js';
import { SqliteLogStore, type StoredLine } from '../../src/controller/services/log-store.js';
import { createLogger } from '../../src/domain/log.js';
import type { ClusterPeers } from '../../src/domain/peers.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';

const log = createLogger('test', { level: 'silent' });
const APP = '0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f';

/** A peer server on loopback that answers with `handler` and records what it was sent. */
class Peer {
  readonly requests: { method: string; url: string; body: string }[] = [];
  private server: Server | undefined;
  constructor(
    readonly port: number,
    private readonly handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        this.requests.push({ method: req.method ?? '', url: req.url ?? '', body });
        this.handler(req, body, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }

  batches(): WireBatch[] {
    return this.requests.filter((r) => r.method === 'POST').map((r) => JSON.parse(r.body) as WireBatch);
  }
}

const peersOf = (...list: Peer[]): ClusterPeers => ({
  self: 'me',
  servers: async () => [{ id: 'me', name: 'me', url: 'http://127.0.0.1:1' }, ...list.map((p, i) => ({ id: `p${i}`, name: `p${i}`, url: p.url })), { id: 'odd', name: 'odd', url: 'file:///etc/passwd' }],
  headers: () => ({ authorization: 'Bearer server-credential' }),
});

const ids = new LineIds();
const line = (message: string): StoredLine => ({ id: ids.next(), time: new Date().toISOString(), source: 'app', dyno: 'web.1', message });

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

describe('the log fan-out', () => {
  it('holds the newest lines while a server is down (the oldest dropped, counted), retries, then sends them in one batch', async () => {
    const peer = new Peer(await freePort(), (_req, _body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"stored":1}'));
    const fanout = new LogFanout(peersOf(peer), log, { intervalMs: 30, queueMax: 5, refreshMs: 60_000, minBackoffMs: 30, maxBackoffMs: 100 });
    cleanup.push(() => fanout.close(), () => peer.stop());
    await until('the peer list', async () => Object.keys(fanout.stats()).length === 1);
    // Only the peer: not itself, not a record whose URL is no http(s) URL.
    expect((await fanout.servers()).map((s) => s.id)).toEqual(['p0']);
    for (let i = 0; i < 12; i++) fanout.send(APP, line(`down ${i}`));
    await until('a failed send', () => fanout.stats().p0!.failures > 0);
    expect(fanout.stats().p0).toMatchObject({ queued: 5, dropped: 7, sent: 0 });
    await peer.start();
    await until('the held lines to arrive', () => fanout.stats().p0!.sent === 5);
    expect(peer.batches()).toHaveLength(1);
    expect(peer.batches()[0]!.lines.map((l) => l.message)).toEqual(['down 7', 'down 8', 'down 9', 'down 10', 'down 11']);
    expect(peer.requests[0]!.url).toBe('/internal/log-lines');
    expect(peer.batches()[0]!.lines[0]).toMatchObject({ app_id: APP, source: 'app', dyno: 'web.1' });
    expect(peer.batches()[0]!.lines[0]!.id).toMatch(LINE_ID);
  });

  it('sends one batch per interval however many lines, drops a batch the server refuses as such and goes on', async () => {
    let refuse = true;
    const peer = new Peer(await freePort(), (_req, _body, res) => {
      if (refuse) res.writeHead(422, { 'content-type': 'application/json' }).end('{"id":"invalid_params","message":"no"}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await peer.start();
    const fanout = new LogFanout(peersOf(peer), log, { intervalMs: 30, refreshMs: 60_000 });
    cleanup.push(() => fanout.close(), () => peer.stop());
    await until('the peer list', async () => Object.keys(fanout.stats()).length === 1);
    fanout.send(APP, line('refused'));
    await until('the refusal', () => fanout.stats().p0!.dropped === 1);
    refuse = false;
    for (let i = 0; i < 500; i++) fanout.send(APP, line(`burst ${i}`));
    // Not a request per line: every line of the burst, in one batch, once.
    await until('the burst', () => fanout.stats().p0!.sent === 500);
    expect(peer.batches()).toHaveLength(2);
    expect(peer.batches()[1]!.lines).toHaveLength(500);
    // A line that could not pass a peer's schema stays here instead of spoiling a batch.
    fanout.send('not-a-uuid', line('local only'));
    fanout.forget(APP);
    await until('the forget', () => peer.batches().length === 3);
    expect(peer.batches()[2]).toEqual({ lines: [], forget: [APP] });
  });
});

describe('catching an app up', () => {
  const page = (lines: StoredLine[]) => JSON.stringify({ lines, more: false });

  it('merges a peer\'s lines on first use; a catch-up in the settling time after start does not count as done', async () => {
    const stored = [line('one'), line('two')];
    const peer = new Peer(await freePort(), (_req, _body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(page(stored)));
    await peer.start();
    cleanup.push(() => peer.stop());
    let now = 1000;
    const merged: string[][] = [];
    const catchUp = new LogCatchUp(
      { peers: peersOf(peer), servers: async () => [{ id: 'p0', name: 'p0', url: peer.url }], merge: (_app, lines) => merged.push(lines.map((l) => l.message)), log },
      { settleMs: 500, now: () => now },
    );
    await Promise.all([catchUp.ensure(APP), catchUp.ensure(APP)]);
    expect(peer.requests).toHaveLength(1);
    expect(peer.requests[0]!.url).toBe(`/internal/log-lines?app=${APP}`);
    expect(merged).toEqual([['one', 'two']]);
    // Too soon after start: peers may not have known this server yet, so the next read asks again.
    await catchUp.ensure(APP);
    expect(peer.requests).toHaveLength(2);
    now += 1000;
    await catchUp.ensure(APP);
    await catchUp.ensure(APP);
    expect(peer.requests).toHaveLength(3);
  });

  it('takes nothing from a peer whose answer does not hold together, and asks the next', async () => {
    const [a, b] = [line('a'), line('b')];
    const liar = new Peer(await freePort(), (_req, _body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(page([b, a])));
    const honest = new Peer(await freePort(), (_req, _body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(page([a, b])));
    await liar.start();
    await honest.start();
    cleanup.push(() => liar.stop(), () => honest.stop());
    const merged: string[][] = [];
    const catchUp = new LogCatchUp(
      { peers: peersOf(liar, honest), servers: async () => [liar, honest].map((p, i) => ({ id: `p${i}`, name: `p${i}`, url: p.url })), merge: (_app, lines) => merged.push(lines.map((l) => l.message)), log },
      { settleMs: 0 },
    );
    await catchUp.ensure(APP);
    expect(merged).toEqual([['a', 'b']]);
    expect(liar.requests).toHaveLength(1);
    expect(honest.requests).toHaveLength(1);
  });
});

describe('line ids and the line table', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-log-ids-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives strictly increasing ids from one origin, even when its clock stands still or steps back', () => {
    const clock = [5000, 5000, 4000, 5001];
    const gen = new LineIds(() => clock.shift() ?? 5001);
    const got = [gen.next(), gen.next(), gen.next(), gen.next()];
    expect([...got].sort()).toEqual(got);
    expect(new Set(got).size).toBe(4);
    for (const id of got) expect(id).toMatch(LINE_ID);
  });

  it('opens a log database from before line ids: its lines keep their order, before every new line', () => {
    const path = join(dir, 'old.db');
    const raw = new Database(path);
    raw.exec('CREATE TABLE lines (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, time TEXT NOT NULL, source TEXT NOT NULL, dyno TEXT NOT NULL, message TEXT NOT NULL); CREATE INDEX lines_app ON lines (app, id);');
    for (const m of ['old 1', 'old 2']) raw.prepare("INSERT INTO lines (app, time, source, dyno, message) VALUES ('x', '2024-01-01T00:00:00Z', 'app', 'web.1', ?)").run(m);
    raw.close();
    const lines = new SqliteLogStore({ path });
    lines.append('x', line('new'));
    expect(lines.recent('x', 10).map((l) => l.message)).toEqual(['old 1', 'old 2', 'new']);
    const page = lines.page('x', 10);
    expect(page.map((l) => l.id.slice(0, 2))).toEqual(['00', '00', '01']);
    for (const l of page) expect(l.id).toMatch(LINE_ID);
    // Merging them again (a peer's copy) adds nothing.
    expect(lines.merge(page.map((l) => ({ app: 'x', line: l })))).toEqual([]);
    lines.close();
  });
});
