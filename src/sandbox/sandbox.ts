import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';

/**
 * Runs a command the way builds and dynos must run: bubblewrap with fresh pid/ipc/uts
 * namespaces, read-only system directories, a private /tmp, only the paths bound in visible, as an
 * unprivileged uid, inside v1 memory and pids cgroups, with a wall-clock limit. The data dir,
 * tokens and other apps are simply not in the sandbox's filesystem.
 */
export interface Bind {
  src: string;
  dest: string;
  writable?: boolean;
}

export interface SandboxSpec {
  /** A name unique among running sandboxes (cgroup directory name). */
  id: string;
  argv: string[];
  binds: Bind[];
  env: Record<string, string>;
  cwd: string;
  uid: number;
  gid: number;
  memoryBytes: number;
  pidsMax?: number;
  /**
   * CPU weight among running sandboxes (v1 `cpu.shares`, 2..262144); `DEFAULT_CPU_SHARES` when
   * absent. Only matters when the CPU is contended: then each sandbox gets time in proportion.
   */
  cpuShares?: number;
  /**
   * A host dir bound at /tmp instead of a tmpfs: a tmpfs is RAM, uncapped by any disk limit and
   * charged to the memory cgroup, so a dyno's /tmp lives on its volume (src/sandbox/volume.ts).
   */
  tmpDir?: string;
  /** Infinity for none (a dyno). */
  timeoutMs: number;
  /** Output as it comes; a positive number answered pauses reading that stream for so many ms. */
  onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => unknown;
  /** Give the command a stdin pipe (`SandboxProcess.stdin`) instead of /dev/null. */
  stdin?: boolean;
  signal?: AbortSignal;
  /**
   * A network namespace (`/run/netns/<name>`) to run in instead of the host's. Entered as root,
   * before dropping to the uid, so the command lives in a namespace it cannot reconfigure.
   */
  netns?: string;
}

/** What `SandboxSpec.netns` may be: a namespace `ip netns add` made, nothing path-like beyond it. */
const NETNS_PATH = /^\/run\/netns\/[A-Za-z0-9_.-]+$/;

export interface SandboxResult {
  code: number | null;
  /** The signal that ended bwrap itself; the command's own signal death shows as code 128+n. */
  signal: string | null;
  timedOut: boolean;
  oomKilled: boolean;
  /** Ended by stop() or the abort signal rather than on its own. */
  canceled: boolean;
}

export interface SandboxProcess {
  /** bwrap's host pid: the supervisor, not the command (which runs in its own pid namespace). */
  pid: number;
  /** Settles once, after everything in the sandbox is gone and its cgroups are removed. */
  exited: Promise<SandboxResult>;
  /** SIGTERM to the sandbox's processes, SIGKILL to all of them after graceMs (at once for 0). */
  stop(graceMs: number): Promise<SandboxResult>;
  /** The command's stdin, when the spec asked for one. */
  stdin?: Writable;
}

/** What a node's sandboxes need to know about the host; made by the composition root. */
export interface SandboxConfig {
  /** Where the v1 cgroup hierarchies are mounted (`<root>/memory`, `<root>/pids`, `<root>/cpu`). */
  cgroupRoot: string;
  /**
   * Put each sandbox in a cpu cgroup of its own (default true). Without one, CPU time is shared
   * per process, so an app running many busy processes starves one running a few; false only on
   * a host without the cpu controller.
   */
  cpu?: boolean;
}

/** A build's weight, and a dyno's whose spec names none: that of a 512 MiB dyno. */
export const DEFAULT_CPU_SHARES = 1024;

/**
 * The most any dyno weighs: that of a 2 GiB dyno. A tenant picks its memory (`limits:set web=64G`)
 * and nothing reserves CPU for it, so weight by memory alone would let one app's dynos take nearly
 * all of a contended CPU.
 */
export const MAX_CPU_SHARES = 4096;

/** A dyno's CPU weight by its size: 1024 per 512 MiB of memory (as Heroku's sizes scale CPU with memory), at most `MAX_CPU_SHARES`. */
export function cpuSharesFor(memoryBytes: number): number {
  const shares = Math.round((memoryBytes / (512 * 1024 * 1024)) * 1024);
  return Number.isFinite(shares) ? Math.min(MAX_CPU_SHARES, Math.max(2, shares)) : DEFAULT_CPU_SHARES;
}

/**
 * A one-off dyno's weight: by its size, but never above a default dyno's. Runs are not placed by
 * the scheduler, so their memory is reserved on no machine, and twenty of them at an app's run
 * limit must not outweigh the formation dynos beside them.
 */
export const oneOffCpuSharesFor = (memoryBytes: number): number => Math.min(DEFAULT_CPU_SHARES, cpuSharesFor(memoryBytes));

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
// setTimeout overflows past this and would fire after 1 ms.
const MAX_TIMER_MS = 2 ** 31 - 1;
const SYSTEM_DIRS = ['/usr', '/etc'];
const SYMLINKS: [string, string][] = [
  ['usr/bin', '/bin'],
  ['usr/sbin', '/sbin'],
  ['usr/lib', '/lib'],
  ['usr/lib64', '/lib64'],
];


export function bwrapArgs(spec: SandboxSpec): string[] {
  const args = ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-user', '--die-with-parent', '--new-session', '--hostname', 'berth'];
  for (const dir of SYSTEM_DIRS) args.push('--ro-bind', dir, dir);
  for (const [target, link] of SYMLINKS) args.push('--symlink', target, link);
  args.push('--proc', '/proc', '--dev', '/dev', ...(spec.tmpDir !== undefined ? ['--bind', spec.tmpDir, '/tmp'] : ['--tmpfs', '/tmp']));
  for (const b of spec.binds) args.push(b.writable ? '--bind' : '--ro-bind', b.src, b.dest);
  // bwrap's root is a tmpfs the command could otherwise fill; only /tmp and writable binds stay so.
  args.push('--remount-ro', '/', '--chdir', spec.cwd, '--clearenv');
  for (const [k, v] of Object.entries(spec.env)) args.push('--setenv', k, v);
  return [...args, '--', ...spec.argv];
}

/**
 * The one way builds and dynos run commands on this node. Made once by the composition root with
 * the host's configuration and handed to the builder and the runtimes.
 */
export class Sandbox {
  constructor(readonly config: SandboxConfig) {}

  /** Runs the spec to completion; never throws for the command's own failure, only reports it. */
  run(spec: SandboxSpec): Promise<SandboxResult> {
    return runSandboxed(this.config, spec);
  }

  /** Starts the spec and returns at once; the caller owns the returned handle's lifetime. */
  spawn(spec: SandboxSpec): SandboxProcess {
    return spawnSandboxed(this.config, spec);
  }

  /** The host pids in a running sandbox (by its spec's id); none once it is gone. */
  processes(id: string): number[] {
    return readSafe(join(cgroupDirs(this.config, id).pids, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
  }

  /**
   * Removes the empty cgroups of sandboxes whose owner died without cleaning up (a SIGKILLed agent
   * or builder: its processes die with it, their cgroup dirs stay). A cgroup with processes cannot
   * be removed (EBUSY), and young ones are left alone: another process may be about to join one.
   */
  reapStaleCgroups(prefix: string, olderThanMs = 60_000): number {
    return reapStaleCgroups(this.config, prefix, olderThanMs);
  }
}

interface CgroupDirs {
  memory: string;
  pids: string;
  cpu?: string;
}

function cgroupDirs(config: SandboxConfig, id: string): CgroupDirs {
  const dir = (controller: string): string => join(config.cgroupRoot, controller, 'berth', id);
  return { memory: dir('memory'), pids: dir('pids'), ...(config.cpu !== false ? { cpu: dir('cpu') } : {}) };
}

const allDirs = (cg: CgroupDirs): string[] => [cg.memory, cg.pids, ...(cg.cpu !== undefined ? [cg.cpu] : [])];

async function runSandboxed(config: SandboxConfig, spec: SandboxSpec): Promise<SandboxResult> {
  const proc = spawnSandboxed(config, spec);
  const onAbort = (): void => void proc.stop(0);
  if (spec.signal?.aborted) onAbort();
  else spec.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await proc.exited;
  } finally {
    spec.signal?.removeEventListener('abort', onAbort);
  }
}

function spawnSandboxed(config: SandboxConfig, spec: SandboxSpec): SandboxProcess {
  // Checked before anything is made: a bad path must not leave cgroups behind.
  if (spec.netns !== undefined && (!NETNS_PATH.test(spec.netns) || /\/\.+$/.test(spec.netns))) throw new Error(`invalid network namespace: ${spec.netns}`);
  const shares = spec.cpuShares ?? DEFAULT_CPU_SHARES;
  if (!Number.isInteger(shares) || shares < 2 || shares > 262_144) throw new Error(`invalid cpu shares: ${spec.cpuShares}`);
  const cg = cgroupDirs(config, spec.id);
  for (const dir of allDirs(cg)) mkdirSync(dir, { recursive: true });
  if (cg.cpu !== undefined) writeFileSync(join(cg.cpu, 'cpu.shares'), String(shares));
  writeFileSync(join(cg.memory, 'memory.limit_in_bytes'), String(spec.memoryBytes));
  // Without swap accounting a memory limit could be dodged by swapping; set it where supported.
  const memsw = join(cg.memory, 'memory.memsw.limit_in_bytes');
  if (existsSync(memsw)) writeFileSync(memsw, String(spec.memoryBytes));
  writeFileSync(join(cg.pids, 'pids.max'), String(spec.pidsMax ?? 1024));
  // The shell joins the cgroups before exec, so everything it starts is counted from the first byte.
  const script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
  // nsenter runs as root and only then setpriv drops the uid: bwrap needs no --unshare-net, and the
  // dyno, unprivileged in a namespace it did not make, cannot change its addresses or routes.
  const netns = spec.netns !== undefined ? ['nsenter', `--net=${spec.netns}`] : [];
  const child = spawn(
    '/bin/sh',
    ['-c', script, 'sandbox', ...allDirs(cg).map((d) => join(d, 'cgroup.procs')), '--', ...netns, 'setpriv', `--reuid=${spec.uid}`, `--regid=${spec.gid}`, '--clear-groups', 'bwrap', ...bwrapArgs(spec)],
    { stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  // A command that exits (or closes its stdin) while input is still coming: EPIPE is expected.
  child.stdin?.on('error', () => undefined);
  for (const [stream, name] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']] as const) {
    stream?.setEncoding('utf8').on('data', (d: string) => {
      // A reader over its budget asks for a pause: the pipe fills and the writer blocks, so a
      // flood costs its own process time, not the node's.
      const pauseMs = spec.onOutput?.(d, name);
      if (typeof pauseMs === 'number' && pauseMs > 0 && !stream.isPaused()) {
        stream.pause();
        setTimeout(() => stream.resume(), pauseMs).unref();
      }
    });
  }
  const pid = child.pid ?? 0;
  let timedOut = false;
  let canceled = false;
  let done = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const killAll = (): void => {
    // A failed spawn has no pid, and kill(-0) would hit our own process group.
    if (pid > 0) signalPid(-pid, 'SIGKILL');
    signalCgroup(cg.pids, 'SIGKILL');
  };
  const timer = Number.isFinite(spec.timeoutMs)
    ? setTimeout(() => {
        timedOut = true;
        killAll();
      }, Math.min(spec.timeoutMs, MAX_TIMER_MS))
    : undefined;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on('error', () => resolve({ code: 127, signal: null }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  }).then(async ({ code, signal }) => {
    done = true;
    clearTimeout(timer);
    clearTimeout(graceTimer);
    signalCgroup(cg.pids, 'SIGKILL');
    const oomKilled = /oom_kill [1-9]/.test(readSafe(join(cg.memory, 'memory.oom_control')));
    await removeCgroups(cg);
    return { code, signal, timedOut, oomKilled, canceled };
  });
  const stop = (graceMs: number): Promise<SandboxResult> => {
    if (done) return exited;
    canceled = true;
    if (graceMs <= 0) killAll();
    else if (!graceTimer) {
      // Not the process group: TERM would end bwrap, and --die-with-parent would then SIGKILL the
      // command before it could shut down. Every other process gets TERM, as Heroku sends it to
      // all processes in a dyno; the namespace's init ignores it, having no handler.
      signalCgroup(cg.pids, 'SIGTERM', pid);
      graceTimer = setTimeout(killAll, Math.min(graceMs, MAX_TIMER_MS));
    }
    return exited;
  };
  return { pid, exited, stop, ...(child.stdin ? { stdin: child.stdin } : {}) };
}

function readSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Exited meanwhile.
  }
}

/** Signals every process in the cgroup: a stray background process must not outlive its sandbox. */
function signalCgroup(dir: string, signal: NodeJS.Signals, except?: number): void {
  for (const pid of readSafe(join(dir, 'cgroup.procs')).split('\n').filter(Boolean)) {
    if (Number(pid) !== except) signalPid(Number(pid), signal);
  }
}

function reapStaleCgroups(config: SandboxConfig, prefix: string, olderThanMs: number): number {
  let reaped = 0;
  for (const controller of config.cpu !== false ? ['memory', 'pids', 'cpu'] : ['memory', 'pids']) {
    const parent = join(config.cgroupRoot, controller, 'berth');
    let entries: string[];
    try {
      entries = readdirSync(parent).filter((e) => e.startsWith(prefix));
    } catch {
      continue;
    }
    for (const e of entries) {
      try {
        if (Date.now() - statSync(join(parent, e)).mtimeMs < olderThanMs) continue;
        rmdirSync(join(parent, e));
        reaped++;
      } catch {
        // In use, or gone meanwhile.
      }
    }
  }
  return reaped;
}

async function removeCgroups(cg: CgroupDirs): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      for (const dir of allDirs(cg)) if (existsSync(dir)) rmdirSync(dir);
      return;
    } catch {
      // Processes are still leaving the cgroup.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
