import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { UserRecord } from '../controller/model/types.js';
import type { Services } from '../controller/services.js';
import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import type { Builder, BuildRecord } from './builder.js';
import type { GitRepos } from './git.js';
import { runInSlug } from './release-phase.js';
import { extractAs, readTenantFile } from './safe-fs.js';

export interface PushSession {
  secret: string;
  user: UserRecord;
  appId: string;
  /** Releases the app's push lock; called when git has finished (the ref is updated by then). */
  leave?: () => void;
  /** git has finished; a lock taken after this must be released at once. */
  closed?: boolean;
}

interface HookBody {
  secret?: string;
  updates?: { old: string; new: string; ref: string }[];
  objects?: Record<string, string>;
}

const ZERO = /^0+$/;
const DEPLOY_REFS = new Set(['refs/heads/main', 'refs/heads/master']);

/** Waits its turn: pushes to one app run one at a time, all pushes at most `max` at once. */
class Gate {
  private readonly apps = new Map<string, Promise<void>>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async enter(appId: string, onWait: () => void): Promise<() => void> {
    const before = this.apps.get(appId);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.apps.set(appId, (before ?? Promise.resolve()).then(() => mine));
    if (before) {
      // The previous push may only be handing over (git finishing its ref update): say "waiting"
      // only when the wait is real.
      const notice = setTimeout(onWait, 300);
      await before;
      clearTimeout(notice);
    }
    if (this.running >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    return () => {
      this.running--;
      this.waiting.shift()?.();
      release();
    };
  }
}

/**
 * A `git push` after git has received the objects and before it updates the ref: build the new
 * commit, release it, and answer ok (the ref moves) or fail (the push is rejected, nothing changes).
 */
/** A build in progress: its output so far, who is following it, and how to stop it. */
export interface RunningBuild {
  appId: string;
  output: string;
  listeners: Set<(text: string) => void>;
  abort: AbortController;
  finished: Promise<void>;
}

export class PushHandler {
  private readonly sessions = new Map<string, PushSession>();
  readonly running = new Map<string, RunningBuild>();
  private readonly gate: Gate;

  constructor(
    private readonly deps: { services: Services; builder: Builder; repos: GitRepos; log: Logger; maxParallel: number; retainSlugs?: number },
    readonly hookUrl: string,
  ) {
    this.gate = new Gate(deps.maxParallel);
  }

  open(user: UserRecord, appId: string, secret: string): PushSession {
    const session = { secret, user, appId };
    this.sessions.set(secret, session);
    return session;
  }

  close(session: PushSession): void {
    this.sessions.delete(session.secret);
    session.closed = true;
    session.leave?.();
  }

  /** Slugs of the newest SLUG_RETAIN (10) releases, and the current one, stay; the rest go. */
  private async collectSlugs(appId: string): Promise<void> {
    const releases = await this.deps.services.releases.list(appId);
    const keep = new Set(releases.slice(-(this.deps.retainSlugs ?? 10)).map((r) => r.slug_id).filter((id): id is string => id !== null));
    await this.deps.builder.slugs.gc(appId, keep);
  }

  async handle(body: HookBody, write: (text: string) => void): Promise<boolean> {
    const session = body.secret ? this.sessions.get(body.secret) : undefined;
    if (!session) {
      write(' !     This push is not known to Berth; push again.\n');
      return false;
    }
    const updates = body.updates ?? [];
    const bad = updates.find((u) => !DEPLOY_REFS.has(u.ref));
    if (bad || updates.length !== 1) {
      const ref = bad?.ref.replace('refs/heads/', '') ?? updates.map((u) => u.ref).join(', ');
      write(` !     Pushed to ${ref}: Berth builds main or master only.\n !     Deploy a branch with: git push berth ${ref}:main\n`);
      return false;
    }
    const update = updates[0] as { old: string; new: string; ref: string };
    if (ZERO.test(update.new)) {
      write(' !     Deleting the deployed branch is not allowed.\n');
      return false;
    }
    const { services, builder, repos, log } = this.deps;
    if (builder.unavailable) {
      write(` !     ${builder.unavailable}\n`);
      return false;
    }
    const access = await services.apps.resolve(session.user, session.appId);
    // Held until git has moved the ref (close()), so the next push checks the ref git really has.
    session.leave = await this.gate.enter(access.app.id, () => write(`-----> Waiting for another build of ${access.app.name} to finish...\n`));
    if (session.closed) {
      // git died while this push waited: nobody will call close() again, so let go now.
      session.leave();
      return false;
    }
    const buildLog = log.child({ app: access.app.name, commit: update.new.slice(0, 8) });
    const now = new Date().toISOString();
    const buildId = randomUUID();
    const record: BuildRecord = {
      id: buildId,
      app: { id: access.app.id },
      status: 'pending',
      source_blob: { checksum: null, url: null, version: update.new },
      slug: null,
      release: null,
      buildpacks: [],
      output: '',
      output_stream_url: `${services.settings.apiUrl}/apps/${access.app.name}/builds/${buildId}/output`,
      stack: 'heroku-22',
      user: { id: session.user.id, email: session.user.email },
      created_at: now,
      updated_at: now,
    };
    let finish!: () => void;
    const live: RunningBuild = { appId: access.app.id, output: '', listeners: new Set(), abort: new AbortController(), finished: new Promise((r) => (finish = r)) };
    this.running.set(record.id, live);
    const out = (text: string): void => {
      record.output += text;
      live.output += text;
      write(text);
      for (const l of live.listeners) l(text);
    };
    let ws: Awaited<ReturnType<Builder['workspace']>> | undefined;
    try {
      // git moves the ref only if it still holds what the pusher saw; a push that waited behind
      // another is refused now, before it builds or releases anything.
      const current = await refValue(repos.path(access.app.id), update.ref);
      if (current !== (ZERO.test(update.old) ? null : update.old)) {
        write(` !     ${update.ref.replace('refs/heads/', '')} was updated by another push while this one waited${current ? ` (now at ${current.slice(0, 7)})` : ''}.\n !     Fetch, merge or rebase, and push again.\n`);
        return false;
      }
      await builder.saveBuild(access.app.id, record);
      out('-----> Building on the Heroku-style stack\n');
      ws = await builder.workspace(access.app.id);
      await extract(repos.path(access.app.id), update.new, body.objects ?? {}, ws.appDir, ws.uid);
      const fresh = await services.apps.resolve(session.user, session.appId);
      const config = await services.releases.config(fresh);
      const { slug, buildpacks } = await builder.build(access.app, ws, config, update.new, out, live.abort.signal);
      // Asked before this release exists: no earlier release carried a slug.
      const first = firstDeploy(await services.releases.list(access.app.id));
      const postdeploy = first ? readPostdeploy(ws.appDir) : undefined;
      let release = await services.releases.deploy(session.user, fresh, { id: slug.id, process_types: slug.process_types, commit: update.new });
      release = await services.releases.runPhase(fresh.app, release, out);
      if (release.status === 'failed') {
        // As on Heroku: the build stands (the push is accepted), the release does not.
        Object.assign(record, { status: 'succeeded', slug: { id: slug.id }, release: { id: release.id } });
        out(` !     Release v${release.version} failed in its release phase; the previous release keeps running.\n`);
        return true;
      }
      // As on Heroku, an app's first deploy with a web process starts one web dyno.
      if (first) {
        const formation = await services.formations.list(await services.apps.resolve(session.user, session.appId));
        if (formation.length === 0 && slug.process_types.web) {
          await services.formations.update(session.user, await services.apps.resolve(session.user, session.appId), [{ type: 'web', quantity: 1 }]);
          out('-----> Scaled web to 1 (first deploy)\n');
        }
      }
      if (postdeploy) {
        out('-----> Running postdeploy script (app.json, first release only)...\n');
        const ok = await runInSlug(services.store, builder, fresh.app, slug.id, release.config, postdeploy, 'postdeploy', out);
        out(ok ? '       postdeploy succeeded\n' : ' !     postdeploy failed; the release stands.\n');
      }
      Object.assign(record, { status: 'succeeded', slug: { id: slug.id }, release: { id: release.id }, buildpacks: buildpacks.map((b) => ({ url: b, name: b })) });
      const types = Object.keys(slug.process_types);
      out(`-----> Discovering process types\n       Procfile declares types -> ${types.length ? types.join(', ') : '(none)'}\n`);
      out(`-----> Launching...\n       Released v${release.version}\n       http://${access.app.name}.${services.settings.domain}/ deployed to Berth\n`);
      await this.collectSlugs(access.app.id).catch((e: unknown) => buildLog.warn({ err: errorMessage(e) }, 'slug collection failed'));
      services.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `Deploy ${update.new.slice(0, 7)} by user ${session.user.email}` });
      services.logs.append(access.app.id, { source: 'app', dyno: 'api', message: `Release v${release.version} created by user ${session.user.email}` });
      buildLog.info({ release: release.version, slug: slug.id }, 'build succeeded');
      return true;
    } catch (err) {
      record.status = 'failed';
      out(`\n !     ${errorMessage(err)}\n !     Push rejected, failed to compile ${access.app.name}.\n`);
      buildLog.info({ err: errorMessage(err) }, 'build failed');
      return false;
    } finally {
      record.updated_at = new Date().toISOString();
      await builder.saveBuild(access.app.id, record).catch((e: unknown) => buildLog.error({ err: e }, 'saving the build record failed'));
      if (ws) builder.removeWorkspace(ws.root);
      this.running.delete(record.id);
      finish();
    }
  }
}

/** No release so far carries a slug: this push is the app's first deploy. */
function firstDeploy(releases: { slug_id: string | null }[]): boolean {
  return releases.every((r) => r.slug_id === null);
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

function refValue(repo: string, ref: string): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn('git', ['--git-dir', repo, 'rev-parse', '--verify', '--quiet', ref], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve(code === 0 ? out.trim() : null));
  });
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

/** The hook's way back in: public, but only a live push's secret gets anything done. */
export function registerHookRoute(api: FastifyInstance, pushes: PushHandler): void {
  api.post('/internal/git-hook', { config: { public: true } }, async (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    const ok = await pushes.handle(req.body as HookBody, (t) => res.write(t)).catch((err: unknown) => {
      res.write(` !     ${errorMessage(err)}\n`);
      return false;
    });
    res.end(`@@berth-result ${ok ? 'ok' : 'fail'}\n`);
  });
}
