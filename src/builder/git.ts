import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GitAccess } from './ports.js';
import type { PushHandler, PushSession } from './push.js';

/**
 * The pre-receive hook every app repository gets (`hook/pre-receive.cjs`, next to this module in
 * src/ and in dist/). git runs it after receiving the objects and before updating any ref; it hands
 * the push to the Berth process and relays the build output as `remote:` lines. A non-zero exit
 * rejects the push, so a failed build leaves the ref where it was.
 */
const HOOK_PATH = join(import.meta.dirname, 'hook', 'pre-receive.cjs');

export class GitRepos {
  /** The hook program, read once at startup. */
  private readonly hook: string;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.hook = readFileSync(HOOK_PATH, 'utf8');
  }

  path(appId: string): string {
    return join(this.dir, `${appId}.git`);
  }

  /** Creates the bare repository on first use and (re)installs the hook. */
  async ensure(appId: string): Promise<string> {
    const repo = this.path(appId);
    if (!existsSync(join(repo, 'HEAD'))) {
      await run('git', ['init', '--bare', '--quiet', '--initial-branch=main', repo]);
      await run('git', ['--git-dir', repo, 'config', 'http.receivepack', 'true']);
    }
    // Rewritten only when Berth's hook changed, and by rename: a push running the hook meanwhile
    // must never read a half-written file.
    installFile(join(repo, 'hooks', 'berth-hook.cjs'), this.hook, 0o644);
    installFile(join(repo, 'hooks', 'pre-receive'), '#!/bin/sh\nexec node "$(dirname "$0")/berth-hook.cjs"\n', 0o755);
    return repo;
  }
}

function installFile(path: string, content: string, mode: number): void {
  if (existsSync(path) && readFileSync(path, 'utf8') === content) return;
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`))));
  });
}

const GIT_TYPES = ['application/x-git-upload-pack-request', 'application/x-git-receive-pack-request'];

/**
 * git over smart HTTP at `<api>/<app>.git`, the app's git_url: `git http-backend` as a CGI, with
 * the API's own auth (HTTP basic, the token as password) and visibility (others get not found).
 */
export function registerGitRoutes(api: FastifyInstance, access: GitAccess, repos: GitRepos, pushes: PushHandler): void {
  // Pack data streams straight through to git; never buffered or parsed.
  api.addContentTypeParser(GIT_TYPES, { bodyLimit: 1024 * 1024 * 1024 }, (_req, payload, done) => done(null, payload));

  const serve = async (req: FastifyRequest, reply: FastifyReply, path: string): Promise<void> => {
    const { app: name } = req.params as { app: string };
    // Not found for an app the user cannot see; a store outage stays a 503, not a "no such repo".
    const app = await access.resolveApp(req.user, name);
    const service = path === 'info/refs' ? String((req.query as { service?: string }).service ?? '') : path;
    await repos.ensure(app.id);
    let session: PushSession | undefined;
    const env: Record<string, string> = {};
    if (service === 'git-receive-pack') {
      session = pushes.open(req.user, app.id, randomBytes(24).toString('hex'));
      env.BERTH_PUSH_SECRET = session.secret;
      env.BERTH_HOOK_URL = pushes.hookUrl;
    }
    try {
      await cgi(req.raw.method ?? 'GET', repos.dir, `/${app.id}.git/${path}`, req, reply, env);
    } finally {
      if (session) pushes.close(session);
    }
  };
  api.get('/:app.git/info/refs', (req, reply) => serve(req, reply, 'info/refs'));
  api.post('/:app.git/git-upload-pack', (req, reply) => serve(req, reply, 'git-upload-pack'));
  api.post('/:app.git/git-receive-pack', (req, reply) => serve(req, reply, 'git-receive-pack'));
}

/** Runs `git http-backend` for one request and relays its CGI response. */
function cgi(
  method: string,
  root: string,
  pathInfo: string,
  req: FastifyRequest,
  reply: FastifyReply,
  extraEnv: Record<string, string>,
): Promise<void> {
  const headers = req.headers;
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: pathInfo,
      REQUEST_METHOD: method,
      QUERY_STRING: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
      CONTENT_TYPE: String(headers['content-type'] ?? ''),
      ...(headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(headers['content-encoding']) } : {}),
      ...(headers['git-protocol'] ? { GIT_PROTOCOL: String(headers['git-protocol']) } : {}),
      REMOTE_USER: req.user.email,
      REMOTE_ADDR: req.ip,
      ...extraEnv,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const body = req.body as Readable | undefined;
  if (body && typeof body.pipe === 'function') body.pipe(child.stdin);
  else child.stdin.end();
  reply.hijack();
  const res = reply.raw;
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    let headersDone = false;
    // A client that stops reading stops git (and, through it, the hook's relay of the build's
    // output) rather than having git's output queue in this process. One that hangs up is
    // drained, so git can finish.
    const pass = (chunk: Buffer): void => {
      if (res.destroyed) return;
      if (!res.write(chunk)) {
        child.stdout.pause();
        res.once('drain', () => child.stdout.resume());
      }
    };
    res.on('close', () => child.stdout.resume());
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        pass(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') + 4 : head.indexOf('\n\n') >= 0 ? head.indexOf('\n\n') + 2 : -1;
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString().split(/\r?\n/).filter(Boolean)) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]) || 200;
        else res.setHeader(k, v);
      }
      res.setHeader('Request-Id', req.id);
      res.writeHead(status);
      pass(head.subarray(end));
    });
    child.stderr.on('data', (d: Buffer) => req.log.warn({ git: d.toString().trim() }, 'git http-backend'));
    child.on('close', () => {
      if (!headersDone) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end();
      resolve();
    });
  });
}
