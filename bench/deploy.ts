/**
 * Deploy benchmark: `git push` to a real `berth up` until the release exists, for a small Express app
 * with a lockfile, first push (cold build cache) and second push (warm cache, one file changed),
 * against a bare `npm ci` of the same app, cold and warm, in one run on the same machine and moment.
 *
 *   npm run bench:deploy
 *
 * Everything (app source, npm caches, berth's data dir) lives in one temp dir under os.tmpdir().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth, type BerthProcess } from '../test/support/berth-process.js';
import { printTable as renderTable, runBenchmark, step } from './lib.js';

const APP = 'bench-deploy';
const TOKEN = `bench_${randomBytes(16).toString('hex')}`;
// Bounds each phase if the registry or a build stalls, so cleanup still runs and the run stays under ~3 min.
const NPM_TIMEOUT_MS = 45_000;
const PUSH_TIMEOUT_MS = 75_000;
const GIT_TIMEOUT_MS = 15_000;
const NPM_QUIET = { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
const server = (greeting: string): string =>
  `const express = require('express');\nconst app = express();\napp.get('/', (_req, res) => res.send('${greeting}'));\n` +
  `app.listen(process.env.PORT || 3000);\n`;

interface Run {
  code: number | null;
  out: string;
  seconds: number;
}

const now = (): bigint => process.hrtime.bigint();
const secondsSince = (t0: bigint): number => Number(now() - t0) / 1e9;

// Module-level so the SIGINT handler can end them too.
const children = new Set<ChildProcess>();
let berth: BerthProcess | undefined;

/**
 * Runs a command to exit, timed from spawn to exit; `onLine` sees each output line as it arrives
 * (git relays the build as `remote:` lines while it runs). Rejects on timeout after killing it.
 */
function run(what: string, cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number; onLine?: (line: string, at: number) => void }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let partial = '';
    let seconds = NaN;
    const onData = (d: Buffer): void => {
      out += d.toString();
      const lines = (partial + d.toString()).split(/\r?\n|\r/);
      partial = lines.pop() ?? '';
      for (const line of lines) opts.onLine?.(line, secondsSince(t0));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${opts.timeoutMs} ms; output so far:\n${out.slice(-4000)}`));
    }, opts.timeoutMs);
    child.on('error', reject);
    child.on('exit', () => (seconds = secondsSince(t0)));
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, out, seconds });
    });
  });
}

/** `run`, failing on a non-zero exit. */
const must = (what: string, cmd: string, args: string[], opts: Parameters<typeof run>[3]): Promise<Run> =>
  run(what, cmd, args, opts).then((r) => (r.code === 0 ? r : Promise.reject(new Error(`${what} exited with ${r.code}:\n${r.out.slice(-4000)}`))));

/** A clean env (not `npm run`'s npm_config_*, not ~/.npmrc), configured like the buildpack's npm. */
const npmEnv = (home: string, cache: string): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, npm_config_cache: cache, ...NPM_QUIET });

/** `npm ci` of the app's package.json and lockfile in a fresh dir, timed. */
async function bareCi(dir: string, appDir: string, cache: string, label: string): Promise<number> {
  const work = join(dir, label);
  mkdirSync(work);
  for (const f of ['package.json', 'package-lock.json']) copyFileSync(join(appDir, f), join(work, f));
  step(`bare npm ci (${label})`);
  const r = await must(`bare npm ci (${label})`, 'npm', ['ci'], { cwd: work, env: npmEnv(dir, cache), timeoutMs: NPM_TIMEOUT_MS });
  step(`  ${r.seconds.toFixed(2)} s`);
  return r.seconds;
}

/** One timed `git push berth main`; it must exit 0 and report `Released v<version>`. */
async function push(appDir: string, env: NodeJS.ProcessEnv, version: number): Promise<number> {
  step(`git push -> Released v${version}`);
  // Build steps with their offsets on stderr: if a push is slow, this says where the time went.
  const onLine = (line: string, at: number): void => void (/^remote: -----> /.test(line) && step(`  ${at.toFixed(2)} s ${line.slice(8).trimEnd()}`));
  const r = await run(`git push (v${version})`, 'git', ['push', 'berth', 'main'], { cwd: appDir, env, timeoutMs: PUSH_TIMEOUT_MS, onLine });
  if (r.code !== 0 || !new RegExp(`remote: {8}Released v${version}\\b`).test(r.out)) {
    throw new Error(`git push exited with ${r.code}, expected 0 and "Released v${version}":\n${r.out.slice(-4000)}`);
  }
  step(`  ${r.seconds.toFixed(2)} s in all`);
  return r.seconds;
}

function printTable(rows: [string, string, string][]): void {
  renderTable(['metric', 'seconds', 'ratio vs bare npm ci'], rows);
  console.log('');
  console.log('Ratio: push time / bare npm ci time (cold for push 1, warm for push 2); lower is better.');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-deploy-'));
  // Builds run as unprivileged uids that must traverse the data dir's parents.
  chmodSync(dir, 0o755);
  const cleanup = async (): Promise<void> => {
    for (const c of children) c.kill('SIGKILL');
    const b = berth;
    berth = undefined;
    await b?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  // Ctrl-C would otherwise leave berth, its data dir and a few hundred MB of npm cache behind.
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const appDir = join(dir, 'app');
    mkdirSync(appDir);
    const pkg = { name: APP, version: '1.0.0', private: true, dependencies: { express: '^4.21.0' }, scripts: { start: 'node server.js' } };
    writeFileSync(join(appDir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
    writeFileSync(join(appDir, 'server.js'), server('hello'));
    step('generating package-lock.json (untimed; its own npm cache, so the bare cold run stays cold)');
    await must('npm install --package-lock-only', 'npm', ['install', '--package-lock-only', '--no-audit', '--no-fund'], { cwd: appDir, env: npmEnv(dir, join(dir, 'lock-cache')), timeoutMs: NPM_TIMEOUT_MS });
    const lock = JSON.parse(readFileSync(join(appDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
    const express = lock.packages['node_modules/express']?.version ?? 'unknown';
    const packages = Object.keys(lock.packages).length - 1;
    console.log(`cores: ${availableParallelism()} (${cpus()[0]?.model ?? 'unknown cpu'}), node ${process.version}, express ${express} (${packages} packages in the lockfile)`);
    console.log(`data under ${tmpdir()}; npm registry over the network for every cold install`);
    console.log('');

    const bareCache = join(dir, 'bare-cache');
    const coldCi = await bareCi(dir, appDir, bareCache, 'bare-cold');
    const warmCi = await bareCi(dir, appDir, bareCache, 'bare-warm');

    step('starting berth');
    berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: TOKEN, BERTH_LOG_LEVEL: 'warn' });
    const res = await fetch(`${berth.apiUrl}/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: APP }),
      signal: AbortSignal.timeout(GIT_TIMEOUT_MS),
    });
    if (res.status !== 201) throw new Error(`POST /apps: ${res.status} ${await res.text()}`);

    const remote = new URL(`${berth.apiUrl}/${APP}.git`);
    remote.username = 'git';
    remote.password = TOKEN;
    const who = { GIT_AUTHOR_NAME: 'Bench', GIT_AUTHOR_EMAIL: 'b@example.com', GIT_COMMITTER_NAME: 'Bench', GIT_COMMITTER_EMAIL: 'b@example.com' };
    const gitEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, GIT_TERMINAL_PROMPT: '0', ...who };
    const git = (...args: string[]): Promise<Run> => must(`git ${args[0]}`, 'git', args, { cwd: appDir, env: gitEnv, timeoutMs: GIT_TIMEOUT_MS });
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-qm', 'initial');
    await git('remote', 'add', 'berth', remote.toString());

    const push1 = await push(appDir, gitEnv, 2);
    writeFileSync(join(appDir, 'server.js'), server('hello again'));
    await git('commit', '-qam', 'change the greeting');
    const push2 = await push(appDir, gitEnv, 3);

    const s = (x: number): string => x.toFixed(2);
    printTable([
      ['bare npm ci, cold cache', s(coldCi), '-'],
      ['bare npm ci, warm cache', s(warmCi), '-'],
      ['git push 1 -> Released v2 (cold build cache)', s(push1), s(push1 / coldCi)],
      ['git push 2 -> Released v3 (warm cache, server.js changed)', s(push2), s(push2 / warmCi)],
    ]);
  } catch (err) {
    if (berth) process.stderr.write(`  berth stderr (tail):\n${berth.stderr().slice(-4000)}\n`);
    throw err;
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
