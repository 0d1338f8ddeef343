import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogRateLimiter } from '../../src/agent/log-limiter.js';
import { ControllerLink } from '../../src/agent/remote.js';
import { SyslogSender } from '../../src/controller/drains/syslog.js';
import { LineIds } from '../../src/controller/logs/ids.js';
import { LogFanout } from '../../src/controller/logs/fanout.js';
import { sanitizeMessage } from '../../src/controller/logs/sanitize.js';
import { formatLogLine, LogHub, SqliteLogStore } from '../../src/controller/services/logs.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { apiHarness, type Harness } from './harness.js';

const log = createLogger('test', { level: 'silent' });
const L10 = /^Error L10 \(output buffer overflow\): (\d+) messages dropped since (\S+)\.$/;
const L11 = /Error L11 \(Tail buffer overflow\): (\d+) messages dropped since (\S+)\./;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the per-app rate of log lines', () => {
  it('lets a burst through, drops past it, says how many once per period, and refills at the rate', async () => {
    let now = Date.parse('2026-01-01T00:00:00.000Z');
    const notices: [string, string][] = [];
    const limiter = new LogRateLimiter({ linesPerSecond: 10, burst: 5, noticeMs: 20 }, (app, m) => notices.push([app, m]), () => now);
    const admitted = Array.from({ length: 8 }, () => limiter.admit('a'));
    expect(admitted).toEqual([true, true, true, true, true, false, false, false]);
    // Another app has a bucket of its own.
    expect(limiter.admit('b')).toBe(true);
    expect(limiter.pending()).toEqual({ a: 3 });
    await until('the notice', () => notices.length > 0, 2000);
    expect(notices).toEqual([['a', 'Error L10 (output buffer overflow): 3 messages dropped since 2026-01-01T00:00:00.000Z.']]);
    now += 100; // one line's worth at 10/s
    expect([limiter.admit('a'), limiter.admit('a')]).toEqual([true, false]);
    limiter.close();
    // Closing says what was still pending, then limits nothing.
    expect(notices.at(-1)?.[1]).toMatch(/: 1 messages dropped since 2026-01-01T00:00:00\.100Z\.$/);
    expect(limiter.admit('a')).toBe(true);
  });

  describe('where lines enter a server (LogHub)', () => {
    let store: Store;
    beforeAll(() => {
      store = openStore('memory://');
    });
    afterAll(() => store.close());

    it("keeps the burst of the app's output, drops the rest with one berth[logplex] L10 line; platform lines are never dropped, router lines have their own budget", async () => {
      const hub = new LogHub(store, undefined, { rate: { linesPerSecond: 1, burst: 100, noticeMs: 30 } });
      const before = Date.now();
      const kept = (n: number, line: { source: string; dyno: string }): number => Array.from({ length: n }, (_, i) => hub.append('flood', { ...line, message: `line ${i}` })).filter(Boolean).length;
      // append says which lines it kept, so a dyno's reader can slow down.
      expect(kept(300, { source: 'app', dyno: 'web.1' })).toBe(100);
      // During the flood, what the platform says about the app still gets through (Heroku's
      // Logplex limits the app's output, not its own lines) ...
      expect(hub.append('flood', { source: 'berth', dyno: 'web.1', message: 'State changed from up to crashed' })).toBe(true);
      expect(hub.append('flood', { source: 'app', dyno: 'api', message: 'Release v2 created by user a@example.com' })).toBe(true);
      // ... and router lines, which traffic drives, have a budget of their own, untouched by it.
      expect(kept(150, { source: 'berth', dyno: 'router' })).toBe(100);
      hub.append('calm', { source: 'app', dyno: 'web.1', message: 'another app is not limited by it' });
      await until('the L10 lines', () => hub.recent('flood', 5, { dyno: 'logplex' }).length === 2, 2000);
      const lines = hub.recent('flood', 1500);
      expect(lines.filter((l) => l.source === 'app' && l.dyno === 'web.1')).toHaveLength(100);
      expect(lines.filter((l) => l.dyno === 'web.1').at(99)?.message).toBe('line 99');
      expect(lines.map((l) => l.message)).toEqual(expect.arrayContaining(['State changed from up to crashed', 'Release v2 created by user a@example.com']));
      const notices = lines.filter((l) => l.dyno === 'logplex');
      for (const n of notices) expect(n).toMatchObject({ source: 'berth', dyno: 'logplex' });
      const counts = notices.map((n) => L10.exec(n.message) ?? []);
      expect(counts.map(([, dropped]) => Number(dropped)).sort((a, b) => a - b)).toEqual([50, 200]);
      for (const [, , since] of counts) expect(Date.parse(since!)).toBeGreaterThanOrEqual(before - 1);
      expect(hub.recent('calm', 5)).toHaveLength(1);
      hub.close();
    });

    it('defaults to a burst of 1,000 lines', () => {
      const hub = new LogHub(store);
      for (let i = 0; i < 1500; i++) hub.append('default', { source: 'app', dyno: 'web.1', message: `line ${i}` });
      // 1,000 at once, and the few the rate refilled while the loop ran.
      expect(hub.recent('default', 1500).length).toBeGreaterThanOrEqual(1000);
      expect(hub.recent('default', 1500).length).toBeLessThan(1100);
      hub.close();
    });
  });

  it("drops an agent machine's flood before it is sent (ControllerLink), with the L10 line", async () => {
    const got: { app_id: string; source: string; dyno: string; message: string }[] = [];
    const server: HttpServer = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.url === '/internal/logs') got.push(...(JSON.parse(body) as { lines: typeof got }).lines);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const link = new ControllerLink(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 'token', log, { linesPerSecond: 1, burst: 100, noticeMs: 20 });
    try {
      for (let i = 0; i < 5000; i++) link.appLog('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', 'app', 'web.1', `line ${i}`);
      // The platform's lines during the flood still go, and router lines have their own budget.
      link.appLog('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', 'berth', 'web.1', 'State changed from up to crashed');
      link.appLog('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', 'berth', 'router', 'at=info method=GET path="/"');
      await sleep(60);
      await link.flush();
      expect(got.filter((l) => l.source === 'app')).toHaveLength(100);
      expect(got.map((l) => `${l.dyno} ${l.message}`)).toEqual(expect.arrayContaining(['web.1 State changed from up to crashed', 'router at=info method=GET path="/"']));
      const notice = got.find((l) => l.dyno === 'logplex');
      expect(notice).toMatchObject({ source: 'berth', dyno: 'logplex' });
      expect(L10.exec(notice!.message)?.[1]).toBe('4900');
    } finally {
      await link.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('a line cannot forge another', () => {
  const FORGED = 'hi\r2026-01-01T00:00:00Z heroku[router]: at=info method=GET path="/admin"';

  it('makes CR, LF, other C0 controls, DEL, C1 and cursor escapes visible; keeps tabs and colours', () => {
    expect(sanitizeMessage(FORGED)).toBe('hi\u240d2026-01-01T00:00:00Z heroku[router]: at=info method=GET path="/admin"');
    expect(sanitizeMessage('a\nb\x00c\x7fd\u009be')).toBe('a\u240ab\u2400c\u2421d\ufffde');
    expect(sanitizeMessage('col1\tcol2 \x1b[1;31mred\x1b[0m')).toBe('col1\tcol2 \x1b[1;31mred\x1b[0m');
    // Cursor moves and erases could rewrite the prefix on a terminal.
    expect(sanitizeMessage('\x1b[2K\x1b[1Gfake')).toBe('\u241b[2K\u241b[1Gfake');
    expect(sanitizeMessage('\x1b]0;title\x07')).toBe('\u241b]0;title\u2407');
    const plain = 'nothing to do here';
    expect(sanitizeMessage(plain)).toBe(plain);
  });

  describe('through the API', () => {
    let h: Harness;
    let appId: string;
    beforeAll(async () => {
      h = await apiHarness();
      appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'forger' })).body.id as string;
    });
    afterAll(() => h.close());

    it('shows a dyno line with a carriage return as one line under the platform prefix, plain and as SSE', async () => {
      h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: FORGED });
      // An agent's batch names its time: one that is not a time is replaced, not shown.
      h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: 'late', time: '2026-01-01T00:00:00Z\rberth[router]: x' });
      // Kept made safe, so what drains and other servers get is safe too.
      expect(h.services.logs.recent(appId, 5, { dyno: 'web.1' }).map((l) => l.message)[0]).toBe(sanitizeMessage(FORGED));
      const session = await h.call(h.tokens.alice, 'POST', '/apps/forger/log-sessions', { lines: 10, dyno: 'web.1' });
      const url = new URL(session.body.logplex_url as string).pathname;
      const plain = (await h.call(undefined, 'GET', url)).body as string;
      expect(plain.split(/\r\n|\r|\n/).filter(Boolean)).toHaveLength(2);
      for (const line of plain.trim().split('\n')) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z app\[web\.1\]: /);
      expect(plain).toContain('app[web.1]: hi\u240d2026-01-01T00:00:00Z heroku[router]');
      const sse = (await h.call(undefined, 'GET', url, undefined, { accept: 'text/event-stream' })).body as string;
      expect(sse.split(/\r\n|\r|\n/).filter((l) => l !== '' && !l.startsWith('retry:')).every((l) => /^data: \S+Z app\[web\.1\]: /.test(l))).toBe(true);
    });

    it('makes a line kept from before (raw in the store) safe when shown', () => {
      expect(formatLogLine({ time: 't', source: 'app', dyno: 'web.1', message: 'a\rb' })).toBe('t app[web.1]: a\u240db');
    });
  });
});

/** A raw HTTP client that reads nothing until told: the stalled tail. */
async function stalledGet(port: number, path: string): Promise<{ socket: Socket; received: () => string; resume: () => void }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await until('the headers', () => text.includes('\r\n\r\n'), 5000);
  socket.pause();
  return { socket, received: () => text, resume: () => socket.resume() };
}

describe('backpressure', () => {
  let h: Harness;
  let appId: string;
  let port: number;
  beforeAll(async () => {
    h = await apiHarness();
    appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'slow-reader' })).body.id as string;
    await h.api.listen({ host: '127.0.0.1', port: 0 });
    port = (h.api.server.address() as { port: number }).port;
  });
  afterAll(() => h.close());

  it('a tail that stops reading holds a bounded amount: lines past it are dropped, and an L11 line says how many', async () => {
    const session = await h.call(h.tokens.alice, 'POST', '/apps/slow-reader/log-sessions', { lines: 0, tail: true });
    const client = await stalledGet(port, new URL(session.body.logplex_url as string).pathname);
    try {
      // 900 lines of 32 KiB (within the app's burst of 1,000): 28 MiB, far past what a tail may hold.
      const body = 'x'.repeat(32 * 1024);
      for (let i = 0; i < 900; i++) h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: `${String(i).padStart(4, '0')} ${body}` });
      await sleep(200);
      client.resume();
      const text = await until('the L11 line', () => (L11.test(client.received()) ? client.received() : undefined), 20_000);
      const shown = [...text.matchAll(/app\[web\.1\]: (\d{4}) x+/g)].map((m) => Number(m[1]));
      const dropped = Number(L11.exec(text)?.[1]);
      // Every line either reached the client, in order, or was counted as dropped.
      expect(shown.length + dropped).toBe(900);
      expect(shown).toEqual([...shown].sort((a, b) => a - b));
      // What got through is what the kernel's socket buffers and the tail's 1 MiB held, no more.
      expect(shown.length * 32 * 1024).toBeLessThan(12 * 1024 * 1024);
      expect(dropped).toBeGreaterThan(500);
      // A line written after the client caught up arrives as usual.
      h.services.logs.append(appId, { source: 'app', dyno: 'web.2', message: 'after the gap' });
      await until('the next line', () => client.received().includes('app[web.2]: after the gap'), 5000);
    } finally {
      client.socket.destroy();
    }
  }, 30_000);

  it('a drain that stops reading holds a bounded queue; the oldest go, and an L10 frame tells the drain', async () => {
    const frames: string[] = [];
    let peer: Socket | undefined;
    let buf = '';
    const server: Server = createServer((socket) => {
      peer = socket;
      socket.pause();
      socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (;;) {
          const space = buf.indexOf(' ');
          const len = Number(buf.slice(0, space));
          if (space < 0 || buf.length < space + 1 + len) break;
          frames.push(buf.slice(space + 1, space + 1 + len));
          buf = buf.slice(space + 1 + len);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const frame = (m: string): string => `${Buffer.byteLength(m)} ${m}`;
    const sender = new SyslogSender({ host: '127.0.0.1', port: (server.address() as { port: number }).port, log, allowInternal: true, queueBytes: 256 * 1024, queueMax: 100_000, notice: (m) => frame(`notice ${m}`) });
    try {
      await until('connected', () => sender.stats().connected && peer, 5000);
      const body = 'y'.repeat(16 * 1024);
      for (let i = 0; i < 2000; i++) sender.send(frame(`${String(i).padStart(4, '0')} ${body}`));
      const { queued, dropped } = sender.stats();
      expect(queued * 16 * 1024).toBeLessThanOrEqual(256 * 1024 + 16 * 1024 + 64);
      expect(dropped).toBeGreaterThan(1000);
      peer!.resume();
      await until('the queue written out', () => frames.length > 0 && sender.stats().queued === 0 && frames.at(-1)?.startsWith('1999 '), 10_000);
      const notice = frames.find((f) => f.startsWith('notice '));
      expect(L10.exec(notice!.slice('notice '.length))?.[1]).toBe(String(dropped));
      const numbers = frames.filter((f) => !f.startsWith('notice ')).map((f) => Number(f.slice(0, 4)));
      expect(numbers.length + dropped).toBe(2000);
      // The notice sits where the gap is: after what was written before the drops, before what was kept.
      const at = frames.indexOf(notice!);
      expect(Number(frames[at + 1]?.slice(0, 4)) - Number(frames[at - 1]?.slice(0, 4) ?? -1)).toBeGreaterThan(1);
    } finally {
      sender.close();
      await new Promise((r) => server.close(r));
    }
  });
});

it('a server that is down holds at most queueBytes of lines for it in the fan-out, whatever their number', async () => {
  // Nothing listens there: every send fails and the queue is all that grows.
  const peers = { self: 'me', servers: async () => [{ id: 'p0', name: 'p0', url: 'http://127.0.0.1:9' }], headers: () => ({}) };
  const fanout = new LogFanout(peers, log, { intervalMs: 10, queueMax: 20_000, queueBytes: 1024 * 1024, refreshMs: 60_000, minBackoffMs: 10_000 });
  try {
    await until('the peer list', () => Object.keys(fanout.stats()).length === 1, 5000);
    const ids = new LineIds();
    const body = 'z'.repeat(60 * 1024);
    for (let i = 0; i < 200; i++) fanout.send('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', { id: ids.next(), time: new Date().toISOString(), source: 'app', dyno: 'web.1', message: body });
    await until('the lines queued', () => fanout.stats().p0!.queued + fanout.stats().p0!.dropped === 200, 5000);
    // 12 MB sent, 1 MiB held (about 17 lines of 60 KiB): the rest dropped, counted.
    expect(fanout.stats().p0!.queued).toBeLessThanOrEqual(18);
    expect(fanout.stats().p0!.dropped).toBeGreaterThanOrEqual(182);
  } finally {
    fanout.close();
  }
});

it('writes lines to the log database off the per-line path: queued, then committed together per interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-log-batch-'));
  const path = join(dir, 'logs.db');
  const lines = new SqliteLogStore({ path, flushMs: 100 });
  const other = new Database(path, { readonly: true });
  try {
    const ids = new LineIds();
    for (let i = 0; i < 1000; i++) lines.append('app', { id: ids.next(), time: new Date().toISOString(), source: 'app', dyno: 'web.1', message: `line ${i}` });
    // Nothing committed by the appends themselves (another connection sees no row yet) ...
    expect(other.prepare('SELECT count(*) AS n FROM lines').get()).toEqual({ n: 0 });
    // ... all of them once the interval's one commit ran.
    await until('the commit', () => (other.prepare('SELECT count(*) AS n FROM lines').get() as { n: number }).n === 1000, 5000);
  } finally {
    other.close();
    lines.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("a stalled drain gets an L10 line from berth[logplex] in its own syslog shape once it reads again", async () => {
  const h = await apiHarness();
  let peer: Socket | undefined;
  let buf = '';
  const server: Server = createServer((socket) => {
    peer = socket;
    socket.pause();
    socket.on('data', (d: Buffer) => (buf += d.toString('latin1')));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await h.services.drainForwarder.start();
    const appId = (await h.call(h.tokens.admin, 'POST', '/apps', { name: 'drain-stall' })).body.id as string;
    const port = (server.address() as { port: number }).port;
    expect((await h.call(h.tokens.admin, 'POST', '/apps/drain-stall/log-drains', { url: `syslog://127.0.0.1:${port}` })).status).toBe(201);
    await until('connected', () => peer, 5000);
    // 900 lines of 32 KiB: 28 MiB, against 4 MiB of queue and the kernel's buffers.
    const body = 'w'.repeat(32 * 1024);
    for (let i = 0; i < 900; i++) h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: `${i} ${body}` });
    await sleep(100);
    peer!.resume();
    await until('the L10 frame', () => / berth logplex - - Error L10 \(output buffer overflow\): \d+ messages dropped since \S+\./.test(buf), 10_000);
  } finally {
    peer?.destroy();
    await h.close();
    await new Promise((r) => server.close(r));
  }
});
