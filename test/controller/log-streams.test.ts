import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRuntime } from '../../src/agent/index.js';
import { ControllerLink } from '../../src/agent/remote.js';
import { buildApi, createServices } from '../../src/controller/index.js';
import { sanitizeMessage } from '../../src/controller/logs/sanitize.js';
import { TailWriter } from '../../src/controller/logs/tail.js';
import { createOneOffDynos } from '../../src/controller/one-off/index.js';
import { formatLogLine, LogHub } from '../../src/controller/services/logs.js';
import { MAX_MESSAGE } from '../../src/controller/logs/wire.js';
import { createLogger, prettyLine } from '../../src/domain/log.js';
import { LoopbackNetwork } from '../../src/network/loopback.js';
import { openStore } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { Cluster } from '../control-loops/harness.js';
import { apiHarness, type Harness } from './harness.js';

const log = createLogger('test', { level: 'silent' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const KiB = 1024;
const MiB = 1024 * KiB;

/** A client that never reads: its writes are taken into a small buffer and never let go. */
function stuckSink(): Writable & { taken: number } {
  const sink = Object.assign(
    new Writable({
      highWaterMark: 16 * KiB,
      write(chunk: Buffer, _enc, _done) {
        sink.taken += chunk.length;
        // `_done` never called: the stream stays full, as a socket whose peer reads nothing.
      },
    }),
    { taken: 0 },
  );
  return sink;
}

describe('a log tail (TailWriter)', () => {
  const notice = (m: string): string => `NOTICE ${m}\n`;

  it('sends only the newest initial lines that fit in maxBytes, however many were asked for', async () => {
    let written = 0;
    const sink = new Writable({ highWaterMark: 16 * KiB, write: (c: Buffer, _e, done) => ((written += c.length), setImmediate(done)) });
    const out = new TailWriter(sink, { notice, maxBytes: 256 * KiB });
    // 1,500 lines of 64 KiB: what a session may ask for, 96 MB.
    out.start(Array.from({ length: 1500 }, (_, i) => `${String(i).padStart(4, '0')} ${'x'.repeat(64 * KiB - 6)}\n`));
    expect(out.stats().held).toBeLessThanOrEqual(256 * KiB + 64 * KiB);
    out.end();
    await until('written', () => sink.writableFinished, 10_000);
    expect(written).toBeLessThanOrEqual(256 * KiB + 200);
  });

  it('writes the kept lines in order, the notice first', async () => {
    const got: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, done) => (got.push(c.toString()), done()) });
    const out = new TailWriter(sink, { notice, maxBytes: 10 * 100 });
    out.start(Array.from({ length: 50 }, (_, i) => `${String(i).padStart(2, '0')}${'y'.repeat(97)}\n`));
    out.end();
    await until('written', () => sink.writableFinished, 2000);
    expect(got[0]).toBe('NOTICE 40 older lines left out: a log session sends at most 1 KiB of recent lines.\n');
    expect(got.slice(1).map((l) => Number(l.slice(0, 2)))).toEqual([40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
  });

  it('lets go of a client that has not drained for stallMs', async () => {
    const sink = stuckSink();
    const out = new TailWriter(sink, { notice, stallMs: 200 });
    out.start(['z'.repeat(64 * KiB)]);
    expect(sink.destroyed).toBe(false);
    await until('destroyed and closed', () => sink.closed, 5000);
    // Let go: nothing more is held for it.
    const held = out.stats().held;
    out.push('more');
    expect(out.stats().held).toBe(held);
  });
});

/** A raw HTTP client that reads nothing past the headers until told. */
async function stalledGet(port: number, path: string): Promise<{ socket: Socket; received: () => string; closed: () => boolean }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  let text = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('close', () => (closed = true));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await until('the headers', () => text.includes('\r\n\r\n'), 5000);
  socket.pause();
  return { socket, received: () => text, closed: () => closed };
}

describe('log streams a tenant opens', () => {
  let h: Harness;
  let appId: string;
  let port: number;
  beforeAll(async () => {
    h = await apiHarness();
    appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'many-tails' })).body.id as string;
    await h.api.listen({ host: '127.0.0.1', port: 0 });
    port = (h.api.server.address() as { port: number }).port;
    // 200 lines of 60 KiB (12 MB), within the app's burst: what each stream's backlog may ask for.
    const body = 'x'.repeat(60 * KiB);
    for (let i = 0; i < 200; i++) h.services.logs.append(appId, { source: 'app', dyno: 'web.1', message: `${String(i).padStart(4, '0')} ${body}` });
  });
  afterAll(() => h.close());

  const session = async (): Promise<string> => new URL((await h.call(h.tokens.alice, 'POST', '/apps/many-tails/log-sessions', { lines: 1500, tail: true })).body.logplex_url as string).pathname;

  it('holds at most 10 open per app (429 past it), one per session URL, and sends each only the newest MiB', async () => {
    const paths = await Promise.all(Array.from({ length: 10 }, () => session()));
    const clients: Awaited<ReturnType<typeof stalledGet>>[] = [];
    for (const p of paths) clients.push(await stalledGet(port, p));
    try {
      const refused = await fetch(`http://127.0.0.1:${port}${await session()}`);
      expect(refused.status).toBe(429);
      expect(await refused.json()).toEqual({ id: 'rate_limit', message: expect.stringContaining('10 log streams open') });

      // The same URL opened again takes the place of the stream it had: the old one is closed.
      const again = await stalledGet(port, paths[0]!);
      clients.push(again);
      await until('the first stream closed', () => clients[0]!.closed(), 5000);

      // Each stream got the newest lines that fit in 1 MiB, and a line saying how many were left
      // out, never the whole 12 MB backlog.
      for (const c of clients.slice(1)) c.socket.resume();
      for (const c of clients.slice(1)) {
        const text = await until('the newest line', () => (c.received().includes('0199 xxx') ? c.received() : undefined), 10_000);
        expect(text).toMatch(/berth\[logplex\]: \d+ older lines left out: a log session sends at most 1 MiB of recent lines\./);
        expect(text.length).toBeLessThan(1.2 * MiB);
      }
    } finally {
      for (const c of clients) c.socket.destroy();
    }
    // Closed streams give their slots back.
    await until('slots free', async () => ((await fetch(`http://127.0.0.1:${port}${await session()}`, { signal: AbortSignal.timeout(2000) }).then(async (r) => (await r.body?.cancel(), r.status)).catch(() => 0)) === 200 ? true : undefined), 10_000);
  }, 60_000);

  it('holds no slot for a client that left before its stream began', async () => {
    // The route awaits the session, the user's access and a catch-up before it streams; a client
    // that hangs up meanwhile must not keep a slot. A slow catch-up (a peer far away) opens the window.
    const logs = h.services.logs;
    const catchUp = logs.catchUp.bind(logs);
    logs.catchUp = async (id: string) => (await new Promise((r) => setTimeout(r, 300)), catchUp(id));
    try {
      for (let i = 0; i < 11; i++) {
        const socket = connect(port, '127.0.0.1');
        await new Promise<void>((r) => socket.once('connect', () => r()));
        socket.write(`GET ${await session()} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
      }
      await new Promise((r) => setTimeout(r, 400));
    } finally {
      logs.catchUp = catchUp;
    }
    const r = await fetch(`http://127.0.0.1:${port}${await session()}`, { signal: AbortSignal.timeout(5000) });
    expect(r.status).toBe(200);
    await r.body?.cancel();
  }, 30_000);
});

describe('platform lines are not hidden by a line they follow', () => {
  it('ends a line that sets a style (colours, hidden text) with a reset, once', () => {
    const hidden = sanitizeMessage('now you see me \x1b[8m');
    expect(hidden).toBe('now you see me \x1b[8m\x1b[0m');
    // Shown again (formatLogLine sanitizes a kept line too), it gains nothing.
    expect(sanitizeMessage(hidden)).toBe(hidden);
    expect(sanitizeMessage('\x1b[31mred\x1b[0m')).toBe('\x1b[31mred\x1b[0m');
    expect(formatLogLine({ time: 't', source: 'app', dyno: 'web.1', message: '\x1b[30;40mblack on black' })).toBe('t app[web.1]: \x1b[30;40mblack on black\x1b[0m');
    // A line at the cap stays within it: the reset takes the place of its last characters.
    const long = sanitizeMessage(`\x1b[8m${'h'.repeat(MAX_MESSAGE)}`.slice(0, MAX_MESSAGE), MAX_MESSAGE);
    expect(long.length).toBe(MAX_MESSAGE);
    expect(long.endsWith('h\x1b[0m')).toBe(true);
  });

  it("keeps a hub's line with a style ending in a reset", () => {
    const hub = new LogHub(openStore('memory://'));
    hub.append('styled', { source: 'app', dyno: 'web.1', message: '\x1b[8m' });
    expect(hub.recent('styled', 1)[0]?.message).toBe('\x1b[8m\x1b[0m');
    hub.close();
  });

  it("escapes C1 controls in the operator's pretty log as it does C0 ones", () => {
    const line = prettyLine(JSON.stringify({ level: 30, time: 0, name: 'berth', msg: 'app \u009b2J\u0085 x' }));
    expect(line).toContain('app \\x9b2J\\x85 x');
    expect(line).not.toMatch(/[\x80-\x9f]/);
  });
});

describe('a detached one-off dyno that floods its output', () => {
  it("is told its lines were dropped (onOutput returns false), so its output is read more slowly", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-one-off-flood-'));
    const store = openStore('memory://');
    const services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test:5000' });
    const runtime = new FakeRuntime();
    const oneOff = createOneOffDynos({ services, dataDir: dir, node: 'node-1', runtime, network: new LoopbackNetwork(), slugPath: async (id) => `/nonexistent/${id}.tgz` });
    const api = buildApi(services, log, [(a) => oneOff.routes(a)]);
    try {
      const { user, token } = await services.users.create('owner@example.com');
      const app = await services.apps.create(user, 'flooder');
      await services.releases.deploy(user, await services.apps.resolve(user, 'flooder'), { id: 'slug-flooder', process_types: { worker: 'hang' }, commit: null });
      await oneOff.start();
      const res = await api.inject({ method: 'POST', url: '/apps/flooder/dynos', headers: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ command: 'hang', attach: false }) });
      expect(res.statusCode).toBe(201);
      const dyno = await until('running', () => runtime.running().find((d) => d.spec.appId === app.id), 10_000);
      // What the runtime's reader sees for each line: the app's burst is 1,000 lines.
      const answers = Array.from({ length: 1500 }, (_, i) => dyno.spec.onOutput('stdout', `line ${i}`));
      expect(answers.slice(0, 1000).every((a) => a === true)).toBe(true);
      expect(answers.slice(1100)).toContain(false);
    } finally {
      await oneOff.close();
      await api.close();
      await services.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('an agent that stops', () => {
  it("sends its dyno's pending L10 line before stop resolves, and nothing after", async () => {
    const cluster = await Cluster.start();
    try {
      const a = await cluster.agent('m1');
      await cluster.scheduler('s1');
      // 1,500 lines at once: 1,000 pass (the burst), the rest wait for the L10 line a second later.
      const app = await cluster.app('noisy', { worker: `write ${JSON.stringify('flood\n'.repeat(1500))}; hang` }, { worker: 1 });
      const output = (): number => cluster.appLines.filter((l) => l.startsWith(`${app.id} app[worker.1]: flood`)).length;
      await until('the burst', () => (output() >= 1000 ? true : undefined), 10_000);
      await a.stop();
      const atStop = cluster.appLines.length;
      expect(cluster.appLines.filter((l) => l.includes('berth[logplex]: Error L10'))).toHaveLength(1);
      await sleep(1300);
      expect(cluster.appLines.slice(atStop)).toEqual([]);
    } finally {
      await cluster.close();
    }
  }, 30_000);

  it('has its controller link send nothing once closed', async () => {
    const posted: string[] = [];
    const server: HttpServer = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        posted.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const link = new ControllerLink(`http://127.0.0.1:${(server.address() as { port: number }).port}`, 'token', log);
    try {
      link.appLog('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', 'berth', 'web.1', 'before close');
      await link.close();
      expect(posted.join('')).toContain('before close');
      // A line (an L10 timer, a late dyno line) after close: no timer, no request.
      link.appLog('0b6b7c66-1a38-4a3b-9f6c-2c2f8e6d6e5f', 'berth', 'web.1', 'after close');
      await sleep(400);
      expect(posted.join('')).not.toContain('after close');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
