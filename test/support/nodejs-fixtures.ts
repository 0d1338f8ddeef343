/**
 * Pushing the Node.js fixtures (`test/fixtures/nodejs/`) to a real `berth up` and reading what came
 * out: the push's output and time, the app's answer through the router, the slug's file list. The
 * `test/e2e/nodejs-*.test.ts` suites share it; each starts its own node.
 */
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { list } from 'tar';
import { apiClient } from './api.js';
import { startBerth, type BerthProcess } from './berth-process.js';
import { git } from './e2e.js';
import { call } from './router.js';

export const FIXTURES = join(import.meta.dirname, '../fixtures/nodejs');

export interface Push {
  code: number;
  out: string;
  /** Wall time of the whole `git push` (build, slug, release), in seconds. */
  seconds: number;
}

export interface NodeHarness {
  berth: BerthProcess;
  /** Creates app `name` with `config`, a repo of `fixture` (a dir under FIXTURES) with a berth remote. */
  app(name: string, fixture: string, config?: Record<string, string>): Promise<string>;
  push(repo: string): Promise<Push>;
  /** Writes `files` (path → text), or copies fixture `overlay` over the repo, and commits. */
  change(repo: string, files: Record<string, string> | string): Promise<void>;
  config(app: string, vars: Record<string, string | null>): Promise<void>;
  /**
   * The app's answer through the router once every web dyno runs the app's newest release and is up
   * (its first deploy scales web to 1), so an answer cannot come from an older slug.
   */
  serve(app: string, timeoutMs?: number): Promise<string>;
  /** Stops the app's web dynos (builds-only checks need no running app on two shared cores). */
  idle(app: string): Promise<void>;
  /** The app's release versions, oldest first. */
  releases(app: string): Promise<number[]>;
  /** The paths in the current release's slug, without the leading `./`. */
  slugFiles(app: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** A `berth up` of its own in a temp dir (the machine's toolchain cache is shared: startBerth). */
export async function nodeHarness(label: string): Promise<NodeHarness> {
  const dir = mkdtempSync(join(tmpdir(), `berth-${label}-`));
  chmodSync(dir, 0o755);
  const admin = `${label}-admin-token-0123456789abcdef`;
  const berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: admin, BERTH_LOG_LEVEL: 'warn' });
  const api = apiClient(() => berth.apiUrl, admin).ok;
  const commit = (repo: string, message: string): Promise<unknown> => git(repo, '-c', 'user.email=dev@example.com', '-c', 'user.name=Dev', 'commit', '-qm', message);

  return {
    berth,
    async app(name, fixture, config) {
      await api('POST', '/apps', { name });
      if (config) await api('PATCH', `/apps/${name}/config-vars`, config);
      const repo = join(dir, 'repos', name);
      mkdirSync(dirname(repo), { recursive: true });
      cpSync(join(FIXTURES, fixture), repo, { recursive: true });
      await git(repo, 'init', '-q', '-b', 'main');
      await git(repo, 'add', '-A');
      await commit(repo, `${fixture} fixture`);
      await git(repo, 'remote', 'add', 'berth', `${berth.apiUrl.replace('http://', `http://git:${admin}@`)}/${name}.git`);
      return repo;
    },
    async push(repo) {
      const started = Date.now();
      const r = await git(repo, 'push', 'berth', 'main');
      const push = { ...r, seconds: (Date.now() - started) / 1000 };
      // NODEJS_E2E_LOGS=<dir> keeps every push's log there, for reading a build that passed.
      const keep = process.env.NODEJS_E2E_LOGS;
      if (keep) writeFileSync(join(keep, `${basename(repo)}-${started}.log`), `${push.seconds} s, exit ${push.code}\n${buildLog(push)}`);
      return push;
    },
    async change(repo, files) {
      if (typeof files === 'string') cpSync(join(FIXTURES, files), repo, { recursive: true });
      else for (const [path, text] of Object.entries(files)) writeFileSync(join(repo, path), text);
      await git(repo, 'add', '-A');
      await commit(repo, 'change');
    },
    async config(app, vars) {
      await api('PATCH', `/apps/${app}/config-vars`, vars);
    },
    async serve(app, timeoutMs = 60_000) {
      const port = Number(berth.summary.http_port);
      const deadline = Date.now() + timeoutMs;
      const releases = await api<{ version: number }[]>('GET', `/apps/${app}/releases`);
      const newest = releases[releases.length - 1]?.version;
      let last = '';
      for (;;) {
        const dynos = await api<{ type: string; state: string; release: { version: number } | null }[]>('GET', `/apps/${app}/dynos`);
        const web = dynos.filter((d) => d.type === 'web');
        const current = web.length > 0 && web.every((d) => d.state === 'up' && d.release?.version === newest);
        const r = current ? await call({ port, host: `${app}.berth.localhost` }).catch((e: Error) => ({ status: 0, body: e.message })) : { status: 0, body: `dynos: ${JSON.stringify(web)}` };
        if (r.status === 200) return r.body;
        last = `${r.status} ${r.body.slice(0, 200)}`;
        if (Date.now() > deadline) throw new Error(`${app} did not answer 200 through the router in ${timeoutMs} ms; last: ${last}\n${berth.stderr().slice(-2000)}`);
        await new Promise((res) => setTimeout(res, 250));
      }
    },
    async idle(app) {
      await api('PATCH', `/apps/${app}/formation`, { updates: [{ type: 'web', quantity: 0 }] });
    },
    async releases(app) {
      return (await api<{ version: number }[]>('GET', `/apps/${app}/releases`)).map((r) => r.version);
    },
    async slugFiles(app) {
      const releases = await api<{ slug: { id: string } | null }[]>('GET', `/apps/${app}/releases`);
      const id = releases[releases.length - 1]?.slug?.id;
      if (!id) throw new Error(`${app} has no slug`);
      const slug = await api<{ blob: { url: string } }>('GET', `/apps/${app}/slugs/${id}`);
      const res = await fetch(slug.blob.url, { headers: { authorization: `Bearer ${admin}` } });
      const file = join(dir, `${app}-${id}.tgz`);
      writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      const paths: string[] = [];
      await list({ file, onReadEntry: (e) => void paths.push(e.path.replace(/^\.\//, '')) });
      rmSync(file);
      return paths;
    },
    async stop() {
      await berth.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The push output as the build printed it: without git's `remote: ` prefixes and the spaces git
 * pads each of those lines with (to clear a terminal line), so expectations read like the log.
 */
export function buildLog(p: Push): string {
  return p.out.replace(/^remote: ?/gm, '').replace(/[ \t]+$/gm, '');
}

/** Lines of `log` in order: each pattern must match a line after the previous one's. */
export function inOrder(log: string, patterns: RegExp[]): string[] {
  const lines = log.split('\n');
  const found: string[] = [];
  let from = 0;
  for (const p of patterns) {
    const i = lines.findIndex((l, n) => n >= from && p.test(l));
    if (i < 0) {
      found.push(`MISSING ${String(p)} after line ${from}`);
      break;
    }
    found.push(lines[i] ?? '');
    from = i + 1;
  }
  return found;
}

/** Reads a fixture file (to change it in a test). */
export function fixtureText(fixture: string, path: string): string {
  return readFileSync(join(FIXTURES, fixture, path), 'utf8');
}

/** The cold/warm table the closing note quotes, one row per package manager. */
export function timingTable(rows: { manager: string; cold: number; warm: number }[]): string {
  const lines = ['package manager | cold push (s) | warm push (s)', '--- | --- | ---'];
  for (const r of rows) lines.push(`${r.manager} | ${r.cold.toFixed(1)} | ${r.warm.toFixed(1)}`);
  return lines.join('\n');
}
