import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import { Templater, loadResources, parseResource, type TemplateResource } from '../../src/templater/index.js';
import { until } from '../support/until.js';

const root = mkdtempSync(join(tmpdir(), 'berth-templater-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let store: Store;
let dir: string;
let n = 0;
const running: Templater[] = [];

beforeEach(() => {
  store = openStore('memory://');
  dir = join(root, `case-${n++}`);
  mkdirSync(join(dir, 'templates'), { recursive: true });
});
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop();
  await store.close();
});

const UPSTREAMS = `# revision-independent on purpose
<% for (const app of it.ls('/svc/')) { %>upstream <%= app %> {
<% for (const ep of it.getvs('/svc/' + app + '/')) { %>  server <%= ep %>;
<% } %>}
<% } %>`;

function resource(extra: Partial<TemplateResource> = {}): TemplateResource {
  writeFileSync(join(dir, 'templates', 'up.eta'), UPSTREAMS);
  return { name: 'up', src: join(dir, 'templates', 'up.eta'), dest: join(dir, 'out.conf'), keys: ['/svc/'], mode: 0o640, reloadCmd: `echo reload >> ${join(dir, 'reloads')}`, ...extra };
}

function reloads(): number {
  return existsSync(join(dir, 'reloads')) ? readFileSync(join(dir, 'reloads'), 'utf8').trim().split('\n').length : 0;
}

function templater(r: TemplateResource, extra: { resyncMs?: number; onApplied?: (rev: number) => void } = {}): Templater {
  const t = new Templater({ store, resources: [r], log: createLogger('test', { level: 'silent' }), debounceMs: 50, ...extra });
  running.push(t);
  return t;
}

describe('templater', () => {
  it('renders sorted, deterministic output with the given mode, and reloads only when it changes', async () => {
    await store.put('/svc/web/b', '10.0.0.2:80');
    await store.put('/svc/web/a', '10.0.0.1:80');
    await store.put('/svc/api/x', '10.0.0.9:80');
    const r = resource();
    const applied: number[] = [];
    const t = templater(r, { resyncMs: 100, onApplied: (rev) => applied.push(rev) });
    await t.start();
    expect(readFileSync(r.dest, 'utf8')).toBe('# revision-independent on purpose\nupstream api {\n  server 10.0.0.9:80;\n}\nupstream web {\n  server 10.0.0.1:80;\n  server 10.0.0.2:80;\n}\n');
    expect(statSync(r.dest).mode & 0o777).toBe(0o640);
    expect(reloads()).toBe(1);
    const mtime = statSync(r.dest).mtimeMs;
    // Resyncs re-render identical bytes: no write, no reload.
    await new Promise((res) => setTimeout(res, 350));
    expect(applied.length).toBeGreaterThanOrEqual(3);
    expect(statSync(r.dest).mtimeMs).toBe(mtime);
    expect(reloads()).toBe(1);
  });

  it('follows changes, rendering a burst once after the debounce', async () => {
    const r = resource();
    const t = templater(r);
    await t.start();
    for (let i = 0; i < 10; i++) await store.put(`/svc/web/${i}`, `10.0.1.${i}:80`);
    // The file is in place before its reload command has run: wait for the reload itself, then
    // long enough for a second one to show had the burst not been rendered once.
    await until('the new endpoint rendered and reloaded', () => readFileSync(r.dest, 'utf8').includes('10.0.1.9:80') && reloads() >= 2);
    await new Promise((res) => setTimeout(res, 150));
    expect(reloads()).toBe(2);
    await store.delete('/svc/web/', { prefix: true });
    await until('the upstream gone', () => !readFileSync(r.dest, 'utf8').includes('upstream web'));
    expect(readdirSync(dir).filter((f) => f.includes('.berth-'))).toEqual([]);
  });

  it('keeps the old file when the check fails, and applies the next good change', async () => {
    await store.put('/svc/web/a', '10.0.0.1:80');
    const r = resource({ checkCmd: `! grep -q bad {{src}}` });
    const t = templater(r);
    await t.start();
    const good = readFileSync(r.dest, 'utf8');
    await store.put('/svc/web/z', 'bad:80');
    await until('a failed check', () => t.outcomes.get('up') === 'check_failed');
    expect(readFileSync(r.dest, 'utf8')).toBe(good);
    expect(reloads()).toBe(1);
    expect(readdirSync(dir).filter((f) => f.includes('.berth-'))).toEqual([]);
    await store.delete('/svc/web/z');
    await store.put('/svc/web/c', '10.0.0.3:80');
    await until('the good change rendered and reloaded', () => readFileSync(r.dest, 'utf8').includes('10.0.0.3:80') && reloads() >= 2);
    expect(reloads()).toBe(2);
  });

  it('puts back a destination someone edited, on the next resync', async () => {
    await store.put('/svc/web/a', '10.0.0.1:80');
    const r = resource();
    const t = templater(r, { resyncMs: 100 });
    await t.start();
    const want = readFileSync(r.dest, 'utf8');
    writeFileSync(r.dest, 'hand edit\n');
    await until('the rendered file', () => readFileSync(r.dest, 'utf8') === want);
  });

  it('checks a real nginx config with nginx -t before using it', async () => {
    const conf = (body: string): string => `pid ${join(dir, 'nginx.pid')};\nerror_log stderr;\nevents {}\nhttp {\n access_log off;\n${body}\n server { listen 127.0.0.1:1; }\n}\n`;
    writeFileSync(join(dir, 'templates', 'nginx.eta'), conf('<% for (const ep of it.getvs("/svc/web/")) { %> upstream u_<%= ep.replace(/[^0-9]/g, "") %> { server <%= ep %>; }\n<% } %>'));
    const r: TemplateResource = { name: 'nginx', src: join(dir, 'templates', 'nginx.eta'), dest: join(dir, 'nginx.conf'), keys: ['/svc/'], mode: 0o644, checkCmd: `nginx -t -q -p ${dir} -c {{src}}` };
    await store.put('/svc/web/a', '127.0.0.1:8080');
    const t = templater(r);
    await t.start();
    expect(t.outcomes.get('nginx')).toBe('updated');
    await store.put('/svc/web/b', 'not a host:port;;');
    await until('a failed check', () => t.outcomes.get('nginx') === 'check_failed');
    expect(readFileSync(r.dest, 'utf8')).toContain('127.0.0.1:8080');
    expect(readFileSync(r.dest, 'utf8')).not.toContain('not a host');
  });
});

describe('template resources', () => {
  it('loads conf.d/*.yaml and refuses bad definitions with the file named', () => {
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'conf.d', 'a.yaml'), 'src: up.eta\ndest: /tmp/x.conf\nkeys: [/svc/]\nmode: "0600"\ncheck_cmd: "true"\n');
    const [r] = loadResources(dir);
    expect(r).toMatchObject({ name: 'a.yaml', src: join(dir, 'templates', 'up.eta'), mode: 0o600, checkCmd: 'true' });
    expect(() => parseResource('b.yaml', 'src: x\ndest: relative.conf\nkeys: [/a/]', dir)).toThrow(/conf.d\/b.yaml: "dest" must be an absolute path/);
    expect(() => parseResource('c.yaml', 'src: x\ndest: /x\nkeys: [nope]', dir)).toThrow(/"keys" must list store keys/);
    expect(() => parseResource('d.yaml', 'src: x\ndest: /x\nkeys: [/a/]\nmode: 999', dir)).toThrow(/"mode" must be octal/);
    expect(() => parseResource('e.yaml', ': : :', dir)).toThrow(/e.yaml/);
  });

  it('runs as `berth templater --onetime` against a store file', async () => {
    const db = join(dir, 'state.db');
    const s = openStore(`sqlite://${db}`);
    await s.put('/svc/web/a', '10.9.9.9:80');
    await s.close();
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'templates', 'up.eta'), UPSTREAMS);
    writeFileSync(join(dir, 'conf.d', 'up.yaml'), `src: up.eta\ndest: ${join(dir, 'cli.conf')}\nkeys: [/svc/]\n`);
    const code = await new Promise<number | null>((res) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../src/cli/main.ts'), 'templater', '--config', dir, '--store', `sqlite://${db}`, '--onetime'], { stdio: 'ignore' });
      child.on('exit', res);
    });
    expect(code).toBe(0);
    expect(readFileSync(join(dir, 'cli.conf'), 'utf8')).toContain('server 10.9.9.9:80;');
  });
});
