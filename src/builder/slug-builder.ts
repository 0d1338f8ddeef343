import { spawn } from 'node:child_process';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { extractAs, readTenantFile } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import type { Builder } from './builder.js';
import type { GitRepos } from './git.js';
import type { BuildRequest, BuiltSlug, SlugBuilder } from './ports.js';
import type { SlugReplicator } from './replication.js';
import { readAppJsonHealthChecks } from './app-json.js';

/**
 * Source → slug for a pushed commit: the tree read from the app's repository (git's quarantine,
 * while the push is undecided) into a fresh workspace, built by the buildpacks, packed as a slug,
 * and held by a second server before it is returned (so before any release points at it).
 */
export class GitSlugBuilder implements SlugBuilder {
  constructor(
    private readonly builder: Builder,
    private readonly repos: GitRepos,
    private readonly replicator: SlugReplicator,
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  get unavailable(): string | undefined {
    return this.builder.unavailable;
  }

  async build({ app, source, config, output, signal }: BuildRequest): Promise<BuiltSlug> {
    output('-----> Building on the Heroku-style stack\n');
    const ws = await this.builder.workspace(app.id);
    try {
      await extract(this.repos.path(app.id), source.commit, source.objects, ws.appDir, ws.uid);
      // Before the build: a bad health check fails the push at once, not after the compile.
      for (const note of readAppJsonHealthChecks(ws.appDir).notes) output(`       app.json ${note}\n`);
      const { slug, buildpacks } = await this.builder.build(app, ws, config, source.commit, output, signal);
      try {
        await this.replicator.spread(slug, output);
      } catch (err) {
        // No release will point at it: the record goes, and with it (on every server) the blob.
        await this.store.delete(keys.slug(slug.id)).catch((e: unknown) => this.log.warn({ slug: slug.id, err: errorMessage(e) }, 'could not delete an unreplicated slug record'));
        throw err;
      }
      const postdeploy = readPostdeploy(ws.appDir);
      return { slug, buildpacks, ...(postdeploy ? { postdeploy } : {}) };
    } finally {
      this.builder.removeWorkspace(ws.root);
    }
  }

  /** From the replicator's index when it runs (no read of other apps' slugs), else by reading every record. */
  collect(appId: string, keep: Set<string>): Promise<number> {
    return this.replicator.running ? this.replicator.collect(appId, keep) : this.builder.slugs.gc(appId, keep);
  }
}

function readPostdeploy(appDir: string): string | undefined {
  try {
    const text = readTenantFile(appDir, 'app.json');
    if (text === undefined) return undefined;
    const script = (JSON.parse(text) as { scripts?: { postdeploy?: unknown } }).scripts?.postdeploy;
    return typeof script === 'string' && script.trim() ? script : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pushed tree, read from git's quarantine (the objects are not in the repository yet) and
 * unpacked as the app's uid, so the tenant's symlinks can never steer a root write or read.
 */
async function extract(repo: string, commit: string, objects: Record<string, string>, dest: string, uid: number): Promise<void> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_DIR: repo };
  for (const k of ['GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_QUARANTINE_PATH']) if (objects[k]) env[k] = objects[k] as string;
  const child = spawn('git', ['archive', '--format=tar', commit], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  await extractAs(uid, child.stdout, dest, false);
  if ((await exited) !== 0) throw new Error(`could not read commit ${commit.slice(0, 8)}: ${stderr.trim()}`);
}
