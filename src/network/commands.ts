import { execFile } from 'node:child_process';
import { BerthError } from '../domain/errors.js';

/** How the network runs iproute2 and nft: argument arrays, batches on stdin, stderr in the error. */

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command (inside `netns` via nsenter when given), feeding `input` on stdin; throws on a non-zero exit. */
export function run(cmd: string, args: string[], o: { input?: string; netns?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const [file, argv] = o.netns ? ['nsenter', [`--net=${o.netns}`, cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const child = execFile(file, argv, { timeout: o.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(new BerthError('network_command_failed', `${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve({ stdout, stderr });
    });
    // A command that exits before reading its input must not crash us with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(o.input ?? '');
  });
}

/** `ip -batch -` (or `ip -n <name> -batch -` for a named namespace); nothing to do, no process. */
export async function ipBatch(lines: string[], o: { namespace?: string; netns?: string; force?: boolean } = {}): Promise<void> {
  if (lines.length === 0) return;
  const args = [...(o.namespace ? ['-n', o.namespace] : []), ...(o.force ? ['-force'] : []), '-batch', '-'];
  await run('ip', args, { input: `${lines.join('\n')}\n`, ...(o.netns ? { netns: o.netns } : {}) });
}

/** `ip -j …`, parsed. */
export async function ipJson<T>(args: string[], o: { netns?: string } = {}): Promise<T[]> {
  const { stdout } = await run('ip', ['-j', ...args], o);
  return stdout.trim() ? (JSON.parse(stdout) as T[]) : [];
}
