import { createReadStream } from 'node:fs';
import type { AppRecord, ReleaseRecord } from '../controller/model/types.js';
import { keys } from '../domain/keys.js';
import type { Store } from '../store/index.js';
import type { Builder } from './builder.js';
import { extractAs } from './safe-fs.js';
import { runSandboxed } from './sandbox.js';
import type { SlugRecord } from './slugs.js';

/**
 * Runs one command the way a one-off dyno would: the slug unpacked fresh to /app, the release's
 * config as the environment, `.profile.d/*.sh` sourced, as the app's uid in the sandbox. Used for
 * the release phase and app.json's postdeploy script.
 */
export async function runInSlug(
  store: Store,
  builder: Builder,
  app: AppRecord,
  slugId: string,
  config: Record<string, string>,
  command: string,
  dyno: string,
  output: (text: string) => void,
  timeoutMs = 15 * 60_000,
): Promise<boolean> {
  const kv = await store.get(keys.slug(slugId));
  if (!kv) throw new Error(`slug ${slugId} is missing`);
  const slug = JSON.parse(kv.value) as SlugRecord;
  const ws = await builder.workspace(app.id);
  try {
    // Slugs hold what a tenant's build wrote: unpack as the app's uid, never as root.
    await extractAs(ws.uid, createReadStream(builder.slugs.blobPath(slug.checksum)), ws.appDir, true);
    const script = 'for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; eval "$BERTH_COMMAND"';
    const r = await runSandboxed({
      id: `${dyno}-${ws.id}`,
      argv: ['/bin/bash', '-c', script],
      binds: [{ src: ws.appDir, dest: '/app', writable: true }],
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', ...config, HOME: '/app', DYNO: dyno, PS: dyno, BERTH_COMMAND: command, LANG: 'C.UTF-8' },
      cwd: '/app',
      uid: ws.uid,
      gid: ws.uid,
      memoryBytes: 512 * 1024 * 1024,
      timeoutMs,
      onOutput: output,
    });
    if (r.timedOut) output(` !     ${dyno} timed out after ${Math.round(timeoutMs / 60000)} min.\n`);
    if (r.oomKilled) output(` !     ${dyno} ran out of memory (512 MB).\n`);
    return r.code === 0 && !r.timedOut && !r.oomKilled;
  } finally {
    builder.removeWorkspace(ws.root);
  }
}

/** The release phase as the controller's Releases service calls it. */
export function releasePhase(store: Store, builder: Builder): (app: AppRecord, release: ReleaseRecord, output: (t: string) => void) => Promise<boolean> {
  return async (app, release, output) => {
    const command = release.process_types.release;
    if (!command || !release.slug_id) return true;
    output(`-----> Running release command...\n`);
    const ok = await runInSlug(store, builder, app, release.slug_id, release.config, command, 'release.1', output);
    output(ok ? '       Release command succeeded\n' : ` !     Release command failed: v${release.version} is marked failed; the previous release keeps running.\n`);
    return ok;
  };
}
