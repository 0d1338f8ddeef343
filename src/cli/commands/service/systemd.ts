import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BerthError, errorMessage } from '../../../domain/errors.js';

export interface ServicePaths {
  unitDir: string;
  envFile: string;
  unitName: string;
}

export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
export const DEFAULT_ENV_FILE = '/etc/berth/berth.env';

export function unitFile(p: ServicePaths): string {
  return join(p.unitDir, `${p.unitName}.service`);
}

/** The unit name systemd accepts and the file name it becomes. */
export function checkUnitName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new BerthError('invalid_params', `--unit-name must be letters, digits, ".", "_" or "-", got "${name}".`);
  return name;
}

/** Whether systemd runs this machine (sd_booted(): it creates this directory when it is PID 1). */
export function systemdRuns(): boolean {
  return existsSync('/run/systemd/system');
}

/** Written beside, then renamed: never a half-written unit, and the env file 0600 from its first byte. */
export function writeAtomic(path: string, body: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const staged = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(staged, body, { mode, flag: 'wx' });
    renameSync(staged, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BerthError(code === 'EACCES' || code === 'EPERM' ? 'forbidden' : 'io_error', `Cannot write ${path}: ${errorMessage(err)}${code === 'EACCES' ? ' (run as root)' : ''}.`);
  }
}

export function systemctl(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('systemctl', args, { timeout: 120_000 }, (err, _out, stderr) =>
      err ? reject(new BerthError('systemctl_failed', `systemctl ${args.join(' ')} failed: ${stderr.trim() || err.message}`)) : resolve(),
    );
  });
}
