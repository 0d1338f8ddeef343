import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Runs a command the way builds (and later dynos) must run: bubblewrap with fresh pid/ipc/uts
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
  timeoutMs: number;
  onOutput?: (chunk: string) => void;
  signal?: AbortSignal;
}

export interface SandboxResult {
  code: number | null;
  timedOut: boolean;
  oomKilled: boolean;
  canceled: boolean;
}

const CGROUP_ROOT = process.env.BERTH_CGROUP_ROOT ?? '/sys/fs/cgroup';
const SYSTEM_DIRS = ['/usr', '/etc'];
const SYMLINKS: [string, string][] = [
  ['usr/bin', '/bin'],
  ['usr/sbin', '/sbin'],
  ['usr/lib', '/lib'],
  ['usr/lib64', '/lib64'],
];

function cgroupDirs(id: string): { memory: string; pids: string } {
  return { memory: join(CGROUP_ROOT, 'memory', 'berth', id), pids: join(CGROUP_ROOT, 'pids', 'berth', id) };
}

export function bwrapArgs(spec: SandboxSpec): string[] {
  const args = ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-user', '--die-with-parent', '--new-session', '--hostname', 'berth'];
  for (const dir of SYSTEM_DIRS) args.push('--ro-bind', dir, dir);
  for (const [target, link] of SYMLINKS) args.push('--symlink', target, link);
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp');
  for (const b of spec.binds) args.push(b.writable ? '--bind' : '--ro-bind', b.src, b.dest);
  args.push('--chdir', spec.cwd, '--clearenv');
  for (const [k, v] of Object.entries(spec.env)) args.push('--setenv', k, v);
  return [...args, '--', ...spec.argv];
}

/** Runs the spec to completion; never throws for the command's own failure, only reports it. */
export async function runSandboxed(spec: SandboxSpec): Promise<SandboxResult> {
  const cg = cgroupDirs(spec.id);
  for (const dir of [cg.memory, cg.pids]) mkdirSync(dir, { recursive: true });
  writeFileSync(join(cg.memory, 'memory.limit_in_bytes'), String(spec.memoryBytes));
  // Without swap accounting a memory limit could be dodged by swapping; set it where supported.
  const memsw = join(cg.memory, 'memory.memsw.limit_in_bytes');
  if (existsSync(memsw)) writeFileSync(memsw, String(spec.memoryBytes));
  writeFileSync(join(cg.pids, 'pids.max'), String(spec.pidsMax ?? 1024));
  // The shell joins the cgroups before exec, so everything it starts is counted from the first byte.
  const script = 'echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@"';
  const child = spawn(
    '/bin/sh',
    ['-c', script, 'sandbox', join(cg.memory, 'cgroup.procs'), join(cg.pids, 'cgroup.procs'), 'setpriv', `--reuid=${spec.uid}`, `--regid=${spec.gid}`, '--clear-groups', 'bwrap', ...bwrapArgs(spec)],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  child.stdout.on('data', (d: Buffer) => spec.onOutput?.(d.toString()));
  child.stderr.on('data', (d: Buffer) => spec.onOutput?.(d.toString()));
  let timedOut = false;
  let canceled = false;
  const killAll = (): void => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    killCgroup(cg.pids);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    killAll();
  }, spec.timeoutMs);
  const onAbort = (): void => {
    canceled = true;
    killAll();
  };
  spec.signal?.addEventListener('abort', onAbort, { once: true });
  const code = await new Promise<number | null>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (c) => resolve(c));
  });
  clearTimeout(timer);
  spec.signal?.removeEventListener('abort', onAbort);
  killCgroup(cg.pids);
  const oomKilled = /oom_kill [1-9]/.test(readSafe(join(cg.memory, 'memory.oom_control')));
  await removeCgroups(cg);
  return { code, timedOut, oomKilled, canceled };
}

function readSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Kills every process left in the cgroup: a build's stray background process must not outlive it. */
function killCgroup(dir: string): void {
  for (const pid of readSafe(join(dir, 'cgroup.procs')).split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
}

async function removeCgroups(cg: { memory: string; pids: string }): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      for (const dir of [cg.memory, cg.pids]) if (existsSync(dir)) rmdirSync(dir);
      return;
    } catch {
      // Processes are still leaving the cgroup.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
