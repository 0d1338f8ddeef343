import { createReadStream } from 'node:fs';
import { get } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import type { Store } from '../store/index.js';
import type { Builder } from './builder.js';
import { extractAs } from '../sandbox/index.js';
import { resolvBind } from './compile.js';
import { OutputGuard } from './output.js';
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
    /** Bytes the command may print before it is stopped (default `DEFAULT_OUTPUT_LIMIT`). */
    private readonly outputLimitBytes?: number,
  ) {}

  async run({ appId, slugId, config, command, dyno, output, timeoutMs = 15 * 60_000 }: SlugCommand): Promise<boolean> {
    const slug = (await get(this.store, keys.slug(slugId), codecs.slug))?.value;
    if (!slug) throw new Error(`slug ${slugId} is missing`);
    const builder = this.builder;
    // Never unpack bytes that are not the slug's: a blob that fails its checksum is deleted here.
    await builder.slugs.verify(slug.checksum);
    const ws = await builder.workspace(appId, { cache: false });
    // The command prints what it likes; past the limit it is stopped, and the output says why.
    const guard = new OutputGuard(this.outputLimitBytes, undefined, 'Release phase');
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
          onOutput: (s) => guard.pass(s, output),
          signal: guard.signal,
          tmpDir: ws.tmpDir,
          ...(network.netns !== undefined ? { netns: network.netns } : {}),
        }),
      );
      if (guard.exceeded) output(`\n !     ${dyno}: ${guard.exceeded.message} It was stopped.\n`);
      if (r.timedOut) output(` !     ${dyno} timed out after ${Math.round(timeoutMs / 60000)} min.\n`);
      if (r.oomKilled) output(` !     ${dyno} ran out of memory (512 MB).\n`);
      return r.code === 0 && !r.timedOut && !r.oomKilled && !guard.exceeded;
    } finally {
      await builder.releaseWorkspace(ws.root);
    }
  }
}
