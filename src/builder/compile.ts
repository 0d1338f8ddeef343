import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { BerthError } from '../domain/errors.js';
import { OutputGuard } from './output.js';
import { parseProcfile } from './procfile.js';
import { readTenantFile, type Bind, type Sandbox } from '../sandbox/index.js';

/** A buildpack: a host directory with bin/detect, bin/compile and bin/release, and where it mounts. */
export interface Buildpack {
  name: string;
  hostDir: string;
  /** Path of the buildpack inside the sandbox. */
  mount: string;
  /** Extra binds it needs (the built-in ones share /buildpacks/lib.sh). */
  binds: Bind[];
  /** Work the platform does before this buildpack's compile step (the built-in nodejs: its toolchains). */
  prepare?: BuildpackPreparer;
}

/**
 * Done by the platform, as root and outside the sandbox, before a buildpack compiles: for the
 * built-in nodejs, resolving and fetching Node and the package manager into a per-machine cache
 * that builds see read-only (a cache tenants could write would let one plant binaries for another).
 */
export interface BuildpackPreparer {
  /** Host directory bound read-only at `mount` for the compile step. */
  dir: string;
  mount: string;
  /** Throws a BuildError the pusher can act on; `release` once the step is over. */
  prepare(appDir: string, config: Record<string, string>, signal?: AbortSignal): Promise<{ env: Record<string, string>; release(): void }>;
}

export interface CompileRequest {
  sandbox: Sandbox;
  buildId: string;
  /** Host directories, owned by `uid`: the source (becomes the slug), the app's cache, ENV_DIR. */
  appDir: string;
  cacheDir: string;
  envDir: string;
  config: Record<string, string>;
  commit: string | null;
  /** Explicit buildpacks (BUILDPACK_URL, app.json); otherwise the first built-in that detects. */
  buildpacks?: Buildpack[];
  builtins: Buildpack[];
  uid: number;
  gid: number;
  timeoutMs: number;
  memoryBytes: number;
  output: (text: string) => void;
  signal?: AbortSignal;
  /** Bytes all steps together may print before the build is stopped (default `DEFAULT_OUTPUT_LIMIT`). */
  outputLimitBytes?: number;
  /** Host directory bound at /tmp (inside the build's volume, so /tmp counts toward its disk). */
  tmpDir?: string;
  /** The build's egress-only namespace and the resolv.conf that works in it (`Networks.attachBuild`). */
  network?: { netns?: string; resolvConf?: string };
  /** Platform variables every step gets (NODE_EXTRA_CA_CERTS, BERTH_NPM_REGISTRY); validated by the caller. */
  env?: Record<string, string>;
  /** Platform files every step sees read-only (the operator's extra CA bundle). */
  binds?: Bind[];
}

export interface CompileResult {
  processTypes: Record<string, string>;
  buildpacks: string[];
}

export const BuildErrorCode = {
  Failed: 'build_failed',
  TimedOut: 'build_timed_out',
  OutOfMemory: 'build_out_of_memory',
  Canceled: 'build_canceled',
  NoBuildpack: 'no_buildpack',
} as const;

export class BuildError extends BerthError {}

/**
 * Runs the classic buildpack API in the sandbox: detect (unless buildpacks are given), then each
 * buildpack's compile in order, then the last one's release for default process types; a Procfile
 * overrides those. Every step runs with the time left of one overall deadline.
 */
export async function compile(req: CompileRequest): Promise<CompileResult> {
  const deadline = Date.now() + req.timeoutMs;
  let step = 0;
  // Every step's output counts toward one limit; past it the build stops (the tenant prints it all).
  const guard = new OutputGuard(req.outputLimitBytes, req.signal);
  writeEnvDir(req.envDir, req.config, req.output);
  const run = async (bp: Buildpack, argv: string[], capture?: (s: string) => void, extra: { env?: Record<string, string>; binds?: Bind[] } = {}): Promise<number | null> => {
    const left = deadline - Date.now();
    if (left <= 0) throw new BuildError(BuildErrorCode.TimedOut, `Build exceeded its time limit of ${formatDuration(req.timeoutMs)} (set BUILD_TIMEOUT, in seconds, to change it).`);
    const r = await req.sandbox.run({
      id: `build-${req.buildId}-${step++}`,
      argv,
      binds: [
        { src: req.appDir, dest: '/app', writable: true },
        { src: req.cacheDir, dest: '/cache', writable: true },
        { src: req.envDir, dest: '/env' },
        { src: bp.hostDir, dest: bp.mount },
        ...bp.binds,
        ...(extra.binds ?? []),
        ...(req.binds ?? []),
        ...resolvBind(req.network),
      ],
      env: {
        ...req.env,
        ...extra.env,
        PATH: '/usr/local/bin:/usr/bin:/bin',
        HOME: '/app',
        STACK: 'heroku-22',
        SOURCE_VERSION: req.commit ?? '',
        BUILD_ID: req.buildId,
        LANG: 'C.UTF-8',
        BERTH_BUILD_MEMORY_MB: String(Math.floor(req.memoryBytes / 1024 / 1024)),
      },
      cwd: '/app',
      uid: req.uid,
      gid: req.gid,
      memoryBytes: req.memoryBytes,
      timeoutMs: left,
      onOutput: (s) => guard.pass(s, capture ?? req.output),
      signal: guard.signal,
      ...(req.tmpDir !== undefined ? { tmpDir: req.tmpDir } : {}),
      ...(req.network?.netns !== undefined ? { netns: req.network.netns } : {}),
    });
    if (guard.exceeded) throw guard.exceeded;
    if (r.canceled) throw new BuildError(BuildErrorCode.Canceled, 'Build canceled.');
    if (r.timedOut) throw new BuildError(BuildErrorCode.TimedOut, `Build exceeded its time limit of ${formatDuration(req.timeoutMs)} (set BUILD_TIMEOUT, in seconds, to change it).`);
    if (r.oomKilled) throw new BuildError(BuildErrorCode.OutOfMemory, `Build ran out of memory (limit ${Math.round(req.memoryBytes / 1024 / 1024)} MB).\nA step used all of the build's memory and was killed. Lower what it runs at once (bundler parallelism, NODE_OPTIONS=--max-old-space-size), or ask the operator for more.`);
    return r.code;
  };

  let chosen = req.buildpacks ?? [];
  if (chosen.length === 0) {
    for (const bp of req.builtins) {
      let name = '';
      // What detect prints is a name: a line, not a place to keep megabytes.
      if ((await run(bp, [`${bp.mount}/bin/detect`, '/app'], (s) => (name = (name + s).slice(0, 1024)))) === 0) {
        chosen = [{ ...bp, name: name.trim() || bp.name }];
        break;
      }
    }
    if (chosen.length === 0) {
      throw new BuildError(BuildErrorCode.NoBuildpack, 'App not compatible with any built-in buildpack: add a package.json, an index.html or a Procfile, or set BUILDPACK_URL.');
    }
  }
  if (req.buildpacks?.length) req.output(`-----> Using buildpacks: ${chosen.map((b) => b.name).join(', ')}\n`);
  for (const bp of chosen) {
    // Downloads count toward the build's deadline and stop with a canceled build.
    const left = Math.max(1, deadline - Date.now());
    const prepared = bp.prepare
      ? await bp.prepare.prepare(req.appDir, req.config, AbortSignal.any([guard.signal, AbortSignal.timeout(left)])).catch((err: unknown) => {
          if (guard.signal.aborted) throw new BuildError(BuildErrorCode.Canceled, 'Build canceled.');
          if (Date.now() >= deadline) throw new BuildError(BuildErrorCode.TimedOut, `Build exceeded its time limit of ${formatDuration(req.timeoutMs)} (set BUILD_TIMEOUT, in seconds, to change it).`);
          throw err;
        })
      : undefined;
    try {
      const extra = prepared && bp.prepare ? { env: prepared.env, binds: [{ src: bp.prepare.dir, dest: bp.prepare.mount }] } : {};
      const code = await run(bp, [`${bp.mount}/bin/compile`, '/app', '/cache', '/env'], undefined, extra);
      if (code !== 0) throw new BuildError(BuildErrorCode.Failed, `Failed to compile the app with the ${bp.name} buildpack (exit ${code}).`);
    } finally {
      prepared?.release();
    }
  }
  const last = chosen[chosen.length - 1] as Buildpack;
  let yaml = '';
  let yamlTooLong = false;
  const releaseCode = await run(last, [`${last.mount}/bin/release`, '/app'], (s) => {
    if (yaml.length + s.length > MAX_RELEASE_YAML) yamlTooLong = true;
    else yaml += s;
  });
  if (releaseCode !== 0) throw new BuildError(BuildErrorCode.Failed, `${last.name} buildpack's bin/release failed (exit ${releaseCode}).`);
  if (yamlTooLong) throw new BuildError(BuildErrorCode.Failed, `${last.name} buildpack's bin/release printed more than ${MAX_RELEASE_YAML / 1024} KB.`);
  const defaults = ((parseYaml(yaml) ?? {}) as { default_process_types?: Record<string, string> }).default_process_types ?? {};
  const procfileText = readTenantFile(req.appDir, 'Procfile');
  const declared = procfileText === undefined ? {} : parseProcfile(procfileText);
  return { processTypes: { ...defaults, ...declared }, buildpacks: chosen.map((b) => b.name) };
}

/** The namespace's resolver at /etc/resolv.conf (after the /etc bind): the host's may sit on its loopback. */
export function resolvBind(network: { resolvConf?: string } | undefined): Bind[] {
  return network?.resolvConf !== undefined ? [{ src: network.resolvConf, dest: '/etc/resolv.conf' }] : [];
}

function formatDuration(ms: number): string {
  return ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

const MAX_RELEASE_YAML = 256 * 1024;

/** A config var name that can be a file name in ENV_DIR (and a shell variable). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * ENV_DIR as Heroku lays it out: one file per config var, named by the key. The names come from
 * the store: checked again here, where root turns them into paths, and skipped with a line if not
 * a plain variable name (`../../x` must never reach the filesystem).
 */
export function writeEnvDir(dir: string, config: Record<string, string>, output: (text: string) => void): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const [k, v] of Object.entries(config)) {
    if (!ENV_NAME.test(k)) {
      output(` !     Config var ${JSON.stringify(k.slice(0, 64))} is not a valid variable name; it is left out of the build's ENV_DIR.\n`);
      continue;
    }
    writeFileSync(join(dir, k), v, { mode: 0o644, flag: 'wx' });
  }
}
