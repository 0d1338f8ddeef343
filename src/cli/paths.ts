import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** `/var/lib/berth` as root, `~/.berth` otherwise, as the README promises. */
export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/berth' : join(homedir(), '.berth');
}

export function defaultStoreUrl(dataDir: string): string {
  return `sqlite://${join(resolve(dataDir), 'state.db')}`;
}
