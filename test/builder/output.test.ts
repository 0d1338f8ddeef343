import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { boundedWriter, KeptOutput, OutputGuard, StreamCap } from '../../src/builder/output.js';
import { isBerthError } from '../../src/domain/errors.js';

describe('KeptOutput', () => {
  it('keeps everything while it fits', () => {
    const k = new KeptOutput(10, 20);
    k.append('hello ');
    k.append('world\n');
    expect(k.text()).toBe('hello world\n');
    expect(k.truncated).toBe(0);
  });

  it('keeps the head and the tail of a flood, with a line saying how much went, in bounded memory', () => {
    const k = new KeptOutput(1024, 4096);
    const line = 'y\n';
    for (let i = 0; i < 500_000; i++) k.append(line);
    k.append('-----> the verdict\n');
    const text = k.text();
    expect(text.length).toBeLessThan(1024 + 4096 + 200);
    expect(text.startsWith('y\ny\n')).toBe(true);
    expect(text).toMatch(/ \.\.\. output truncated: \d+ characters not kept/);
    expect(text.endsWith('-----> the verdict\n')).toBe(true);
    expect(k.truncated).toBeGreaterThan(990_000);
  });

  it('never splits a character made of two UTF-16 units at either cut', () => {
    const k = new KeptOutput(3, 3);
    k.append('ab😀cd');
    k.append('x'.repeat(10));
    k.append('😀😀');
    const text = k.text();
    expect(text.startsWith('ab')).toBe(true);
    expect(text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });
});

describe('OutputGuard', () => {
  it('passes output until the limit, then aborts with a clear coded error and drops the rest', () => {
    const parent = new AbortController();
    const g = new OutputGuard(1024 * 1024, parent.signal);
    let got = 0;
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 100; i++) g.pass(chunk, (t) => (got += t.length));
    expect(got).toBe(1024 * 1024);
    expect(g.signal.aborted).toBe(true);
    expect(isBerthError(g.exceeded, 'build_output_exceeded')).toBe(true);
    expect(g.exceeded?.message).toBe('Build output exceeded 1 MB.');
    // The caller's own cancel still reaches the run.
    const h = new OutputGuard(10, parent.signal);
    parent.abort();
    expect(h.signal.aborted).toBe(true);
    expect(h.exceeded).toBeUndefined();
  });
});

describe('StreamCap', () => {
  it('streams up to its cap, then only the end when told the run is over', () => {
    const sent: string[] = [];
    const s = new StreamCap((t) => sent.push(t), 100, 30);
    s.write('a'.repeat(60));
    s.write('b'.repeat(60));
    for (let i = 0; i < 100; i++) s.write('c'.repeat(10));
    s.write('\nthe end\n');
    const before = sent.join('');
    expect(before.length).toBeLessThan(200);
    s.end();
    const all = sent.join('');
    expect(all).toMatch(/not streamed/);
    expect(all.endsWith('the end\n')).toBe(true);
    expect(all.length).toBeLessThan(400);
  });
});

describe('boundedWriter', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  it('queues at most its limit for a reader that stops reading, skips the rest and says so when it reads again', async () => {
    let res!: ServerResponse;
    const ready = new Promise<void>((resolve) => {
      server = createServer((_req, r) => {
        res = r;
        r.writeHead(200);
        r.flushHeaders();
        resolve();
      });
    });
    server?.listen(0, '127.0.0.1');
    await once(server as Server, 'listening');
    const port = (server?.address() as AddressInfo).port;
    const req = request({ host: '127.0.0.1', port, path: '/' });
    req.end();
    const [client] = (await once(req, 'response')) as [IncomingMessage];
    client.pause();
    await ready;
    const limit = 256 * 1024;
    const w = boundedWriter(res, limit);
    const chunk = 'z'.repeat(64 * 1024);
    let maxQueued = 0;
    // 64 MB written at a reader that reads nothing.
    for (let i = 0; i < 1024; i++) {
      w.write(chunk);
      maxQueued = Math.max(maxQueued, res.writableLength);
      if (i % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(maxQueued).toBeLessThanOrEqual(limit + chunk.length);
    expect(w.skipped()).toBeGreaterThan(50 * 1024 * 1024);
    // The reader reads again: what it gets says output was skipped.
    let body = '';
    client.setEncoding('utf8');
    client.on('data', (d: string) => (body += d));
    client.resume();
    await new Promise((r) => setTimeout(r, 200));
    w.write('after\n');
    res.end();
    await once(client, 'end');
    expect(body).toMatch(/of output skipped: this client reads more slowly than the build prints/);
    expect(body.endsWith('after\n')).toBe(true);
    expect(body.length).toBeLessThan(16 * 1024 * 1024);
  });
});
