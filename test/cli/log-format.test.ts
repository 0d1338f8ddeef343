import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { startController } from '../../src/controller/index.js';
import { Users } from '../../src/controller/services/users.js';
import { createLogger, logFormat, prettyLine } from '../../src/domain/log.js';
import { openStore } from '../../src/store/index.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { removeNetwork } from '../support/network.js';
import { freePort } from '../support/ports.js';

// A network of this file's own: testNetwork()'s names repeat across vitest runs side by side.
const NET = ['--network-name', 'btlf', '--overlay', '10.237.0.0/16', '--backend', 'host-gw'];

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  return { stream: new Writable({ write: (c: Buffer, _e, done) => ((text += c.toString()), done()) }), text: () => text };
}

describe('log format', () => {
  it('is pretty on a terminal and JSON otherwise, unless --log-format says which', () => {
    expect(logFormat(undefined, true)).toBe('pretty');
    expect(logFormat(undefined, false)).toBe('json');
    expect(logFormat(undefined, undefined)).toBe('json');
    expect(logFormat('json', true)).toBe('json');
    expect(logFormat('pretty', false)).toBe('pretty');
    expect(() => logFormat('xml', true)).toThrow(/pretty or json/);
  });

  it('prints one readable line per entry, with its fields, and cannot be forged by a value', () => {
    const out = sink();
    const log = createLogger('berth', { destination: out.stream, format: 'pretty' }).child({ component: 'router' });
    log.info({ app: 'web-1', port: 5000 }, 'dyno up');
    log.warn({ app: 'evil\n12:00:00.000 INFO  berth: forged\x1b[2J' }, 'tenant\rvalue');
    log.error({ err: new Error('boom') }, 'failed');
    const lines = out.text().split('\n');
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}berth: dyno up component=router app=web-1 port=5000$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}berth: tenant\\x0dvalue component=router app=/);
    expect(out.text()).not.toContain(String.fromCharCode(27));
    expect(out.text()).not.toMatch(/\r|^12:00:00\.000/m);
    expect(lines[2]).toMatch(/ERROR berth: failed component=router$/);
    expect(lines[3]).toMatch(/^ {4}Error: boom$/);
    expect(prettyLine('not json')).toBe('not json');
  });
});

describe('API request logging', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-logfmt-'));
  let berth: BerthProcess | undefined;
  afterAll(async () => {
    await berth?.stop();
  await removeNetwork('btlf');
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps per-request lines out of info (they are debug)', async () => {
    for (const level of ['info', 'debug']) {
      const out = sink();
      const store = openStore('memory://');
      const port = await freePort();
      const controller = await startController({ store, log: createLogger('test', { level, destination: out.stream }), host: '127.0.0.1', port, settings: { domain: 'berth.test', apiUrl: `http://127.0.0.1:${port}` } });
      const token = (await new Users(store).create('root@example.com', { admin: true })).token;
      const headers = { authorization: `Bearer ${token}`, accept: 'application/vnd.heroku+json; version=3' };
      expect((await fetch(`${controller.url}/account`, { headers })).status).toBe(200);
      await controller.close();
      await store.close();
      const seen = out.text();
      if (level === 'info') expect(seen).not.toMatch(/incoming request|request completed/);
      else expect(seen).toMatch(/"level":20[^\n]*"msg":"request completed"/);
    }
  });

  it('berth up --log-format pretty prints readable lines', async () => {
    berth = await startBerth(['--data-dir', join(dir, 'data'), '--no-agent', ...NET, '--log-format', 'pretty']);
    expect(berth.stderr()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}berth: berth is up/m);
    expect(berth.stderr()).not.toMatch(/"level":/);
  }, 60_000);
});
