import { spawn } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { errorMessage } from '../domain/errors.js';
import type { UserRecord } from '../domain/records.js';
import type { GitRepos } from './git.js';
import { boundedWriter, type Sink } from './output.js';
import type { Deployer, GitAccess, SlugBuilder } from './ports.js';

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

/**
 * Waits its turn: pushes to one app run one at a time, all pushes at most `max` at once. A push
 * queues for a build slot only once its app's previous push is done, so one app holds at most one
 * slot and slots go to apps in the order they asked; an app may have one push waiting behind its
 * running one, and a third is refused (`undefined`) rather than queued without end.
 */
export class Gate {
  private readonly apps = new Map<string, { tail: Promise<void>; count: number }>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(
    private readonly max: number,
    private readonly perApp = 2,
  ) {}

  async enter(appId: string, onWait: () => void): Promise<(() => void) | undefined> {
    const entry = this.apps.get(appId);
    if (entry && entry.count >= this.perApp) return undefined;
    const before = entry?.tail;
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const next = { tail: (before ?? Promise.resolve()).then(() => mine), count: (entry?.count ?? 0) + 1 };
    this.apps.set(appId, next);
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      // The app's entry goes with its last push: the map holds apps with pushes, not every app ever.
      const now = this.apps.get(appId);
      if (now && --now.count === 0) this.apps.delete(appId);
      release();
    };
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
      if (left) return;
      this.running--;
      this.waiting.shift()?.();
      leave();
    };
  }
}

/**
 * A `git push` after git has received the objects and before it updates the ref: checks the ref
 * and the pusher, waits its turn, then hands the commit to the `Deployer` (the controller builds
 * and releases it) and answers ok (the ref moves) or fail (the push is rejected, nothing changes).
 */
export class PushHandler {
  private readonly sessions = new Map<string, PushSession>();
  private readonly gate: Gate;

  constructor(
    private readonly deps: { access: GitAccess; deployer: Deployer; builder: Pick<SlugBuilder, 'unavailable'>; repos: GitRepos; maxParallel: number },
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
    const { access, deployer, builder, repos } = this.deps;
    if (builder.unavailable) {
      write(` !     ${builder.unavailable}\n`);
      return false;
    }
    const app = await access.resolveApp(session.user, session.appId);
    // Held until git has moved the ref (close()), so the next push checks the ref git really has.
    const leave = await this.gate.enter(app.id, () => write(`-----> Waiting for another build of ${app.name} to finish...\n`));
    if (!leave) {
      write(` !     ${app.name} already has a build running and another push waiting.\n !     Push again once they have finished.\n`);
      return false;
    }
    session.leave = leave;
    if (session.closed) {
      // git died while this push waited: nobody will call close() again, so let go now.
      session.leave();
      return false;
    }
    // git moves the ref only if it still holds what the pusher saw; a push that waited behind
    // another is refused now, before it builds or releases anything.
    const current = await refValue(repos.path(app.id), update.ref);
    if (current !== (ZERO.test(update.old) ? null : update.old)) {
      write(` !     ${update.ref.replace('refs/heads/', '')} was updated by another push while this one waited${current ? ` (now at ${current.slice(0, 7)})` : ''}.\n !     Fetch, merge or rebase, and push again.\n`);
      return false;
    }
    return deployer.deploy(session.user, app, { commit: update.new, objects: body.objects ?? {} }, write);
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

/** The hook's way back in: public, but only a live push's secret gets anything done. */
export function registerHookRoute(api: FastifyInstance, pushes: PushHandler): void {
  api.post('/internal/git-hook', { config: { public: true } }, async (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    // git stops reading the hook when the pusher stops reading git: output is then skipped, never
    // queued here. The verdict is written whatever is queued.
    const sink = new LineEnds(res);
    const out = boundedWriter(sink).write;
    const ok = await pushes.handle(req.body as HookBody, out).catch((err: unknown) => {
      out(` !     ${errorMessage(err)}\n`);
      return false;
    });
    // The hook takes only a whole last line as the verdict: after a partial line (the build's own,
    // or one whose end was skipped for a slow reader) it must start a line of its own.
    res.end(`${sink.atLineStart ? '' : '\n'}@@berth-result ${ok ? 'ok' : 'fail'}\n`);
  });
}

/** A response that remembers whether what was written to it so far ends a line. */
class LineEnds implements Sink {
  atLineStart = true;
  constructor(private readonly res: Sink) {}
  write(chunk: string): unknown {
    if (chunk !== '') this.atLineStart = chunk.endsWith('\n');
    return this.res.write(chunk);
  }
  get writableLength(): number {
    return this.res.writableLength;
  }
  get destroyed(): boolean {
    return this.res.destroyed;
  }
  get writableEnded(): boolean {
    return this.res.writableEnded;
  }
}
