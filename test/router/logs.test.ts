import { readFileSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { apiHarness, type Harness } from '../controller/harness.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, workers, startRouter, type SuiteRouter } from './client.js';

let h: Harness;
let suite: SuiteRouter;
let dir: string;
let port: number;
const servers: Server[] = [];
const ids: Record<string, string> = {};
const lines: { app: string; source: string; dyno: string; message: string }[] = [];

const get = (host: string, path = '/', headers: Record<string, string> = {}): ReturnType<typeof call> => call({ port, host, path, headers });
/** The app's router lines, as `berth logs` would show their messages. */
const logOf = (app: string): string[] => lines.filter((l) => l.app === ids[app]).map((l) => l.message);
const conf = (): string => readFileSync(join(dir, 'nginx.conf'), 'utf8');

beforeAll(async () => {
  h = await apiHarness();
  for (const name of ['shop', 'idle', 'crashy']) ids[name] = (await h.call(h.tokens.alice, 'POST', '/apps', { name })).body.id as string;
  suite = await startRouter({ store: h.store, id: 'logs', upstreams: servers, appLog: (app, source, dyno, message) => lines.push({ app, source, dyno, message }) });
  ({ dir, httpPort: port } = suite);
  const [a, b] = [await dyno('web.1', servers), await dyno('web.2', servers)];
  // The dyno names come from the unit in the key: <app>.<type>.<n>@v<release>[-<restart>].
  await h.store.put('/berth/services/shop/shop.web.1@v3', a.endpoint);
  await h.store.put('/berth/services/shop/shop.web.2@v3-1', b.endpoint);
  await h.store.put('/berth/services/crashy/crashy.web.1@v1', `127.0.0.1:${await freePort()}`);
  await until('shop.berth.test answering', async () => (await get('shop.berth.test')).status === 200);
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await h?.close();
});

describe('router logs (real nginx)', () => {
  it("logs every request to the app's stream in Heroku's router format, naming the dyno that served it", async () => {
    const served: string[] = [];
    for (let i = 0; i < 12; i++) served.push((JSON.parse((await get('shop.berth.test', `/hello?i=${i}`, { 'x-request-id': `req-${i}` })).body) as { dyno: string }).dyno);
    const hello = (): string[] => logOf('shop').filter((l) => l.includes('path="/hello'));
    await until('12 log lines', () => hello().length === 12);
    expect(lines.every((l) => l.source === 'berth' && l.dyno === 'router')).toBe(true);
    const log = hello();
    for (let i = 0; i < 12; i++) {
      expect(log[i]).toMatch(new RegExp(`^at=info method=GET path="/hello\\?i=${i}" host=shop\\.berth\\.test request_id=req-${i} fwd="127\\.0\\.0\\.1" dyno=${served[i]?.replace('.', '\\.') ?? ''} connect=\\d+ms service=\\d+ms status=200 bytes=\\d+ protocol=http$`));
    }
    expect(new Set(served)).toEqual(new Set(['web.1', 'web.2']));
  });

  it('logs H14 for an app with no web dynos and H10 when no dyno accepts the connection', async () => {
    expect((await get('idle.berth.test')).status).toBe(503);
    expect((await get('crashy.berth.test')).status).toBe(502);
    await until('the H14 and H10 lines', () => logOf('idle').length === 1 && logOf('crashy').length === 1);
    expect(logOf('idle')[0]).toMatch(/^at=error code=H14 desc="No web processes running" method=GET path="\/" host=idle\.berth\.test request_id=[0-9a-f]{32} fwd="127\.0\.0\.1" dyno= connect= service= status=503 bytes=\d+ protocol=http$/);
    expect(logOf('crashy')[0]).toMatch(/^at=error code=H10 desc="App crashed" .* dyno=web\.1 connect= service=\d+ms status=502 /);
  });

  it('keeps the access log where dynos cannot read or forge it', () => {
    expect(statSync(join(dir, 'logs')).mode & 0o777).toBe(0o700);
    expect(conf()).toContain(`access_log "${join(dir, 'logs', 'router.log')}" berth_router buffer=64k flush=200ms;`);
  });
});

describe('router settings applied (real nginx)', () => {
  it('refuses a 2 MB body with 413 once body_size is 1m', async () => {
    const body = Buffer.alloc(2 * 1024 * 1024, 'x');
    const post = (): ReturnType<typeof call> => call({ port, host: 'shop.berth.test', method: 'POST', path: '/upload', body, headers: { 'content-type': 'application/octet-stream' } });
    const accepted = await post();
    expect(accepted.status).toBe(200);
    expect((JSON.parse(accepted.body) as { size: number }).size).toBe(body.length);
    const before = workers(dir);
    expect((await h.call(h.tokens.admin, 'PATCH', '/berth/router', { body_size: '1m' })).status).toBe(200);
    await afterReload(dir, before);
    expect(conf()).toContain('client_max_body_size 1m;');
    expect((await post()).status).toBe(413);
    await until('the 413 line', () => logOf('shop').some((l) => / path="\/upload" .* status=413 /.test(l)));
  });

  it('answers 504 and logs H12 when a dyno outlasts read_timeout', async () => {
    const before = workers(dir);
    expect((await h.call(h.tokens.admin, 'PATCH', '/berth/router', { read_timeout: '1s', worker_connections: '1024' })).status).toBe(200);
    await afterReload(dir, before);
    expect(conf()).toMatch(/worker_connections 1024;[\s\S]*proxy_read_timeout 1s;/);
    expect((await get('shop.berth.test', '/slow')).status).toBe(504);
    await until('the H12 line', () => logOf('shop').some((l) => l.includes('path="/slow"')));
    expect(logOf('shop').find((l) => l.includes('path="/slow"'))).toMatch(/^at=error code=H12 desc="Request timeout" method=GET path="\/slow" .* dyno=web\.\d connect=\d+ms service=\d{4}ms status=504 /);
    const again = workers(dir);
    await h.call(h.tokens.admin, 'PATCH', '/berth/router', { body_size: null, read_timeout: null, worker_connections: null });
    await afterReload(dir, again);
    expect(conf()).toContain('proxy_read_timeout 30s;');
  }, 20_000);
});

describe('websockets through the router (real nginx)', () => {
  it('upgrades and echoes, and logs the 101', async () => {
    const wsPort = await freePort();
    const wss = new WebSocketServer({ host: '127.0.0.1', port: wsPort });
    wss.on('connection', (socket, req) => socket.on('message', (data) => socket.send(`${String(req.headers['x-forwarded-proto'])}:${String(data)}`)));
    await new Promise((r) => wss.once('listening', r));
    await h.store.put('/berth/services/idle/idle.web.1@v1', `127.0.0.1:${wsPort}`);
    await until('idle.berth.test routed', async () => (await get('idle.berth.test')).status !== 503);
    const client = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host: 'idle.berth.test' } });
    await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
    const echoes: string[] = [];
    client.on('message', (d) => echoes.push(String(d)));
    for (const m of ['hello', 'through', 'nginx']) client.send(m);
    await until('three echoes', () => echoes.length === 3);
    expect(echoes).toEqual(['http:hello', 'http:through', 'http:nginx']);
    client.close();
    await new Promise((r) => client.once('close', r));
    await until('the 101 line', () => logOf('idle').some((l) => l.includes('path="/chat"')));
    expect(logOf('idle').find((l) => l.includes('path="/chat"'))).toMatch(/^at=info method=GET path="\/chat" host=idle\.berth\.test .* dyno=web\.1 .* status=101 /);
    await new Promise((r) => wss.close(r));
  });
});
