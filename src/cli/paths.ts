import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** `/var/lib/berth` as root, `~/.berth` otherwise, as the README promises. */
export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/berth' : join(homedir(), '.berth');
}

export function defaultStoreUrl(dataDir: string): string {
  return `sqlite://${join(resolve(dataDir), 'state.db')}`;
}

/**
 * Where a platform on this machine keeps its data by default: root's (`sudo berth up`) and this
 * user's. The CLI looks there for the API certificate the platform here serves.
 */
export function knownDataDirs(home: string): string[] {
  return [...new Set(['/var/lib/berth', join(home, '.berth')])];
}
