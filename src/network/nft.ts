import { execFile } from 'node:child_process';
import { BerthError } from '../domain/errors.js';

/** The code of every failed nft run: the kernel refused the batch, or nft could not run at all. */
export const NFT_FAILED = 'nft_failed';

export interface NftOptions {
  /** A namespace path (`/run/netns/X`): nft runs inside it through `nsenter --net=` (tests). */
  netns?: string;
  /** `nft -c`: parse and check against the kernel, change nothing. */
  check?: boolean;
  /** Default 30 s; a batch of tens of thousands of elements takes well under one. */
  timeoutMs?: number;
}

/**
 * Runs one nft script as `nft -f -` on stdin: one process and one kernel transaction, so a script
 * either loads whole or not at all (a typo loads nothing). A non-zero exit throws with nft's
 * stderr, which names the offending line.
 */
export function runNft(script: string, o: NftOptions = {}): Promise<void> {
  const args = [...(o.check ? ['-c'] : []), '-f', '-'];
  const [file, argv] = o.netns ? ['nsenter', [`--net=${o.netns}`, '--', 'nft', ...args]] : ['nft', args];
  return new Promise((resolve, reject) => {
    const child = execFile(file, argv, { timeout: o.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const status = typeof err.code === 'number' ? `exit ${err.code}` : err.message; // else missing binary or timeout
      reject(new BerthError(NFT_FAILED, `nft -f failed (${status}): ${stderr.trim() || 'no output'}`, { cause: err }));
    });
    child.stdin?.on('error', () => undefined); // nft exiting early closes its stdin; the exit status tells
    child.stdin?.end(script);
  });
}
