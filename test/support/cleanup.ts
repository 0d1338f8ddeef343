import { rmSync } from 'node:fs';
import { reapVolumes } from '../../src/sandbox/volume.js';

/**
 * Removes a test's temp dir after its platforms stopped. A machine the test SIGKILLed leaves its
 * dynos' disks mounted under the dir (its next start would reap them; there is none), and rm
 * cannot remove a mountpoint: unmount and detach them first, as a restarted agent would.
 */
export async function removeTestDir(dir: string | undefined): Promise<void> {
  if (!dir) return;
  await reapVolumes(dir);
  rmSync(dir, { recursive: true, force: true });
}
