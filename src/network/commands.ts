import { execFile } from 'node:child_process';
import { BerthError } from '../domain/errors.js';

/**
 * The one way the network starts a tool (ip, bridge, nft, nsenter): argument arrays, input on
 * stdin (batches: each process start costs ~5 ms), a bounded time, and inside `netns` through
 * `nsenter --net=` when given (test machines are namespaces; production passes none).
 */

export interface Exited {
  /** The exit status; null only if it was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  netns?: string;
  timeoutMs?: number;
}

/** Resolves with the exit status whatever it is; rejects only if the tool could not run or timed out. */
export function exec(cmd: string, args: string[], o: ExecOptions = {}): Promise<Exited> {
  const [file, argv] = o.netns ? ['nsenter', [`--net=${o.netns}`, '--', cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const child = execFile(file, argv, { timeout: o.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(new BerthError('network_command_failed', `${cmd} ${args.join(' ')} could not run: ${err.message}${stderr ? `: ${stderr.trim()}` : ''}`, { cause: err }));
      else resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
    // A tool that exits before reading its input closes its stdin: the exit status tells.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(o.input ?? '');
  });
}

/** As `exec`, but a non-zero exit throws with the tool's stderr. */
export async function run(cmd: string, args: string[], o: ExecOptions = {}): Promise<Exited> {
  const r = await exec(cmd, args, o);
  if (r.code !== 0) throw new BerthError('network_command_failed', `${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}`);
  return r;
}

/** `ip -batch -` (or `ip -n <name> -batch -` for a named namespace), all or nothing; no lines, no process. */
export async function ipBatch(lines: string[], o: { namespace?: string; netns?: string } = {}): Promise<void> {
  if (lines.length === 0) return;
  await run('ip', [...(o.namespace ? ['-n', o.namespace] : []), '-batch', '-'], { input: `${lines.join('\n')}\n`, ...(o.netns ? { netns: o.netns } : {}) });
}

/** `ip -j …`, parsed. */
export async function ipJson<T>(args: string[], o: { netns?: string } = {}): Promise<T[]> {
  const { stdout } = await run('ip', ['-j', ...args], o);
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}
