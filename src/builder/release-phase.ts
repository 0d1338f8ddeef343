import { createReadStream } from 'node:fs';
import { get } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';
import type { Builder } from './builder.js';
import { extractAs } from '../sandbox/index.js';
import { resolvBind } from './compile.js';
import type { SlugCommand, SlugRunner } from './ports.js';

/**
 * Runs one command the way a one-off dyno would: the slug unpacked fresh to /app, the release's
 * config as the environment, `.profile.d/*.sh` sourced, as the app's uid in the sandbox. The
 * controller uses it (the `SlugRunner` port) for the release phase and app.json's postdeploy
 * script. It lives here because it is the builder's workspace, slug store and sandbox at work.
 */
export class SandboxSlugRunner implements SlugRunner {
  constructor(
    private readonly store: Store,
    private readonly builder: Builder,
  ) {}

  async run({ appId, slugId, config, command, dyno, output, timeoutMs = 15 * 60_000 }: SlugCommand): Promise<boolean> {
    const slug = (await get(this.store, keys.slug(slugId), codecs.slug))?.value;
    if (!slug) throw new Error(`slug ${slugId} is missing`);
    const builder = this.builder;
    const ws = await builder.workspace(appId);
    try {
      // Slugs hold what a tenant's build wrote: unpack as the app's uid, never as root.
      await extractAs(ws.uid, createReadStream(builder.slugs.blobPath(slug.checksum)), ws.appDir, true);
      const script = 'for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; eval "$BERTH_COMMAND"';
      // Egress only, as a build: the release phase reaches the outside world, nothing of ours.
      const r = await builder.withNetwork(ws.id, (network) =>
        builder.sandbox.run({
          id: `${dyno}-${ws.id}`,
          argv: ['/bin/bash', '-c', script],
          binds: [{ src: ws.appDir, dest: '/app', writable: true }, ...resolvBind(network)],
          env: { PATH: '/usr/local/bin:/usr/bin:/bin', ...config, HOME: '/app', DYNO: dyno, PS: dyno, BERTH_COMMAND: command, LANG: 'C.UTF-8' },
          cwd: '/app',
          uid: ws.uid,
          gid: ws.uid,
          memoryBytes: 512 * 1024 * 1024,
          timeoutMs,
          onOutput: output,
          ...(network.netns !== undefined ? { netns: network.netns } : {}),
        }),
      );
      if (r.timedOut) output(` !     ${dyno} timed out after ${Math.round(timeoutMs / 60000)} min.\n`);
      if (r.oomKilled) output(` !     ${dyno} ran out of memory (512 MB).\n`);
      return r.code === 0 && !r.timedOut && !r.oomKilled;
    } finally {
      builder.removeWorkspace(ws.root);
    }
  }
}
