import { BerthError, errorMessage } from '../domain/errors.js';
import { exec } from './commands.js';

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
export async function runNft(script: string, o: NftOptions = {}): Promise<void> {
  const args = [...(o.check ? ['-c'] : []), '-f', '-'];
  const r = await exec('nft', args, { input: script, ...(o.netns ? { netns: o.netns } : {}), timeoutMs: o.timeoutMs ?? 30_000 }).catch((err: unknown) => {
    throw new BerthError(NFT_FAILED, `nft -f could not run: ${errorMessage(err)}`, { cause: err });
  });
  if (r.code !== 0) throw new BerthError(NFT_FAILED, `nft -f failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}`);
}
