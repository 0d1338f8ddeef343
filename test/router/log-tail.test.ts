import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/domain/log.js';
import { LOG_FORMAT, RouterLogTail, parseAccessLine } from '../../src/router/logs.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-log-tail-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One access line as nginx's LOG_FORMAT writes it. */
function accessLine(i: number): string {
  const fields: Record<string, string> = { app: 'id-shop', method: 'GET', path: `/é/${i}`, host: 'shop.berth.test', request_id: `r${i}`, fwd: '127.0.0.1', dyno: 'web.1', status: '200', upstream_status: '200', connect: '0.000', header: '0.001', response: '0.002', bytes: '10', protocol: 'http', code: '' };
  return `${Object.values(fields).join('\t')}\n`;
}

describe('following the access log', () => {
  it('delivers every line once, across partial writes, split characters and truncation', async () => {
    // The fixture is what nginx writes: as many tab-separated fields as the log format has.
    expect(LOG_FORMAT.split('\t')).toHaveLength(accessLine(0).split('\t').length);
    const file = join(dir, 'router.log');
    const got: string[] = [];
    const tail = new RouterLogTail({ file, appLog: (app, source, dyno, message) => got.push(`${app} ${source}[${dyno}] ${message}`), log: createLogger('test', { level: 'silent' }), pollMs: 60_000, rotateBytes: 2000 });
    tail.start();
    await tail.poll();
    // nginx opens it O_APPEND, so after a truncation its next write lands at the start.
    const fd = openSync(file, 'a');
    let pending = Buffer.alloc(0);
    for (let i = 0; i < 60; i++) {
      pending = Buffer.concat([pending, Buffer.from(accessLine(i))]);
      // Flush at odd sizes, mid-line and mid-"é", as a buffer boundary may fall.
      const cut = Math.min(pending.length, 97 + ((i * 37) % 150));
      writeSync(fd, pending.subarray(0, cut));
      pending = pending.subarray(cut);
      await tail.poll();
    }
    writeSync(fd, pending);
    await tail.close();
    closeSync(fd);
    expect(got).toHaveLength(60);
    got.forEach((l, i) => expect(l).toMatch(new RegExp(`^id-shop berth\\[router\\] at=info method=GET path="/é/${i}" .* dyno=web\\.1 connect=0ms service=2ms status=200 `)));
    expect(statSync(file).size).toBeLessThan(2000 + 400);
  });

  it('reads back what escape=json wrote: quotes, tabs and backslashes in a path stay in their field', () => {
    const line = ['id-shop', 'GET', '/a\\"b\\tc\\\\d', 'shop.berth.test', 'r1', '127.0.0.1', 'web.1', '200', '200', '0.000', '0.001', '0.002', '10', 'http', ''].join('\t');
    expect(parseAccessLine(line)).toMatchObject({ app: 'id-shop', path: '/a"b\tc\\d', dyno: 'web.1', status: '200' });
    expect(parseAccessLine('not\tours')).toBeUndefined();
  });
});
